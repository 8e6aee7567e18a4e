//! List and value helpers of the strategic merge patch ([`super::strategic`]): upstream's
//! `sliceElementType`, `deduplicateScalars`, the partition/normalize-order functions of
//! `mergeSlice`, `removeDirectives`, `discardNullValuesFromPatch`, and the texts of
//! `k8s.io/apimachinery/pkg/util/mergepatch/errors.go`.

use serde_json::{Map, Value};

use super::PatchError;
use super::strategic::{DIRECTIVE, ERR_NO_LIST_OF_LISTS, RETAIN_KEYS};

/// `findMapInSliceBasedOnKeyValue`.
pub(super) fn find_map_by_key(
    list: &[Value],
    key: &str,
    value: &Value,
) -> Result<Option<usize>, PatchError> {
    for (i, v) in list.iter().enumerate() {
        let Some(m) = v.as_object() else {
            return Err(PatchError::Strategic(format!(
                "value for key {i} is not a map"
            )));
        };
        if m.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// The element kinds `sliceElementType` distinguishes (Go's reflect types of decoded JSON).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Map,
    Slice,
    String,
    Int,
    Float,
    Bool,
    Null,
}

pub(super) fn value_kind(v: &Value) -> Kind {
    match v {
        Value::Object(_) => Kind::Map,
        Value::Array(_) => Kind::Slice,
        Value::String(_) => Kind::String,
        Value::Number(n) if n.is_f64() => Kind::Float,
        Value::Number(_) => Kind::Int,
        Value::Bool(_) => Kind::Bool,
        Value::Null => Kind::Null,
    }
}

/// `sliceElementType`.
pub(super) fn slice_element_kind(slices: &[&[Value]]) -> Result<Kind, PatchError> {
    let mut prev: Option<Kind> = None;
    for v in slices.iter().flat_map(|s| s.iter()) {
        let k = value_kind(v);
        match prev {
            None => {
                if k == Kind::Slice {
                    return Err(PatchError::StrategicUnprocessable(
                        ERR_NO_LIST_OF_LISTS.into(),
                    ));
                }
                prev = Some(k);
            }
            Some(p) if p != k => {
                let all: Vec<Value> = slices.iter().map(|s| Value::Array(s.to_vec())).collect();
                return Err(PatchError::Strategic(format!(
                    "list element types are not identical: {}",
                    go_fmt(&Value::Array(all))
                )));
            }
            Some(_) => {}
        }
    }
    prev.ok_or_else(|| PatchError::Strategic("no elements in any of the given slices".into()))
}

/// `deduplicateScalars`, with upstream's in-place algorithm (it changes the order; the order is
/// normalized afterwards).
pub(super) fn dedup_scalars(mut s: Vec<Value>) -> Vec<Value> {
    let mut length = s.len() as isize - 1;
    let mut i: isize = 0;
    while i < length {
        let mut j = i + 1;
        while j <= length {
            if s[i as usize] == s[j as usize] {
                s[j as usize] = s[length as usize].clone();
                s.truncate(length as usize);
                length -= 1;
                j -= 1;
            }
            j += 1;
        }
        i += 1;
    }
    s
}

/// `partitionPrimitivesByPresentInList`.
pub(super) fn partition_primitives(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    merged.into_iter().partition(|v| by.contains(v))
}

/// `partitionMapsByPresentInList`.
pub(super) fn partition_maps(
    merged: Vec<Value>,
    by: &[Value],
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let (mut patch, mut server) = (Vec::new(), Vec::new());
    for v in merged {
        let Some(m) = v.as_object() else {
            return Err(bad_arg_type("map[string]interface {}", &v));
        };
        let Some(mv) = m.get(key) else {
            return Err(no_merge_key(m, key));
        };
        if find_map_by_key(by, key, mv)?.is_some() {
            patch.push(v);
        } else {
            server.push(v);
        }
    }
    Ok((patch, server))
}

/// `extractToDeleteItems`: (items to keep, items with `$patch: delete`).
pub(super) fn extract_to_delete_items(
    list: Vec<Value>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let (mut keep, mut delete) = (Vec::new(), Vec::new());
    for v in list {
        let Some(m) = v.as_object() else {
            return Err(bad_arg_type("map[string]interface {}", &v));
        };
        if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
            delete.push(v);
        } else {
            keep.push(v);
        }
    }
    Ok((keep, delete))
}

