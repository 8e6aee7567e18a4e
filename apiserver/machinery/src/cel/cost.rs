//! Static cost estimation (the worst case of cel-go's `EstimateCost` as Kubernetes uses it):
//! sizes of strings and lists come from the declared types (`maxLength`, `maxItems`,
//! `maxProperties`), unbounded ones from the largest request, so a rule over an unbounded
//! list of unbounded strings is refused when the CRD is written, not when it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::parser::{Expr, Macro};
use super::value::Value;

/// The largest size anything can have (a request is at most 3 MiB).
pub const MAX_SIZE: u64 = 3 * 1024 * 1024;

/// A declared type with size bounds, for estimation.
#[derive(Clone, Debug)]
pub enum TypeDesc {
    /// Unknown (`x-kubernetes-int-or-string`, preserve-unknown-fields...): sizes at the maximum.
    Dyn,
    /// A scalar of fixed size (int, bool, double, timestamp...).
    Scalar,
    /// A string or bytes of at most `max_len` bytes.
    String {
        /// Bound on the length.
        max_len: u64,
    },
    /// A list of at most `max_items` items.
    List {
        /// The item type.
        elem: Arc<TypeDesc>,
        /// Bound on the item count.
        max_items: u64,
    },
    /// A map with at most `max_props` entries.
    Map {
        /// The value type.
        value: Arc<TypeDesc>,
        /// Bound on the entries.
        max_props: u64,
    },
    /// An object with declared fields.
    Object {
        /// Field types.
        fields: Arc<BTreeMap<String, TypeDesc>>,
    },
}

impl TypeDesc {
    fn size(&self) -> u64 {
        match self {
            TypeDesc::Dyn => MAX_SIZE,
            TypeDesc::Scalar => 1,
            TypeDesc::String { max_len } => *max_len,
            TypeDesc::List { max_items, .. } => *max_items,
            TypeDesc::Map { max_props, .. } => *max_props,
            TypeDesc::Object { fields } => fields.len() as u64,
        }
    }

    fn elem(&self) -> TypeDesc {
        match self {
            TypeDesc::List { elem, .. } => (**elem).clone(),
            TypeDesc::Map { .. } | TypeDesc::Object { .. } => {
                TypeDesc::String { max_len: MAX_SIZE }
            }
            _ => TypeDesc::Dyn,
        }
    }

    fn field(&self, name: &str) -> TypeDesc {
        match self {
            TypeDesc::Object { fields } => fields.get(name).cloned().unwrap_or(TypeDesc::Dyn),
            TypeDesc::Map { value, .. } => (**value).clone(),
            _ => TypeDesc::Dyn,
        }
    }
}

fn traversal(n: u64) -> u64 {
    n.div_ceil(10).max(1)
}

struct Est {
    cost: u64,
    ty: TypeDesc,
}

/// The worst-case cost of `e` with variables typed by `vars`.
pub fn estimate(e: &Expr, vars: &[(String, TypeDesc)]) -> u64 {
    let mut env: Vec<(Arc<str>, TypeDesc)> = vars
        .iter()
        .map(|(n, t)| (n.as_str().into(), t.clone()))
        .collect();
    est(e, &mut env, 0).cost
}

fn lit_type(v: &Value) -> TypeDesc {
    match v {
        Value::String(s) => TypeDesc::String {
            max_len: s.len() as u64,
        },
        Value::Bytes(b) => TypeDesc::String {
            max_len: b.len() as u64,
        },
        _ => TypeDesc::Scalar,
    }
}

