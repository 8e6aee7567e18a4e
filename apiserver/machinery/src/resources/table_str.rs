//! The strings of the resource table. Built-in entries hold `&'static str`s (k8s-openapi's
//! constants and literals); custom resources' entries hold shared copies of their CRD's names
//! that go away with the last table entry using them. Nothing a user sends is ever leaked, so
//! creating and deleting CRDs with ever-new names cannot grow the process (DESIGN "Hostile
//! input").
//!
//! Both types deref to plain strings and compare with `&str`, so readers of the table do not
//! care which kind of entry they hold.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// One string of a resource-table entry: static for built-ins, shared for custom resources.
#[derive(Clone)]
pub enum TableStr {
    /// A built-in's constant.
    Static(&'static str),
    /// A custom resource's name, shared by the entries of its CRD's versions.
    Shared(Arc<str>),
}

impl TableStr {
    /// A shared copy of `s` (a custom resource's name).
    pub fn shared(s: &str) -> TableStr {
        if s.is_empty() {
            return TableStr::Static("");
        }
        TableStr::Shared(Arc::from(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        match self {
            TableStr::Static(s) => s,
            TableStr::Shared(s) => s,
        }
    }
}

impl Default for TableStr {
    fn default() -> Self {
        TableStr::Static("")
    }
}

impl From<&'static str> for TableStr {
    fn from(s: &'static str) -> Self {
        TableStr::Static(s)
    }
}

impl Deref for TableStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for TableStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for TableStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for TableStr {
    fn eq(&self, other: &TableStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TableStr {}

impl PartialEq<str> for TableStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TableStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for TableStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<TableStr> for str {
    fn eq(&self, other: &TableStr) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<TableStr> for &str {
    fn eq(&self, other: &TableStr) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<TableStr> for String {
    fn eq(&self, other: &TableStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Hash for TableStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that `Borrow<str>` lookups work.
        self.as_str().hash(state);
    }
}

impl PartialOrd for TableStr {
    fn partial_cmp(&self, other: &TableStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TableStr {
    fn cmp(&self, other: &TableStr) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for TableStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TableStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for TableStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A list of strings of a resource-table entry (short names, categories).
#[derive(Clone)]
pub enum TableList {
    /// A built-in's constant list.
    Static(&'static [&'static str]),
    /// A custom resource's list, shared by the entries of its CRD's versions.
    Shared(Arc<[Arc<str>]>),
}

impl TableList {
    /// A shared copy of `items` (a custom resource's names).
    pub fn shared(items: &[String]) -> TableList {
        if items.is_empty() {
            return TableList::Static(&[]);
        }
        TableList::Shared(items.iter().map(|s| Arc::from(s.as_str())).collect())
    }

    /// The strings, in order.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            TableList::Static(l) => Iter::Static(l.iter()),
            TableList::Shared(l) => Iter::Shared(l.iter()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TableList::Static(l) => l.len(),
            TableList::Shared(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `s` is one of the strings.
    pub fn contains(&self, s: &str) -> bool {
        self.iter().any(|x| x == s)
    }

    /// The strings as owned values (JSON arrays, documents).
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl Default for TableList {
    fn default() -> Self {
        TableList::Static(&[])
    }
}

impl From<&'static [&'static str]> for TableList {
    fn from(l: &'static [&'static str]) -> Self {
        TableList::Static(l)
    }
}

impl PartialEq for TableList {
    fn eq(&self, other: &TableList) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for TableList {}

impl fmt::Debug for TableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl serde::Serialize for TableList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'a> IntoIterator for &'a TableList {
    type Item = &'a str;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The iterator of [`TableList::iter`].
#[derive(Clone, Debug)]
pub enum Iter<'a> {
    Static(std::slice::Iter<'a, &'static str>),
    Shared(std::slice::Iter<'a, Arc<str>>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        match self {
            Iter::Static(i) => i.next().copied(),
            Iter::Shared(i) => i.next().map(|s| &**s),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Static(i) => i.size_hint(),
            Iter::Shared(i) => i.size_hint(),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Static(i) => i.next_back().copied(),
            Iter::Shared(i) => i.next_back().map(|s| &**s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn shared_and_static_strings_compare_and_hash_as_str() {
        let s = TableStr::shared("crontabs");
        assert_eq!(s, "crontabs");
        assert_eq!("crontabs", s);
        assert_eq!(s, TableStr::Static("crontabs"));
        let mut m: HashMap<TableStr, u8> = HashMap::new();
        m.insert(s, 1);
        assert_eq!(m.get("crontabs"), Some(&1));
        assert_eq!(
            format!("{}/{:?}", TableStr::shared("a"), TableStr::shared("b")),
            "a/\"b\""
        );
    }

    #[test]
    fn lists_iterate_and_compare_whatever_their_kind() {
        let shared = TableList::shared(&["ct".to_string(), "cts".to_string()]);
        assert_eq!(shared, TableList::Static(&["ct", "cts"]));
        assert!(shared.contains("cts") && !shared.contains("c"));
        assert_eq!(shared.iter().rev().collect::<Vec<_>>(), ["cts", "ct"]);
        assert!(matches!(TableList::shared(&[]), TableList::Static(l) if l.is_empty()));
    }
}
