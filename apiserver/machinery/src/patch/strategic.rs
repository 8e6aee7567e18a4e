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
use super::strategic_util::{
    KeyIndex, Kind, bad_arg_type, bad_patch_type, dedup_scalars, discard_nulls,
    extract_to_delete_items, go_fmt, no_merge_key, normalize_element_order, partition_maps,
    partition_primitives, remove_directives, slice_element_kind, strip_leftovers, value_key,
    value_kind, without,
};
use crate::openapi::facts::{Facts, FieldRef, facts};

pub(super) const DIRECTIVE: &str = "$patch";
pub(super) const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList";
const SET_ORDER: &str = "$setElementOrder";

// mergepatch/errors.go
const ERR_BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_BAD_SET_ORDER: &str = "invalid patch format of setElementOrder list";
pub(super) const ERR_NO_LIST_OF_LISTS: &str = "lists of lists are not supported";

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
                return Ok(without(original, &patch));
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
        let mut index = KeyIndex::new(&original, merge_key);
        for v in patch {
            let Value::Object(item) = v else {
                return Err(bad_arg_type("map[string]interface {}", &v));
            };
            let Some(merge_value) = item.get(merge_key).cloned() else {
                return Err(no_merge_key(&item, merge_key));
            };
            match index.find(&merge_value)? {
                Some(i) => {
                    let current = match std::mem::take(&mut original[i]) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    original[i] = Value::Object(self.merge_map(current, item, schema)?);
                }
                None => {
                    let item = Value::Object(item);
                    index.push(original.len(), &item, merge_key);
                    original.push(item);
                }
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
    let mut deleted = std::collections::HashSet::new();
    let non_map = original.iter().position(|v| !v.is_object());
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
                // Every item with that key goes (upstream removes them one search at a time,
                // failing on a non-map item, which lists of maps never have).
                if let Some(i) = non_map {
                    return Err(PatchError::Strategic(format!(
                        "value for key {i} is not a map"
                    )));
                }
                deleted.insert(value_key(mv));
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
    if !deleted.is_empty() {
        original.retain(|v| {
            let k = v.as_object().and_then(|m| m.get(merge_key)).map(value_key);
            !k.is_some_and(|k| deleted.contains(&k))
        });
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}
