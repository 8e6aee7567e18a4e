//! Objects walked under the schema facts (upstream `structured-merge-diff/typed`: `tofieldset.go`,
//! `compare.go`, `merge.go`, `remove.go`). List and map semantics come from
//! [`crate::openapi::facts`] the way kube-openapi's `schemaconv` derives them: an explicit
//! `x-kubernetes-list-type` wins; otherwise `patchStrategy: merge` with a merge key is an
//! associative list keyed by it, `merge` without a key is a set, and anything else is atomic.

//!
//! Custom resources are typed by their CRD version's structural schema instead
//! ([`NodeType::of_schema`]): `x-kubernetes-list-type` (`atomic` by default),
//! `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`, with `metadata` typed as
//! `ObjectMeta` (upstream builds the CR's managed-fields type converter from the same schema).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::fieldpath::{Path, PathElement, Set};
use crate::crd::CompiledSchema;
use crate::crd::schema::{ListType as CrdListType, MapType, SchemaNode};
use crate::openapi::facts::{Facts, FieldRef, ListType, facts};

/// The `ObjectMeta` definition (the `metadata` of a custom resource).
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// A position in a custom resource's schema: the schema and the steps from its root.
#[derive(Clone, Debug)]
pub struct SchemaPos {
    schema: Arc<CompiledSchema>,
    steps: Vec<Step>,
}

#[derive(Clone, Debug)]
enum Step {
    Field(String),
    Item,
}

impl SchemaPos {
    fn node(&self) -> Option<&SchemaNode> {
        let mut cur = self.schema.root();
        for s in &self.steps {
            cur = match s {
                Step::Field(n) => cur.field(n)?,
                Step::Item => cur.items.as_deref()?,
            };
        }
        Some(cur)
    }

    fn child(&self, step: Step) -> SchemaPos {
        let mut steps = self.steps.clone();
        steps.push(step);
        SchemaPos {
            schema: self.schema.clone(),
            steps,
        }
    }

    /// The node type at this position (unknown when the schema does not describe it).
    fn node_type(self) -> NodeType {
        let Some(n) = self.node() else {
            return NodeType::unknown();
        };
        let list = match n.list_type() {
            CrdListType::Atomic => ListKind::Atomic,
            CrdListType::Set => ListKind::Set,
            CrdListType::Map => ListKind::Map(n.list_map_keys.clone()),
        };
        let atomic = n.map_type == Some(MapType::Atomic);
        NodeType {
            def: None,
            elem_def: None,
            list,
            atomic,
            schema: Some(self),
        }
    }
}

/// How a list merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// What the schema says about one node.
#[derive(Clone, Debug)]
pub struct NodeType {
    /// The struct definition of the node, when it is one.
    pub def: Option<String>,
    /// The definition of list items or map values.
    pub elem_def: Option<String>,
    /// How the node merges when it is a list.
    pub list: ListKind,
    /// The node is replaced as a whole (`x-kubernetes-map-type: atomic`).
    pub atomic: bool,
    /// For custom resources: where the node is in the CRD version's schema.
    pub schema: Option<SchemaPos>,
}

impl NodeType {
    /// A node with nothing known about it: maps are granular, lists atomic.
    pub fn unknown() -> Self {
        NodeType {
            def: None,
            elem_def: None,
            list: ListKind::Atomic,
            atomic: false,
            schema: None,
        }
    }

    /// The type of a whole custom resource under its CRD version's schema.
    pub fn of_schema(schema: Arc<CompiledSchema>) -> Self {
        SchemaPos {
            schema,
            steps: Vec::new(),
        }
        .node_type()
    }

    /// The type of a whole object of a definition.
    pub fn of_definition(def: &str) -> Self {
        let f = facts();
        NodeType {
            def: Some(def.to_string()),
            elem_def: None,
            list: ListKind::Atomic,
            atomic: def_atomic(f, def),
            schema: None,
        }
    }

