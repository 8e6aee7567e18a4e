//! Strategic merge patch, the apply half of upstream's
//! `k8s.io/apimachinery/pkg/util/strategicpatch/patch.go` (`StrategicMergeMapPatch` with
//! `MergeParallelList` and `IgnoreUnmatchedNulls`, i.e. what the API server's PATCH handler runs).
//!
//! Maps merge recursively and `null` deletes; a list whose field has patch strategy `merge`
//! merges by its patch merge key (lists of objects) or as a union (lists of scalars); every other
//! list is replaced. Directives: `$patch: replace|delete` on maps and list items (`$patch: merge`
//! is an error, as upstream), `$retainKeys`, `$setElementOrder/<field>`,
//! `$deleteFromPrimitiveList/<field>`. The strategies come from the schema facts
//! ([`crate::openapi::Facts`]) of the definition being patched, never from a hand list; a field
//! without facts (labels, free-form maps) merges like a JSON merge patch.
//!
//! Upstream then converts the merged map into the typed object, which drops fields the type does
//! not know; here the leftover directive keys and `null`s are removed from the result instead.

use serde_json::{Map, Value};

use super::PatchError;
use crate::openapi::facts::{Facts, FieldRef, facts};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList";
const SET_ORDER: &str = "$setElementOrder";

// mergepatch/errors.go
const ERR_BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_BAD_SET_ORDER: &str = "invalid patch format of setElementOrder list";
const ERR_NO_LIST_OF_LISTS: &str = "lists of lists are not supported";

/// Applies a strategic merge patch to `original` using the facts of `definition` (an OpenAPI
/// definition name such as `io.k8s.api.apps.v1.Deployment`) from the built-in table.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    definition: &str,
) -> Result<Value, PatchError> {
    strategic_merge_patch_with(facts(), original, patch, definition)
}

/// [`strategic_merge_patch`] with an explicit facts table (tests use upstream's `MergeItem`).
pub fn strategic_merge_patch_with(
    table: &Facts,
    original: &Value,
    patch: &Value,
    definition: &str,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::StrategicBadRequest(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            json_kind_word(patch)
        )));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let engine = Engine { facts: table };
    let mut merged =
        Value::Object(engine.merge_map(original, patch.clone(), Schema::Def(definition))?);
    strip_leftovers(&mut merged);
    Ok(merged)
}

fn json_kind_word(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::Object(_) => "object",
    }
}

/// Where in the schema a map is: a definition, the values of a map of a definition, or free-form.
#[derive(Clone, Copy, Debug)]
enum Schema<'a> {
    Def(&'a str),
    MapOf(&'a str),
    Free,
}

impl Schema<'_> {
    fn name(&self) -> String {
        match self {
            Schema::Def(d) | Schema::MapOf(d) => (*d).to_string(),
            Schema::Free => "object".to_string(),
        }
    }
}

/// The patch metadata of one field (upstream `PatchMeta` + the sub-schema).
struct Meta<'a> {
    merge: bool,
    replace: bool,
    merge_key: &'a str,
    sub: Schema<'a>,
}

struct Engine<'a> {
    facts: &'a Facts,
}

impl<'a> Engine<'a> {
    fn lookup(&self, schema: Schema<'a>, field: &str) -> Meta<'a> {
        let mut meta = Meta {
            merge: false,
            replace: false,
            merge_key: "",
            sub: Schema::Free,
        };
        match schema {
            Schema::Free => {}
            Schema::MapOf(d) => meta.sub = Schema::Def(d),
            Schema::Def(d) => {
                if let Some(ff) = self.facts.field_facts(d, field) {
                    // extractRetainKeysPatchStrategy: "retainKeys" only matters when diffing.
                    for s in ff.patch_strategy.as_deref().unwrap_or("").split(',') {
                        match s.trim() {
                            "merge" => meta.merge = true,
                            "replace" => meta.replace = true,
                            _ => {}
                        }
                    }
                    meta.merge_key = ff.patch_merge_key.as_deref().unwrap_or("");
                    meta.sub = match &ff.reference {
                        Some(FieldRef::Direct(x)) | Some(FieldRef::Items(x)) => {
                            Schema::Def(x.as_str())
                        }
                        Some(FieldRef::Values(x)) => Schema::MapOf(x.as_str()),
                        None => Schema::Free,
                    };
                }
            }
        }
        meta
    }

    /// `mergeMap`.
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        schema: Schema<'a>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(d) = patch.get(DIRECTIVE) {
            return handle_directive_in_merge_map(&d.clone(), patch);
        }
        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_patch_into_original(&mut original, &mut patch, schema)?;