/// `index`: the position of `v` in `list` (by merge key value for maps).
pub(super) fn index_of(list: &[Value], v: &Value, key: &str, kind: Kind) -> Option<usize> {
    if kind == Kind::Map {
        let want = v.as_object().and_then(|m| m.get(key));
        list.iter()
            .position(|x| x.as_object().and_then(|m| m.get(key)) == want)
    } else {
        list.iter().position(|x| x == v)
    }
}

/// `normalizeSliceOrder`: sorts `to_sort` by `order` (Go's `sort.SliceStable`, which is an
/// insertion sort for the list sizes of Kubernetes objects), deletions last.
pub(super) fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    key: &str,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let (mut to_sort, to_delete) = if kind == Kind::Map {
        for v in to_sort.iter().chain(order.iter()) {
            let m = v
                .as_object()
                .ok_or_else(|| bad_arg_type("map[string]interface {}", v))?;
            if !m.contains_key(key) {
                return Err(no_merge_key(m, key));
            }
        }
        extract_to_delete_items(to_sort)?
    } else {
        (to_sort, Vec::new())
    };
    let less =
        |a: &Value, b: &Value| match (index_of(order, a, key, kind), index_of(order, b, key, kind))
        {
            (Some(i), Some(j)) => i < j,
            _ => true,
        };
    for i in 1..to_sort.len() {
        let mut j = i;
        while j > 0 && less(&to_sort[j], &to_sort[j - 1]) {
            to_sort.swap(j, j - 1);
            j -= 1;
        }
    }
    to_sort.extend(to_delete);
    Ok(to_sort)
}

/// `normalizeElementOrder` + `mergeSortedSlice`: patch items in patch order, server-only items
/// in server order, interleaved by the server order where both are known.
pub(super) fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: &str,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let right = normalize_slice_order(patch, patch_order, key, kind)?;
    let left = normalize_slice_order(server_only, server_order, key, kind)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut li, mut ri) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        match (li.peek(), ri.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(li.next()),
            (None, Some(_)) => out.extend(ri.next()),
            (Some(l), Some(r)) => {
                let take_left = match (
                    index_of(server_order, l, key, kind),
                    index_of(server_order, r, key, kind),
                ) {
                    (Some(a), Some(b)) => a < b,
                    _ => false,
                };
                if take_left {
                    out.extend(li.next());
                } else {
                    out.extend(ri.next());
                }
            }
        }
    }
    Ok(out)
}

/// `removeDirectives`: `None` when the value itself is a directive map (drop the field/item).
pub(super) fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                m.into_iter()
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// `discardNullValuesFromPatch`.
pub(super) fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Removes what the typed decode upstream would drop: directive keys and `null` fields.
pub(super) fn strip_leftovers(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, v| {
                !v.is_null()
                    && k != DIRECTIVE
                    && k != RETAIN_KEYS
                    && !k.starts_with("$setElementOrder/")
                    && !k.starts_with("$deleteFromPrimitiveList/")
            });
            m.values_mut().for_each(strip_leftovers);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_leftovers),
        _ => {}
    }
}

/// Go's `%v` of a decoded JSON value (`map[a:1 b:[x y]]`), for upstream's error texts.
pub(super) fn go_fmt(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_fmt(&m[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

pub(super) fn go_type(v: &Value) -> &'static str {
    match value_kind(v) {
        Kind::Map => "map[string]interface {}",
        Kind::Slice => "[]interface {}",
        Kind::String => "string",
        Kind::Int => "int64",
        Kind::Float => "float64",
        Kind::Bool => "bool",
        Kind::Null => "<nil>",
    }
}

/// `mergepatch.ErrBadArgType`.
pub(super) fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    PatchError::Strategic(format!(
        "expected a {expected}, but received a {}",
        go_type(actual)
    ))
}

/// `mergepatch.ErrNoMergeKey`.
pub(super) fn no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::Strategic(format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt(&Value::Object(m.clone()))
    ))
}

/// `mergepatch.ErrBadPatchType`.
pub(super) fn bad_patch_type(directive: &Value, m: &Map<String, Value>) -> PatchError {
    PatchError::Strategic(format!(
        "unknown patch type: {} in map: {}",
        go_fmt(directive),
        go_fmt(&Value::Object(m.clone()))
    ))
}