    /// The type of a property of this node (a struct field or a map value).
    pub fn field(&self, name: &str) -> NodeType {
        if let Some(pos) = &self.schema {
            if pos.steps.is_empty() && name == "metadata" {
                return NodeType::of_definition(OBJECT_META);
            }
            return pos.child(Step::Field(name.to_string())).node_type();
        }
        let f = facts();
        let Some(def) = &self.def else {
            return match &self.elem_def {
                Some(d) => NodeType::of_definition(d),
                None => NodeType::unknown(),
            };
        };
        let Some(ff) = f.field_facts(def, name) else {
            return NodeType::unknown();
        };
        let (def, elem_def) = match &ff.reference {
            Some(FieldRef::Direct(d)) => (Some(d.clone()), None),
            Some(FieldRef::Items(d)) | Some(FieldRef::Values(d)) => (None, Some(d.clone())),
            None => (None, None),
        };
        let list = match ff.list_type {
            Some(ListType::Atomic) => ListKind::Atomic,
            Some(ListType::Set) => ListKind::Set,
            Some(ListType::Map) => ListKind::Map(ff.list_map_keys.clone()),
            None => {
                let merge = ff
                    .patch_strategy
                    .as_deref()
                    .is_some_and(|s| s.split(',').any(|p| p == "merge"));
                match (&ff.patch_merge_key, merge) {
                    (Some(k), true) => ListKind::Map(vec![k.clone()]),
                    (None, true) => ListKind::Set,
                    _ => ListKind::Atomic,
                }
            }
        };
        let atomic = ff.map_type.as_deref() == Some("atomic")
            || def.as_deref().is_some_and(|d| def_atomic(f, d));
        NodeType {
            def,
            elem_def,
            list,
            atomic,
            schema: None,
        }
    }

    /// The type of a list item.
    pub fn item(&self) -> NodeType {
        if let Some(pos) = &self.schema {
            return pos.child(Step::Item).node_type();
        }
        match &self.elem_def {
            Some(d) => NodeType::of_definition(d),
            None => NodeType::unknown(),
        }
    }
}

fn def_atomic(f: &Facts, def: &str) -> bool {
    f.definition(def)
        .is_some_and(|d| d.map_type.as_deref() == Some("atomic"))
}

/// The key element of an associative-list item (None when a key field is missing or the item
/// is not an object).
pub fn item_key(item: &Value, keys: &[String]) -> Option<PathElement> {
    let obj = item.as_object()?;
    let mut fields = Vec::new();
    for k in keys {
        if let Some(v) = obj.get(k) {
            fields.push((k.clone(), v.clone()));
        }
    }
    if fields.is_empty() {
        return None;
    }
    Some(PathElement::key(&fields))
}

/// Path elements of the items of a granular list, or None when the list must be atomic
/// (duplicate or missing keys).
fn list_elements(items: &[Value], t: &NodeType) -> Option<Vec<PathElement>> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let pe = match &t.list {
            ListKind::Atomic => return None,
            ListKind::Set => PathElement::value(it),
            ListKind::Map(keys) => item_key(it, keys)?,
        };
        if out.contains(&pe) {
            return None;
        }
        out.push(pe);
    }
    Some(out)
}

fn is_granular_map(v: &Value, t: &NodeType) -> bool {
    v.is_object() && !t.atomic
}

/// The fields a value sets (upstream `ToFieldSet`): leaves and list items are members; structs
/// and maps only through their children.
pub fn to_field_set(v: &Value, t: &NodeType) -> Set {
    let mut out = Set::new();
    walk_set(v, t, &mut Vec::new(), &mut out);
    out
}

fn walk_set(v: &Value, t: &NodeType, path: &mut Path, out: &mut Set) {
    match v {
        Value::Object(m) if !t.atomic => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                walk_set(child, &t.field(k), path, out);
                path.pop();
            }
        }
        Value::Array(items) => match list_elements(items, t) {
            Some(pes) => {
                let it = t.item();
                for (pe, item) in pes.into_iter().zip(items) {
                    path.push(pe);
                    out.insert(path);
                    if matches!(t.list, ListKind::Map(_)) {
                        walk_set(item, &it, path, out);
                    }
                    path.pop();
                }
            }
            None => out.insert(path),
        },
        _ => out.insert(path),
    }
}

/// What changed between two versions (upstream `Comparison`).
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    /// True when nothing changed.
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compares two versions of an object (upstream `TypedValue.Compare`). A map or list item that
/// appears or disappears as a whole is itself in the result, as are its leaves; struct nodes
/// are only reached through their fields.
pub fn compare(old: &Value, new: &Value, t: &NodeType) -> Comparison {
    let mut c = Comparison::default();
    walk_compare(Some(old), Some(new), t, &mut Vec::new(), &mut c, false);
    c
}