        for (k, patch_v) in patch {
            let (key, is_delete_list) = if k.starts_with(DELETE_PRIMITIVE) {
                (extract_key(&k, DELETE_PRIMITIVE)?, true)
            } else {
                (k, false)
            };
            if patch_v.is_null() {
                original.shift_remove(&key);
                continue;
            }
            let same_kind = original
                .get(&key)
                .is_some_and(|o| value_kind(o) == value_kind(&patch_v));
            if !same_kind {
                // Missing in the original, or of another type: take the patch value.
                if !is_delete_list {
                    let mut v = patch_v;
                    discard_nulls(&mut v);
                    match remove_directives(v) {
                        Some(v) => {
                            original.insert(key, v);
                        }
                        None => {
                            original.shift_remove(&key);
                        }
                    }
                }
                continue;
            }
            if !matches!(patch_v, Value::Object(_) | Value::Array(_)) {
                // Scalars of the same type: the patch value wins.
                original.insert(key, patch_v);
                continue;
            }
            let Some(slot) = original.get_mut(&key) else {
                continue;
            };
            match (slot, patch_v) {
                (Value::Object(o), Value::Object(p)) => {
                    let meta = self.lookup(schema, &key);
                    if meta.replace {
                        *o = p;
                    } else {
                        *o = self.merge_map(std::mem::take(o), p, meta.sub)?;
                    }
                }
                (Value::Array(o), Value::Array(p)) => {
                    let meta = self.lookup(schema, &key);
                    if meta.merge || is_delete_list {
                        *o = self.merge_slice(
                            std::mem::take(o),
                            p,
                            meta.sub,
                            meta.merge_key,
                            is_delete_list,
                        )?;
                    } else {
                        *o = p;
                    }
                }
                (slot, p) => *slot = p,
            }
        }
        Ok(original)
    }

    /// `mergePatchIntoOriginal`: the `$setElementOrder/<field>` lists and their fields.
    fn merge_patch_into_original(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        schema: Schema<'a>,
    ) -> Result<(), PatchError> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ORDER))
            .cloned()
            .collect();
        for key in keys {
            let Some(set_order) = patch.shift_remove(&key) else {
                continue;
            };
            let Value::Array(set_order) = set_order else {
                return Err(bad_arg_type("[]interface {}", &set_order));
            };
            let field = extract_key(&key, SET_ORDER)?;
            let original_list = match original.get(&field) {
                None => None,
                Some(Value::Array(a)) => Some(a.clone()),
                Some(other) => return Err(bad_arg_type("[]interface {}", other)),
            };
            let patch_list = match patch.get(&field) {
                None => None,
                Some(Value::Array(a)) => Some(a.clone()),
                Some(other) => return Err(bad_arg_type("[]interface {}", other)),
            };
            let meta = self.lookup(schema, &field);
            validate_patch_with_set_order(
                patch_list.as_deref().unwrap_or(&[]),
                &set_order,
                meta.merge_key,
            )?;
            let merged = match (&original_list, &patch_list) {
                (Some(o), None) => o.clone(),
                (None, Some(p)) => match remove_directives(Value::Array(p.clone())) {
                    Some(Value::Array(a)) => a,
                    _ => continue,
                },
                (Some(o), Some(p)) => {
                    if meta.merge {
                        self.merge_slice(o.clone(), p.clone(), meta.sub, meta.merge_key, false)?
                    } else {
                        p.clone()
                    }
                }
                (None, None) => continue,
            };
            let (patch_items, server_only) = if meta.merge_key.is_empty() {
                partition_primitives(merged, &set_order)
            } else {
                partition_maps(merged, &set_order, meta.merge_key)?
            };
            let orig = original_list.unwrap_or_default();
            let kind = slice_element_kind(&[&orig, patch_list.as_deref().unwrap_or(&[])])?;
            let both = normalize_element_order(
                patch_items,
                server_only,
                &set_order,
                &orig,
                meta.merge_key,
                kind,
            )?;
            original.insert(field.clone(), Value::Array(both));
            patch.shift_remove(&field);
        }
        Ok(())
    }

    /// `mergeSlice`.
    fn merge_slice(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        schema: Schema<'a>,
        merge_key: &str,
        is_delete_list: bool,
    ) -> Result<Vec<Value>, PatchError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let kind = slice_element_kind(&[&original, &patch])?;
        let (merged, server_order, patch) = if kind != Kind::Map {
            if is_delete_list {
                return Ok(original
                    .into_iter()
                    .filter(|v| !patch.contains(v))
                    .collect());
            }
            let server_order = original.clone();
            let mut both = original;
            both.extend(patch.iter().cloned());
            (dedup_scalars(both), server_order, patch)
        } else {
            if merge_key.is_empty() {
                return Err(PatchError::Strategic(format!(
                    "cannot merge lists without merge key for {}",
                    schema.name()
                )));
            }
            let (original, patch) = merge_slice_with_special_elements(original, patch, merge_key)?;
            let server_order = original.clone();
            let merged = self.merge_slice_without_special_elements(
                original,
                patch.clone(),
                merge_key,
                schema,
            )?;
            (merged, server_order, patch)
        };
        let (patch_items, server_only) = if merge_key.is_empty() {
            partition_primitives(merged, &patch)
        } else {
            partition_maps(merged, &patch, merge_key)?
        };
        normalize_element_order(
            patch_items,
            server_only,
            &patch,
            &server_order,
            merge_key,
            kind,
        )
    }

    /// `mergeSliceWithoutSpecialElements`.
    fn merge_slice_without_special_elements(
        &self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        merge_key: &str,
        schema: Schema<'a>,
    ) -> Result<Vec<Value>, PatchError> {
        for v in patch {
            let Value::Object(item) = v else {
                return Err(bad_arg_type("map[string]interface {}", &v));
            };
            let Some(merge_value) = item.get(merge_key).cloned() else {
                return Err(no_merge_key(&item, merge_key));
            };
            match find_map_by_key(&original, merge_key, &merge_value)? {
                Some(i) => {
                    let current = match std::mem::take(&mut original[i]) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    original[i] = Value::Object(self.merge_map(current, item, schema)?);
                }
                None => original.push(Value::Object(item)),
            }
        }
        Ok(original)
    }
}

