//! RFC 6902 JSON patch.

use serde_json::Value;

use super::PatchError;
use crate::limits::{
    JSON_PATCH_MAX_COPY_BYTES, MAX_DEPTH, MAX_JSON_PATCH_OPERATIONS, TooDeep, depth_up_to,
    json_size,
};

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    if !path.starts_with('/') {
        return Err(PatchError::Path(format!("invalid JSON pointer {path:?}")));
    }
    Ok(path[1..].split('/').map(unescape).collect())
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| PatchError::Path(format!("doc is missing path: \"{path}\"")))?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| {
                    PatchError::Path(format!("invalid array index {t:?} in \"{path}\""))
                })?;
                a.get_mut(i)
                    .ok_or_else(|| PatchError::Path(format!("doc is missing path: \"{path}\"")))?
            }
            _ => return Err(PatchError::Path(format!("doc is missing path: \"{path}\""))),
        };
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, PatchError> {
    let mut cur = doc;
    for t in split_pointer(path)? {
        cur = match cur {
            Value::Object(m) => m.get(&t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError::Path(format!("doc is missing path: \"{path}\"")))?;
    }
    Ok(cur)
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let mut tokens = split_pointer(path)?;
    let last = tokens
        .pop()
        .ok_or_else(|| PatchError::Path("cannot remove the document root".into()))?;
    match parent_mut(doc, &tokens, path)? {
        Value::Object(m) => m.shift_remove(&last).ok_or_else(|| {
            PatchError::Path(format!(
                "Unable to remove nonexistent key: {last}: missing value"
            ))
        }),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| PatchError::Path(format!("invalid array index {last:?}")))?;
            if i >= a.len() {
                return Err(PatchError::Path(format!(
                    "Unable to access invalid index: {i}: invalid index referenced"
                )));
            }
            Ok(a.remove(i))
        }
        _ => Err(PatchError::Path(format!("doc is missing path: \"{path}\""))),
    }
}

fn add(doc: &mut Value, path: &str, value: Value, replace: bool) -> Result<(), PatchError> {
    let mut tokens = split_pointer(path)?;
    // The value lands below `tokens.len()` containers: keep the document within MAX_DEPTH so
    // that no sequence of operations can nest it without bound.
    let room = MAX_DEPTH.saturating_sub(tokens.len());
    if depth_up_to(&value, room) > room {
        return Err(PatchError::TooDeep(TooDeep { max: MAX_DEPTH }));
    }
    let Some(last) = tokens.pop() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, &tokens, path)? {
        Value::Object(m) => {
            if replace && !m.contains_key(&last) {
                return Err(PatchError::Path(format!(
                    "replace operation does not apply: doc is missing key: {path}: missing value"
                )));
            }
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" && !replace {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| PatchError::Path(format!("invalid array index {last:?}")))?;
            if replace {
                let slot = a.get_mut(i).ok_or_else(|| {
                    PatchError::Path(format!(
                        "Unable to access invalid index: {i}: invalid index referenced"
                    ))
                })?;
                *slot = value;
            } else {
                if i > a.len() {
                    return Err(PatchError::Path(format!(
                        "Unable to access invalid index: {i}: invalid index referenced"
                    )));
                }
                a.insert(i, value);
            }
            Ok(())
        }
        _ => Err(PatchError::Path(format!("doc is missing path: \"{path}\""))),
    }
}