fn walk_compare(
    old: Option<&Value>,
    new: Option<&Value>,
    t: &NodeType,
    path: &mut Path,
    c: &mut Comparison,
    is_item: bool,
) {
    let both_maps = old.is_none_or(|o| is_granular_map(o, t))
        && new.is_none_or(|n| is_granular_map(n, t))
        && (old.is_some() || new.is_some());
    let empty = |v: Option<&Value>| v.is_none_or(|v| v.as_object().is_some_and(Map::is_empty));
    if both_maps && !(empty(old) && empty(new)) {
        let member = t.def.is_none() || is_item;
        if member && !path.is_empty() {
            match (old, new) {
                (None, Some(_)) => c.added.insert(path),
                (Some(_), None) => c.removed.insert(path),
                _ => {}
            }
        }
        let none = Map::new();
        let om = old.and_then(Value::as_object).unwrap_or(&none);
        let nm = new.and_then(Value::as_object).unwrap_or(&none);
        compare_children(om, nm, &|_| true, t, path, c);
        return;
    }
    let lists = (
        old.map(|o| o.as_array().and_then(|a| list_elements(a, t))),
        new.map(|n| n.as_array().and_then(|a| list_elements(a, t))),
    );
    let ok = |l: &Option<Option<Vec<PathElement>>>| !matches!(l, Some(None));
    let all_empty = [old, new]
        .iter()
        .all(|v| v.is_none_or(|v| v.as_array().is_some_and(Vec::is_empty)));
    if ok(&lists.0) && ok(&lists.1) && !all_empty {
        compare_lists(old, new, lists, t, path, c);
        return;
    }
    if path.is_empty() {
        return;
    }
    match (old, new) {
        (None, Some(_)) => c.added.insert(path),
        (Some(_), None) => c.removed.insert(path),
        (Some(o), Some(n)) if o != n => c.modified.insert(path),
        _ => {}
    }
}

/// The properties of two maps (those `keep` accepts) compared one by one.
fn compare_children(
    om: &Map<String, Value>,
    nm: &Map<String, Value>,
    keep: &dyn Fn(&str) -> bool,
    t: &NodeType,
    path: &mut Path,
    c: &mut Comparison,
) {
    for (k, ov) in om {
        if keep(k) {
            path.push(PathElement::Field(k.clone()));
            walk_compare(Some(ov), nm.get(k), &t.field(k), path, c, false);
            path.pop();
        }
    }
    for (k, nv) in nm {
        if keep(k) && !om.contains_key(k) {
            path.push(PathElement::Field(k.clone()));
            walk_compare(None, Some(nv), &t.field(k), path, c, false);
            path.pop();
        }
    }
}

/// [`compare`] of two objects' views without building them: at the top only the properties
/// `keep_root` accepts, in `metadata` only those `keep_meta` accepts, and a `metadata` left
/// with none counts as absent. `None` when the types make this differ from comparing the
/// views (an atomic object or `metadata`): the caller builds the views then.
pub fn compare_views(
    old: &Value,
    new: &Value,
    t: &NodeType,
    keep_root: &dyn Fn(&str) -> bool,
    keep_meta: &dyn Fn(&str) -> bool,
) -> Option<Comparison> {
    if t.atomic {
        return None;
    }
    let mt = t.field("metadata");
    if mt.atomic {
        return None;
    }
    let mut c = Comparison::default();
    let none = Map::new();
    let om = old.as_object().unwrap_or(&none);
    let nm = new.as_object().unwrap_or(&none);
    fn meta<'v>(
        m: &'v Map<String, Value>,
        keep_meta: &dyn Fn(&str) -> bool,
    ) -> Option<&'v Map<String, Value>> {
        m.get("metadata")
            .and_then(Value::as_object)
            .filter(|meta| meta.keys().any(|k| keep_meta(k)))
    }
    let mut path = Vec::new();
    // Everything but `metadata`, as `compare` walks the views' top level.
    compare_children(
        om,
        nm,
        &|k| k != "metadata" && keep_root(k),
        t,
        &mut path,
        &mut c,
    );
    if keep_root("metadata") {
        let (old_meta, new_meta) = (meta(om, keep_meta), meta(nm, keep_meta));
        if old_meta.is_some() || new_meta.is_some() {
            path.push(PathElement::Field("metadata".to_string()));
            // `walk_compare`'s map branch: a member only when the type is not a struct.
            if mt.def.is_none() {
                match (old_meta, new_meta) {
                    (None, Some(_)) => c.added.insert(&path),
                    (Some(_), None) => c.removed.insert(&path),
                    _ => {}
                }
            }
            compare_children(
                old_meta.unwrap_or(&none),
                new_meta.unwrap_or(&none),
                keep_meta,
                &mt,
                &mut path,
                &mut c,
            );
            path.pop();
        }
    }
    Some(c)
}

type Elements = (
    Option<Option<Vec<PathElement>>>,
    Option<Option<Vec<PathElement>>>,
);