/// `handleDirectiveInMergeMap`.
fn handle_directive_in_merge_map(
    directive: &Value,
    mut patch: Map<String, Value>,
) -> Result<Map<String, Value>, PatchError> {
    match directive.as_str() {
        Some("replace") => {
            patch.shift_remove(DIRECTIVE);
            Ok(patch)
        }
        Some("delete") => Ok(Map::new()),
        _ => Err(bad_patch_type(directive, &patch)),
    }
}

/// `applyRetainKeysDirective` (server side: `MergeParallelList`).
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::StrategicBadRequest(ERR_BAD_RETAIN_KEYS.into()));
    };
    let keep = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE) || k.starts_with(SET_ORDER) {
            continue;
        }
        if !keep(k) {
            return Err(PatchError::StrategicBadRequest(ERR_BAD_RETAIN_KEYS.into()));
        }
    }
    original.retain(|k, _| keep(k));
    Ok(())
}

/// `extractKey`: `$deleteFromPrimitiveList/finalizers` → `finalizers`.
fn extract_key(s: &str, prefix: &str) -> Result<String, PatchError> {
    match s.split_once('/') {
        Some((head, rest)) if head == prefix => Ok(rest.to_string()),
        _ => Err(PatchError::StrategicBadRequest(
            if prefix == DELETE_PRIMITIVE {
                ERR_BAD_PRIMITIVE_LIST
            } else {
                ERR_BAD_SET_ORDER
            }
            .into(),
        )),
    }
}

