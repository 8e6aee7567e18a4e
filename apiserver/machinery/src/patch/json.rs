//! RFC 6902 JSON patch.

use serde_json::Value;

use super::PatchError;

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

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        PatchError::Malformed(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        )
    })?;
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
                let v = get(doc, from()?)?.clone();
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
}