fn compare_lists(
    old: Option<&Value>,
    new: Option<&Value>,
    lists: Elements,
    t: &NodeType,
    path: &mut Path,
    c: &mut Comparison,
) {
    let empty = Vec::new();
    let oi = old.and_then(Value::as_array).unwrap_or(&empty);
    let ni = new.and_then(Value::as_array).unwrap_or(&empty);
    let oe = lists.0.flatten().unwrap_or_default();
    let ne = lists.1.flatten().unwrap_or_default();
    let it = t.item();
    let keyed = matches!(t.list, ListKind::Map(_));
    for (pe, ov) in oe.iter().zip(oi) {
        let nv = ne.iter().position(|p| p == pe).map(|i| &ni[i]);
        path.push(pe.clone());
        if keyed {
            walk_compare(Some(ov), nv, &it, path, c, true);
        } else if nv.is_none() {
            c.removed.insert(path);
        }
        path.pop();
    }
    for (pe, nv) in ne.iter().zip(ni) {
        if oe.contains(pe) {
            continue;
        }
        path.push(pe.clone());
        if keyed {
            c.added.insert(path);
            walk_compare(None, Some(nv), &it, path, c, true);
        } else {
            c.added.insert(path);
        }
        path.pop();
    }
}

/// Merges an applied configuration into the live object (upstream `TypedValue.Merge`): maps
/// merge per key, associative lists per item key (live order, new items appended), sets by
/// value, and everything else (atomic lists and maps, scalars) is replaced.
pub fn merge(live: &Value, config: &Value, t: &NodeType) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !t.atomic => {
            let mut out = l.clone();
            for (k, cv) in c {
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, cv, &t.field(k)),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => match (list_elements(l, t), list_elements(c, t)) {
            (Some(le), Some(ce)) => {
                let it = t.item();
                let mut out: Vec<Value> = Vec::with_capacity(l.len() + c.len());
                for (pe, lv) in le.iter().zip(l) {
                    match ce.iter().position(|p| p == pe) {
                        Some(i) if matches!(t.list, ListKind::Map(_)) => {
                            out.push(merge(lv, &c[i], &it))
                        }
                        _ => out.push(lv.clone()),
                    }
                }
                for (pe, cv) in ce.iter().zip(c) {
                    if !le.contains(pe) {
                        out.push(cv.clone());
                    }
                }
                Value::Array(out)
            }
            _ => config.clone(),
        },
        _ => config.clone(),
    }
}

/// Fills key fields an applied list item leaves out from its unique live match (a port
/// applied without `protocol` matches the live port that was defaulted to `TCP`, as upstream
/// keys use the schema default). The filled fields are added to `filled`: the applier does not
/// own them.
pub fn complete_keys(
    config: &mut Value,
    live: &Value,
    t: &NodeType,
    path: &mut Path,
    filled: &mut Set,
) {
    match (config, live) {
        (Value::Object(c), Value::Object(l)) if !t.atomic => {
            for (k, cv) in c.iter_mut() {
                if let Some(lv) = l.get(k) {
                    path.push(PathElement::Field(k.clone()));
                    complete_keys(cv, lv, &t.field(k), path, filled);
                    path.pop();
                }
            }
        }
        (Value::Array(c), Value::Array(l)) => {
            let ListKind::Map(keys) = &t.list else {
                return;
            };
            let it = t.item();
            for item in c.iter_mut() {
                let Some(obj) = item.as_object() else {
                    continue;
                };
                let present: Vec<&String> = keys.iter().filter(|k| obj.contains_key(*k)).collect();
                let matches: Vec<&Value> = l
                    .iter()
                    .filter(|lv| {
                        present
                            .iter()
                            .all(|k| lv.get(k.as_str()) == obj.get(k.as_str()))
                    })
                    .collect();
                if let [lv] = matches.as_slice() {
                    let mut added = Vec::new();
                    if present.len() < keys.len()
                        && let (Some(o), Some(lo)) = (item.as_object_mut(), lv.as_object())
                    {
                        for k in keys {
                            if !o.contains_key(k)
                                && let Some(v) = lo.get(k)
                            {
                                o.insert(k.clone(), v.clone());
                                added.push(k.clone());
                            }
                        }
                    }
                    if let Some(pe) = item_key(item, keys) {
                        path.push(pe);
                        for k in added {
                            path.push(PathElement::Field(k));
                            filled.insert(path);
                            path.pop();
                        }
                        complete_keys(item, lv, &it, path, filled);
                        path.pop();
                    }
                }
            }
        }
        _ => {}
    }
}

/// Removes the value at a path (no-op when absent).
pub fn remove_path(v: &mut Value, path: &[PathElement], t: &NodeType) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match (first, v) {
        (PathElement::Field(f), Value::Object(m)) => {
            if rest.is_empty() {
                m.remove(f);
            } else if let Some(child) = m.get_mut(f) {
                remove_path(child, rest, &t.field(f));
            }
        }
        (pe @ (PathElement::Key(_) | PathElement::Value(_)), Value::Array(items)) => {
            let Some(pes) = list_elements(items, t) else {
                return;
            };
            let Some(i) = pes.iter().position(|p| p == pe) else {
                return;
            };
            if rest.is_empty() {
                items.remove(i);
            } else {
                remove_path(&mut items[i], rest, &t.item());
            }
        }
        _ => {}
    }
}