/// `validatePatchWithSetOrderList`.
fn validate_patch_with_set_order(
    patch_list: &[Value],
    set_order: &[Value],
    merge_key: &str,
) -> Result<(), PatchError> {
    if set_order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<Value> = if merge_key.is_empty() {
        patch_list.to_vec()
    } else {
        extract_to_delete_items(patch_list.to_vec())?.0
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < set_order.len() {
        if non_delete[pi]
            .as_object()
            .is_some_and(|m| m.contains_key(DIRECTIVE))
        {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(&non_delete[pi], &set_order[si], merge_key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= set_order.len() {
        return Err(PatchError::Strategic(format!(
            "the order in patch list:\n{}\n doesn't match {SET_ORDER} list:\n{}",
            go_fmt(&Value::Array(patch_list.to_vec())),
            go_fmt(&Value::Array(set_order.to_vec()))
        )));
    }
    Ok(())
}

fn merge_key_value_equal(left: &Value, right: &Value, key: &str) -> Result<bool, PatchError> {
    if key.is_empty() {
        return Ok(left == right);
    }
    let l = left
        .as_object()
        .ok_or_else(|| bad_arg_type("map[string]interface {}", left))?;
    let r = right
        .as_object()
        .ok_or_else(|| bad_arg_type("map[string]interface {}", right))?;
    let lv = l.get(key).ok_or_else(|| no_merge_key(l, key))?;
    let rv = r.get(key).ok_or_else(|| no_merge_key(r, key))?;
    Ok(lv == rv)
}

/// `mergeSliceWithSpecialElements`: applies `$patch: delete|replace` items.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Some(item) = v.as_object() else {
            return Err(bad_arg_type("map[string]interface {}", &v));
        };
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(v);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(mv) = item.get(merge_key) else {
                    return Err(no_merge_key(item, merge_key));
                };
                while let Some(i) = find_map_by_key(&original, merge_key, mv)? {
                    original.remove(i);
                }
            }
            // Keep going to prune any other `$patch` items.
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Strategic(
                    "merging lists cannot yet be specified in the patch".into(),
                ));
            }
            _ => return Err(bad_patch_type(directive, item)),
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

/// `findMapInSliceBasedOnKeyValue`.
fn find_map_by_key(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>, PatchError> {
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
enum Kind {
    Map,
    Slice,
    String,
    Int,
    Float,
    Bool,
    Null,
}

fn value_kind(v: &Value) -> Kind {
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
fn slice_element_kind(slices: &[&[Value]]) -> Result<Kind, PatchError> {
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
fn dedup_scalars(mut s: Vec<Value>) -> Vec<Value> {
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
fn partition_primitives(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    merged.into_iter().partition(|v| by.contains(v))
}

/// `partitionMapsByPresentInList`.
fn partition_maps(
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
fn extract_to_delete_items(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
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
fn index_of(list: &[Value], v: &Value, key: &str, kind: Kind) -> Option<usize> {
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
fn normalize_slice_order(
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
fn normalize_element_order(
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
fn remove_directives(v: Value) -> Option<Value> {
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
fn discard_nulls(v: &mut Value) {
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
fn strip_leftovers(v: &mut Value) {
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
fn go_fmt(v: &Value) -> String {
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

fn go_type(v: &Value) -> &'static str {
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
fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    PatchError::Strategic(format!(
        "expected a {expected}, but received a {}",
        go_type(actual)
    ))
}

/// `mergepatch.ErrNoMergeKey`.
fn no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::Strategic(format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt(&Value::Object(m.clone()))
    ))
}

/// `mergepatch.ErrBadPatchType`.
fn bad_patch_type(directive: &Value, m: &Map<String, Value>) -> PatchError {
    PatchError::Strategic(format!(
        "unknown patch type: {} in map: {}",
        go_fmt(directive),
        go_fmt(&Value::Object(m.clone()))
    ))
}
