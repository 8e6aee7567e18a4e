//! The bounds every parser and every walk over user data in machinery keeps (DESIGN "Hostile
//! input"): upstream's numbers where upstream has them.
//!
//! The depth invariant: every JSON value that enters the server (a decoded body, a patched
//! object) is at most [`MAX_DEPTH`] containers deep. serde_json refuses deeper documents when it
//! reads them (its recursion limit of 128 stops at the 128th level), so a deeper object could not even be read back from
//! storage; decoders that build values themselves (YAML, protobuf) and patches (which can nest a
//! value inside another) check it with [`check_depth`], which does not recurse. The recursive
//! walks over such values (validation, pruning, managed fields, strategic merge, printers) are
//! then bounded by it, and keep their own guard ([`WALK_DEPTH_LIMIT`]) for values built elsewhere.

use serde_json::Value;

/// Upstream's `maxJSONPatchOperations` (`handlers/patch.go`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Upstream's `JSONPatchMaxCopyBytes`: the bound on the accumulated size of the values a JSON
/// patch's `copy` operations duplicate (evanphx/json-patch `AccumulatedCopySizeLimit`).
pub const JSON_PATCH_MAX_COPY_BYTES: u64 = 3 * 1024 * 1024;

/// The deepest nesting of arrays and objects a value may have: what serde_json reads (its
/// recursion limit of 128 refuses the 128th level).
pub const MAX_DEPTH: usize = 127;

/// The deepest nesting of protobuf messages a body may have (upstream's decoders refuse
/// recursion past about a hundred levels as well).
pub const MAX_PROTOBUF_DEPTH: usize = 100;

/// The guard of recursive walks over values: far above [`MAX_DEPTH`] (walks may descend into
/// values built by merges of two bounded values) and far below what overflows a 2 MiB stack.
pub const WALK_DEPTH_LIMIT: usize = 1000;

/// A value nested deeper than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the object is nested too deeply: more than {max} levels of arrays and objects")]
pub struct TooDeep {
    pub max: usize,
}

/// The nesting depth of a value (a scalar is 0, `{}` and `[]` are 1), computed without recursion
/// and without looking further than `max + 1` levels.
pub fn depth_up_to(v: &Value, max: usize) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        let d = d + 1;
        deepest = deepest.max(d);
        if d > max {
            return deepest;
        }
        stack.extend(
            children
                .filter(|c| c.is_array() || c.is_object())
                .map(|c| (c, d)),
        );
    }
    deepest
}

/// Refuses values deeper than `max` levels.
pub fn check_depth(v: &Value, max: usize) -> Result<(), TooDeep> {
    if depth_up_to(v, max) > max {
        Err(TooDeep { max })
    } else {
        Ok(())
    }
}

/// The length of `v`'s compact JSON encoding, computed without building it.
pub fn json_size(v: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Drops a value of any depth without recursing (serde_json's `Drop` recurses, so a value
/// nested hundreds of thousands deep overflows the stack when it is dropped).
pub fn drop_flat(v: Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn depth_is_counted_without_recursion() {
        assert_eq!(depth_up_to(&json!(1), 10), 0);
        assert_eq!(depth_up_to(&json!({"a": [1, {"b": {}}]}), 10), 4);
        assert!(check_depth(&nested(MAX_DEPTH), MAX_DEPTH).is_ok());
        assert_eq!(
            check_depth(&nested(MAX_DEPTH + 1), MAX_DEPTH),
            Err(TooDeep { max: MAX_DEPTH })
        );
        // A million levels: checked and dropped without touching the stack.
        let deep = nested(1_000_000);
        assert!(check_depth(&deep, MAX_DEPTH).is_err());
        drop_flat(deep);
    }

    #[test]
    fn serde_json_reads_exactly_max_depth() {
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(serde_json::from_str::<Value>(&ok).is_ok());
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(serde_json::from_str::<Value>(&deep).is_err());
    }

    #[test]
    fn sizes_and_truncation() {
        assert_eq!(json_size(&json!({"a": [1, "x"]})), 13);
        assert_eq!(truncate_str("abcé", 4), "abc");
        assert_eq!(truncate_str("abcé", 5), "abcé");
        assert_eq!(truncate_str("ab", 5), "ab");
    }
}
