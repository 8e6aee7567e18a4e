//! A table of named definitions kept as JSON text and parsed one definition at a time, on first
//! use: the generated tables embedded in the binary ([`super::facts`], the validation schemas)
//! cost a scan of their text at start instead of a parse of everything (most kinds are never
//! written in a process's life), and only what is used is held in memory.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;

/// The members of a document's `definitions` object, each parsed into `T` when first asked for.
pub(crate) struct LazyDefinitions<T> {
    text: Cow<'static, str>,
    /// Sorted by name; the range is the member's value in `text`.
    entries: Vec<Entry<T>>,
}

struct Entry<T> {
    name: String,
    range: Range<usize>,
    parsed: OnceLock<Option<T>>,
}

impl<T> Default for LazyDefinitions<T> {
    fn default() -> Self {
        Self {
            text: Cow::Borrowed(""),
            entries: Vec::new(),
        }
    }
}

impl<T> fmt::Debug for LazyDefinitions<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyDefinitions")
            .field("definitions", &self.entries.len())
            .finish()
    }
}

impl<T: DeserializeOwned> LazyDefinitions<T> {
    /// Indexes `text`, a JSON object with a `definitions` object member. `None` when the text
    /// is not such a document (each definition's own syntax is checked when it is parsed).
    pub(crate) fn index(text: impl Into<Cow<'static, str>>) -> Option<Self> {
        let text = text.into();
        let defs = top_member(&text, "definitions")?;
        let members = object_members(text.as_bytes(), defs.start)?;
        let mut entries: Vec<Entry<T>> = members
            .into_iter()
            .map(|(name, range)| Entry {
                name,
                range,
                parsed: OnceLock::new(),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        // A repeated name: the last one wins, as when the document is parsed whole.
        entries.reverse();
        entries.dedup_by(|later, earlier| later.name == earlier.name);
        entries.reverse();
        Some(Self { text, entries })
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
    }

    /// The definition `name` (parsed now if it was not yet); `None` when there is none or it
    /// does not parse into `T`.
    pub(crate) fn get(&self, name: &str) -> Option<&T> {
        self.get_key_value(name).map(|(_, v)| v)
    }

    /// [`Self::get`] with the table's own copy of the name.
    pub(crate) fn get_key_value(&self, name: &str) -> Option<(&str, &T)> {
        let e = &self.entries[self.position(name)?];
        let value = e
            .parsed
            .get_or_init(|| serde_json::from_str(&self.text[e.range.clone()]).ok())
            .as_ref()?;
        Some((&e.name, value))
    }

    /// Every definition name, sorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// The JSON text of the definition `name`, unparsed.
    pub(crate) fn text_of(&self, name: &str) -> Option<&str> {
        let e = &self.entries[self.position(name)?];
        Some(&self.text[e.range.clone()])
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The byte range of the member `key` of the JSON object `text`.
pub(crate) fn top_member(text: &str, key: &str) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let top = object_members(b, skip_ws(b, 0))?;
    top.into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, r)| r)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string starting at `b[i] == '"'`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The end (exclusive) of the value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while b
                .get(j)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The members (decoded name, byte range of the value) of the object starting at `b[start]`.
fn object_members(b: &[u8], start: usize) -> Option<Vec<(String, Range<usize>)>> {
    if b.get(start) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = skip_ws(b, start + 1);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, i)?;
        let key: String = serde_json::from_slice(&b[i..key_end]).ok()?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let v = skip_ws(b, i + 1);
        let end = value_end(b, v)?;
        out.push((key, v..end));
        i = skip_ws(b, end);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn definitions_are_found_and_parsed_on_demand() {
        let text = r#" { "source": "x", "definitions" : {
            "b": {"s": "with \"quotes\", {braces} and [brackets]", "n": [1, 2.5e3, null]},
            "a\u0041": {"nested": {"deep": [{"x": true}]}},
            "bad": {"x": 01},
            "b": {"last": "wins"} } , "after": [] } "#;
        let t = LazyDefinitions::<Value>::index(text).expect("indexed");
        assert_eq!(t.names().collect::<Vec<_>>(), ["aA", "b", "bad"]);
        assert_eq!(
            t.get("aA"),
            Some(&json!({"nested": {"deep": [{"x": true}]}}))
        );
        assert_eq!(t.get("b"), Some(&json!({"last": "wins"})));
        // A member whose value does not parse is absent, not a panic.
        assert_eq!(t.get("bad"), None);
        assert_eq!(t.get("c"), None);
        assert_eq!(
            t.text_of("aA"),
            Some(r#"{"nested": {"deep": [{"x": true}]}}"#)
        );
    }

    #[test]
    fn documents_that_are_not_tables_are_refused() {
        for text in [
            "",
            "[]",
            r#"{"definitions": []}"#,
            r#"{"definitions": {"a": "#,
            r#"{"definitions": {"a" 1}}"#,
            r#"{"definitions": {"a": "unterminated}}"#,
            r#"{"x": 1}"#,
        ] {
            assert!(
                LazyDefinitions::<Value>::index(text).is_none(),
                "{text:?} was indexed"
            );
        }
        let empty = LazyDefinitions::<Value>::index(r#"{"definitions": {}}"#).expect("empty");
        assert_eq!(empty.len(), 0);
        // Brackets are only counted when indexing; the parse of the member refuses them.
        let t = LazyDefinitions::<Value>::index(r#"{"definitions": {"a": {]}}"#).expect("indexed");
        assert_eq!(t.get("a"), None);
    }
}