/// RFC 6902 JSON patch, with upstream's bounds: at most [`MAX_JSON_PATCH_OPERATIONS`]
/// operations ([`PatchError::TooManyOperations`], checked before any is applied) and at most
/// [`JSON_PATCH_MAX_COPY_BYTES`] duplicated by `copy` operations in all
/// ([`PatchError::CopyTooLarge`], checked before each copy is made). The document never becomes
/// deeper than [`MAX_DEPTH`] ([`PatchError::TooDeep`]). On error `doc` may be partly patched.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        PatchError::Malformed(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        )
    })?;
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations { got: ops.len() });
    }
    let mut copied: u64 = 0;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::Malformed("Unexpected kind: missing op".into()))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::Malformed(format!("operation {kind} is missing path")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError::Malformed(format!("operation {kind} is missing value")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| PatchError::Malformed(format!("operation {kind} is missing from")))
        };
        match kind {
            "add" => add(doc, path, value()?, false)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => add(doc, path, value()?, true)?,
            "move" => {
                let v = remove(doc, from()?)?;
                add(doc, path, v, false)?;
            }
            "copy" => {
                let source = get(doc, from()?)?;
                copied = copied.saturating_add(json_size(source));
                if copied > JSON_PATCH_MAX_COPY_BYTES {
                    return Err(PatchError::CopyTooLarge {
                        accumulated: copied,
                        limit: JSON_PATCH_MAX_COPY_BYTES,
                    });
                }
                let v = source.clone();
                add(doc, path, v, false)?;
            }
            "test" => {
                if *get(doc, path)? != value()? {
                    return Err(PatchError::TestFailed {
                        path: path.to_string(),
                    });
                }
            }
            other => return Err(PatchError::Malformed(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"a": {"b": [1, 2]}, "c": 1});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/c", "value": 2},
                {"op": "test", "path": "/c", "value": 2},
                {"op": "copy", "from": "/c", "path": "/d"},
                {"op": "move", "from": "/d", "path": "/e"},
                {"op": "remove", "path": "/a/b/0"}
            ]),
        )
        .unwrap();
        assert_eq!(d, json!({"a": {"b": [2, 3]}, "c": 2, "e": 2}));
        assert_eq!(
            json_patch(&mut d, &json!([{"op": "test", "path": "/c", "value": 9}])),
            Err(PatchError::TestFailed { path: "/c".into() })
        );
        assert!(json_patch(&mut d, &json!([{"op": "remove", "path": "/zz"}])).is_err());
    }

    #[test]
    fn too_many_operations_are_refused_before_any_is_applied() {
        let op = json!({"op": "add", "path": "/a", "value": 1});
        let mut d = json!({});
        let ops = Value::Array(vec![op.clone(); MAX_JSON_PATCH_OPERATIONS + 1]);
        let err = json_patch(&mut d, &ops).unwrap_err();
        assert_eq!(err, PatchError::TooManyOperations { got: 10_001 });
        assert_eq!(
            err.to_string(),
            "The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
        assert_eq!(d, json!({}));
        let ops = Value::Array(vec![op; MAX_JSON_PATCH_OPERATIONS]);
        json_patch(&mut d, &ops).unwrap();
        assert_eq!(d, json!({"a": 1}));
    }

    #[test]
    fn copy_bomb_fails_fast_on_the_accumulated_size() {
        // ~3 KB array doubled by each copy: 40 copies would be 3 KB * 2^40.
        let mut d = json!({"data": {"n": vec!["x".repeat(30); 100]}});
        let ops: Vec<Value> = (0..40)
            .map(|_| json!({"op": "copy", "from": "/data/n", "path": "/data/n/-"}))
            .collect();
        let start = std::time::Instant::now();
        let err = json_patch(&mut d, &Value::Array(ops)).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        let PatchError::CopyTooLarge { accumulated, limit } = err else {
            panic!("{err:?}");
        };
        assert_eq!(limit, 3 * 1024 * 1024);
        assert!(
            accumulated > limit && accumulated < 8 * limit,
            "{accumulated}"
        );
        assert!(
            err.to_string().starts_with(
                "Unable to complete the copy, the accumulated size increase of copy is "
            )
        );
        // Small copies are fine.
        let mut d = json!({"a": [1]});
        json_patch(&mut d, &json!([{"op": "copy", "from": "/a", "path": "/b"}])).unwrap();
        assert_eq!(d, json!({"a": [1], "b": [1]}));
    }

    #[test]
    fn nesting_by_repeated_adds_is_bounded() {
        let mut nested = json!(1);
        for _ in 0..100 {
            nested = json!({"a": nested});
        }
        let mut d = json!({});
        let mut path = String::from("/x");
        let mut err = None;
        for _ in 0..10 {
            match json_patch(
                &mut d,
                &json!([{"op": "add", "path": path, "value": nested}]),
            ) {
                Ok(()) => path.push_str(&"/a".repeat(100)),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(err, Some(PatchError::TooDeep(TooDeep { max: MAX_DEPTH })));
        assert!(depth_up_to(&d, 1000) <= MAX_DEPTH);
    }
}
