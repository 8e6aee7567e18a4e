//! List and value helpers of the strategic merge patch ([`super::strategic`]): upstream's
//! `sliceElementType`, `deduplicateScalars`, the partition/normalize-order functions of
//! `mergeSlice`, `removeDirectives`, `discardNullValuesFromPatch`, and the texts of
//! `k8s.io/apimachinery/pkg/util/mergepatch/errors.go`.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::PatchError;
use super::strategic::{DIRECTIVE, ERR_NO_LIST_OF_LISTS, RETAIN_KEYS};

/// A hashable form of a value with `==`'s meaning (object key order ignored), so lists can be
/// indexed instead of searched: no list merge is quadratic in the list length.
pub(super) fn value_key(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<_> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (k, v) in entries {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for v in a {
                    write(v, out);
                    out.push(',');
                }
                out.push(']');
            }
            // -0.0 == 0.0 for f64.
            Value::Number(n) if n.as_f64() == Some(0.0) && n.is_f64() => out.push_str("0.0"),
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// The maps of a list indexed by the value of their merge key (first occurrence), answering
/// like upstream's `findMapInSliceBasedOnKeyValue` linear scan, errors included.
pub(super) struct KeyIndex {
    first: HashMap<String, usize>,
    first_non_map: Option<usize>,
}

impl KeyIndex {
    pub(super) fn new(list: &[Value], key: &str) -> Self {
        let mut index = KeyIndex {
            first: HashMap::with_capacity(list.len()),
            first_non_map: None,
        };
        for (i, v) in list.iter().enumerate() {
            index.push(i, v, key);
        }
        index
    }

    /// Records `v` as element `i` (appended to the list).
    pub(super) fn push(&mut self, i: usize, v: &Value, key: &str) {
        match v.as_object() {
            None => {
                self.first_non_map.get_or_insert(i);
            }
            Some(m) => {
                if let Some(kv) = m.get(key) {
                    self.first.entry(value_key(kv)).or_insert(i);
                }
            }
        }
    }

    /// The first element whose merge key is `value`; an error when a non-map comes first.
    pub(super) fn find(&self, value: &Value) -> Result<Option<usize>, PatchError> {
        let hit = self.first.get(&value_key(value)).copied();
        match self.first_non_map {
            Some(bad) if hit.is_none_or(|h| h > bad) => Err(PatchError::Strategic(format!(
                "value for key {bad} is not a map"
            ))),
            _ => Ok(hit),
        }
    }
}

/// Positions of values in an order list (`index` of upstream, precomputed).
struct OrderIndex {
    first: HashMap<String, usize>,
    key: String,
    kind: Kind,
}

impl OrderIndex {
    fn new(order: &[Value], key: &str, kind: Kind) -> Self {
        let mut first = HashMap::with_capacity(order.len());
        for (i, v) in order.iter().enumerate() {
            if let Some(k) = Self::key_of(v, key, kind) {
                first.entry(k).or_insert(i);
            }
        }
        OrderIndex {
            first,
            key: key.to_string(),
            kind,
        }
    }

    /// What `index` compares: the merge key's value for maps (absent: `None`), the value itself
    /// otherwise.
    fn key_of(v: &Value, key: &str, kind: Kind) -> Option<String> {
        if kind == Kind::Map {
            let kv = v.as_object().and_then(|m| m.get(key));
            Some(kv.map_or_else(|| "\u{0}absent".to_string(), value_key))
        } else {
            Some(value_key(v))
        }
    }

    fn index_of(&self, v: &Value) -> Option<usize> {
        Self::key_of(v, &self.key, self.kind).and_then(|k| self.first.get(&k).copied())
    }
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

/// `deduplicateScalars`. Upstream's in-place algorithm is quadratic and leaves an order that
/// only the normalization afterwards fixes; the merged list is always normalized by positions
/// that are distinct for distinct values, so keeping first occurrences gives the same result.
pub(super) fn dedup_scalars(s: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::with_capacity(s.len());
    s.into_iter()
        .filter(|v| seen.insert(value_key(v)))
        .collect()
}

/// `partitionPrimitivesByPresentInList`.
pub(super) fn partition_primitives(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let by: HashSet<String> = by.iter().map(value_key).collect();
    merged.into_iter().partition(|v| by.contains(&value_key(v)))
}

/// The values of `list` that are not in `remove` (a `$deleteFromPrimitiveList`).
pub(super) fn without(list: Vec<Value>, remove: &[Value]) -> Vec<Value> {
    let remove: HashSet<String> = remove.iter().map(value_key).collect();
    list.into_iter()
        .filter(|v| !remove.contains(&value_key(v)))
        .collect()
}

/// `partitionMapsByPresentInList`.
pub(super) fn partition_maps(
    merged: Vec<Value>,
    by: &[Value],
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let (mut patch, mut server) = (Vec::new(), Vec::new());
    let by = KeyIndex::new(by, key);
    for v in merged {
        let Some(m) = v.as_object() else {
            return Err(bad_arg_type("map[string]interface {}", &v));
        };
        let Some(mv) = m.get(key) else {
            return Err(no_merge_key(m, key));
        };
        if by.find(mv)?.is_some() {
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

/// `normalizeSliceOrder`: sorts `to_sort` by `order` with Go's `sort.SliceStable` (the
/// comparison is upstream's, which calls two elements ordered when either is missing from
/// `order`; [`go_stable_sort`] gives the same result for it), deletions last.
pub(super) fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    key: &str,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let (to_sort, to_delete) = if kind == Kind::Map {
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
    let index = OrderIndex::new(order, key, kind);
    let mut keyed: Vec<(Option<usize>, Value)> = to_sort
        .into_iter()
        .map(|v| (index.index_of(&v), v))
        .collect();
    go_stable_sort(&mut keyed, |a, b| match (a.0, b.0) {
        (Some(i), Some(j)) => i < j,
        _ => true,
    });
    let mut out: Vec<Value> = keyed.into_iter().map(|(_, v)| v).collect();
    out.extend(to_delete);
    Ok(out)
}

/// Go's `sort.Stable` (insertion sort of blocks of 20, then `symMerge`), step for step, so that
/// comparisons that are not a strict weak order still give upstream's order. O(n log² n).
pub(super) fn go_stable_sort<T>(data: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let n = data.len();
    let mut block = 20;
    let (mut a, mut b) = (0, block);
    while b <= n {
        insertion_sort(data, a, b, &less);
        a = b;
        b += block;
    }
    insertion_sort(data, a, n, &less);
    while block < n {
        let (mut a, mut b) = (0, 2 * block);
        while b <= n {
            sym_merge(data, a, a + block, b, &less);
            a = b;
            b += 2 * block;
        }
        let m = a + block;
        if m < n {
            sym_merge(data, a, m, n, &less);
        }
        block *= 2;
    }
}

fn insertion_sort<T>(data: &mut [T], a: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && less(&data[j], &data[j - 1]) {
            data.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn sym_merge<T>(data: &mut [T], a: usize, m: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    if m - a == 1 {
        let (mut i, mut j) = (m, b);
        while i < j {
            let h = (i + j) / 2;
            if less(&data[h], &data[a]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        for k in a..i.saturating_sub(1) {
            data.swap(k, k + 1);
        }
        return;
    }
    if b - m == 1 {
        let (mut i, mut j) = (a, m);
        while i < j {
            let h = (i + j) / 2;
            if !less(&data[m], &data[h]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        let mut k = m;
        while k > i {
            data.swap(k, k - 1);
            k -= 1;
        }
        return;
    }
    let mid = (a + b) / 2;
    let n = mid + m;
    let (mut start, mut r) = if m > mid { (n - b, mid) } else { (a, m) };
    let p = n - 1;
    while start < r {
        let c = (start + r) / 2;
        if !less(&data[p - c], &data[c]) {
            start = c + 1;
        } else {
            r = c;
        }
    }
    let end = n - start;
    if start < m && m < end {
        rotate(data, start, m, end);
    }
    if a < start && start < mid {
        sym_merge(data, a, start, mid, less);
    }
    if mid < end && end < b {
        sym_merge(data, mid, end, b, less);
    }
}

fn rotate<T>(data: &mut [T], a: usize, m: usize, b: usize) {
    let (mut i, mut j) = (m - a, b - m);
    while i != j {
        if i > j {
            swap_range(data, m - i, m, j);
            i -= j;
        } else {
            swap_range(data, m - i, m + j - i, i);
            j -= i;
        }
    }
    swap_range(data, m - i, m, i);
}

fn swap_range<T>(data: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        data.swap(a + i, b + i);
    }
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
    let server = OrderIndex::new(server_order, key, kind);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut li, mut ri) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        match (li.peek(), ri.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(li.next()),
            (None, Some(_)) => out.extend(ri.next()),
            (Some(l), Some(r)) => {
                let take_left = match (server.index_of(l), server.index_of(r)) {
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