fn est(e: &Expr, env: &mut Vec<(Arc<str>, TypeDesc)>, depth: usize) -> Est {
    if depth > 300 {
        return Est {
            cost: u64::MAX / 4,
            ty: TypeDesc::Dyn,
        };
    }
    let d = depth + 1;
    match e {
        Expr::Lit(v) => Est {
            cost: 0,
            ty: lit_type(v),
        },
        Expr::Ident(n) => {
            let ty = env
                .iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, t)| t.clone())
                .unwrap_or(TypeDesc::Dyn);
            Est { cost: 1, ty }
        }
        Expr::Select {
            operand,
            field,
            test,
            ..
        } => {
            let o = est(operand, env, d);
            let ty = if *test {
                TypeDesc::Scalar
            } else {
                o.ty.field(field)
            };
            Est {
                cost: o.cost.saturating_add(1),
                ty,
            }
        }
        Expr::List(items) => {
            let mut cost = 10u64;
            let mut elem = TypeDesc::Scalar;
            for i in items {
                let x = est(i, env, d);
                cost = cost.saturating_add(x.cost);
                elem = x.ty;
            }
            Est {
                cost,
                ty: TypeDesc::List {
                    elem: Arc::new(elem),
                    max_items: items.len() as u64,
                },
            }
        }
        Expr::Map(entries) => {
            let mut cost = 30u64;
            let mut value = TypeDesc::Scalar;
            for (k, v) in entries {
                cost = cost.saturating_add(est(k, env, d).cost);
                let x = est(v, env, d);
                cost = cost.saturating_add(x.cost);
                value = x.ty;
            }
            Est {
                cost,
                ty: TypeDesc::Map {
                    value: Arc::new(value),
                    max_props: entries.len() as u64,
                },
            }
        }
        Expr::Comprehension {
            kind,
            var,
            range,
            body,
            filter,
        } => {
            let r = est(range, env, d);
            let n = r.ty.size();
            env.push((var.clone(), r.ty.elem()));
            let b = est(body, env, d);
            let f = filter.as_ref().map(|f| est(f, env, d).cost).unwrap_or(0);
            env.pop();
            let per = b.cost.saturating_add(f).saturating_add(1);
            let cost = r.cost.saturating_add(n.saturating_mul(per));
            let ty = match kind {
                Macro::Map => TypeDesc::List {
                    elem: Arc::new(b.ty),
                    max_items: n,
                },
                Macro::Filter => TypeDesc::List {
                    elem: Arc::new(r.ty.elem()),
                    max_items: n,
                },
                _ => TypeDesc::Scalar,
            };
            Est { cost, ty }
        }
        Expr::Call {
            func, target, args, ..
        } => {
            let mut cost = 0u64;
            let recv = target.as_ref().map(|t| est(t, env, d));
            if let Some(r) = &recv {
                cost = cost.saturating_add(r.cost);
            }
            let a: Vec<Est> = args.iter().map(|x| est(x, env, d)).collect();
            match &**func {
                "_&&_" | "_||_" => {
                    let c = a.iter().fold(1u64, |acc, x| acc.saturating_add(x.cost));
                    return Est {
                        cost: cost.saturating_add(c),
                        ty: TypeDesc::Scalar,
                    };
                }
                "_?_:_" => {
                    let c = a[0]
                        .cost
                        .saturating_add(a[1].cost.max(a[2].cost))
                        .saturating_add(1);
                    let ty = if a[1].ty.size() >= a[2].ty.size() {
                        a[1].ty.clone()
                    } else {
                        a[2].ty.clone()
                    };
                    return Est {
                        cost: cost.saturating_add(c),
                        ty,
                    };
                }
                _ => {}
            }
            for x in &a {
                cost = cost.saturating_add(x.cost);
            }
            let recv_size = recv.as_ref().map(|r| r.ty.size()).unwrap_or(1);
            let arg_size = |i: usize| a.get(i).map(|x| x.ty.size()).unwrap_or(1);
            let (extra, ty) = match (&**func, recv.is_some()) {
                ("_==_" | "_!=_", false) => {
                    (traversal(arg_size(0).min(arg_size(1))), TypeDesc::Scalar)
                }
                ("_+_", false) => match (&a[0].ty, &a[1].ty) {
                    (
                        TypeDesc::List { elem, max_items: x },
                        TypeDesc::List { max_items: y, .. },
                    ) => {
                        let n = x.saturating_add(*y);
                        (
                            n,
                            TypeDesc::List {
                                elem: elem.clone(),
                                max_items: n,
                            },
                        )
                    }
                    (TypeDesc::String { max_len: x }, TypeDesc::String { max_len: y }) => {
                        let n = x.saturating_add(*y);
                        (traversal(n), TypeDesc::String { max_len: n })
                    }
                    _ => (1, TypeDesc::Dyn),
                },
                ("@in", false) => (arg_size(1), TypeDesc::Scalar),
                ("_[_]" | "_[?_]", false) => (1, a[0].ty.elem_or_value()),
                ("matches", false) => (traversal(arg_size(0)), TypeDesc::Scalar),
                ("string", false) => (
                    1,
                    TypeDesc::String {
                        max_len: arg_size(0).max(20),
                    },
                ),
                (
                    "contains" | "startsWith" | "endsWith" | "matches" | "indexOf" | "lastIndexOf",
                    true,
                ) => (traversal(recv_size), TypeDesc::Scalar),
                ("lowerAscii" | "upperAscii" | "trim" | "substring" | "replace", true) => (
                    traversal(recv_size),
                    TypeDesc::String { max_len: recv_size },
                ),
                ("find", true) => (
                    traversal(recv_size),
                    TypeDesc::String { max_len: recv_size },
                ),
                ("findAll" | "split", true) => (
                    recv_size,
                    TypeDesc::List {
                        elem: Arc::new(TypeDesc::String { max_len: recv_size }),
                        max_items: recv_size,
                    },
                ),
                ("join", true) => (
                    traversal(recv_size.saturating_mul(64)),
                    TypeDesc::String { max_len: MAX_SIZE },
                ),
                ("isSorted" | "sum" | "min" | "max", true) => (recv_size, TypeDesc::Scalar),
                (
                    "quantity" | "isQuantity" | "ip" | "isIP" | "cidr" | "isCIDR" | "url" | "isURL",
                    false,
                ) => (traversal(arg_size(0)), TypeDesc::Scalar),
                ("validate", true) => (traversal(arg_size(0)), TypeDesc::Scalar),
                ("check", true) => (super::authz::CHECK_COST, TypeDesc::Scalar),
                ("orValue" | "value", true) => (
                    1,
                    recv.as_ref().map(|r| r.ty.clone()).unwrap_or(TypeDesc::Dyn),
                ),
                _ => (1, TypeDesc::Scalar),
            };
            Est {
                cost: cost.saturating_add(extra).saturating_add(1),
                ty,
            }
        }
    }
}

impl TypeDesc {
    fn elem_or_value(&self) -> TypeDesc {
        match self {
            TypeDesc::List { elem, .. } => (**elem).clone(),
            TypeDesc::Map { value, .. } => (**value).clone(),
            _ => TypeDesc::Dyn,
        }
    }
}
