//! The JSONPath subset of `additionalPrinterColumns`, `scale` paths and `selectableFields`
//! (upstream parses them with client-go's `jsonpath`): `.a.b`, `['a.b']`, `.a[0]`, `.a[*]`,
//! and filters `[?(@.x=="v")]` (also `!=`). Bounded: a path has at most [`MAX_STEPS`] steps.

use serde_json::Value;

/// The most steps a path may have.
pub const MAX_STEPS: usize = 64;

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter {
        path: Vec<String>,
        negate: bool,
        value: Value,
    },
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    steps: Vec<Step>,
}

/// Why a path does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unrecognized JSONPath {0:?}")]
pub struct ParseError(pub String);

impl Path {
    /// Parses `.spec.replicas` (an optional surrounding `{}` is accepted).
    pub fn parse(src: &str) -> Result<Path, ParseError> {
        let err = || ParseError(src.to_string());
        let s = src.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(s);
        let s = s.strip_prefix('$').unwrap_or(s);
        let b = s.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        while i < b.len() {
            if steps.len() >= MAX_STEPS {
                return Err(err());
            }
            match b[i] {
                b'.' => {
                    i += 1;
                    let start = i;
                    let mut name = String::new();
                    while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                        if b[i] == b'\\' && i + 1 < b.len() {
                            i += 1;
                        }
                        let ch_end = next_char_end(s, i);
                        name.push_str(&s[i..ch_end]);
                        i = ch_end;
                    }
                    if i == start {
                        return Err(err());
                    }
                    steps.push(Step::Field(name));
                }
                b'[' => {
                    let close = find_close(s, i).ok_or_else(err)?;
                    let inner = s[i + 1..close].trim();
                    steps.push(parse_bracket(inner).ok_or_else(err)?);
                    i = close + 1;
                }
                _ => return Err(err()),
            }
        }
        if steps.is_empty() {
            return Err(err());
        }
        Ok(Path { steps })
    }

    /// Every value the path selects (missing keys select nothing).
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Field(f) => {
                        if let Some(x) = v.get(f.as_str()) {
                            next.push(x);
                        }
                    }
                    Step::Index(n) => {
                        if let Some(a) = v.as_array() {
                            let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                            if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                                next.push(x);
                            }
                        }
                    }
                    Step::All => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter {
                        path,
                        negate,
                        value,
                    } => {
                        if let Some(a) = v.as_array() {
                            for item in a {
                                let mut x = Some(item);
                                for p in path {
                                    x = x.and_then(|x| x.get(p.as_str()));
                                }
                                let eq = x.is_some_and(|x| x == value);
                                if eq != *negate && x.is_some() {
                                    next.push(item);
                                }
                            }
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }

    /// The first value selected.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.find(root).into_iter().next()
    }

    /// The field names of a path made only of fields (`.spec.replicas` → `["spec","replicas"]`).
    pub fn fields(&self) -> Option<Vec<&str>> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Field(f) => Some(f.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn next_char_end(s: &str, i: usize) -> usize {
    let mut j = i + 1;
    while j < s.len() && !s.is_char_boundary(j) {
        j += 1;
    }
    j
}

/// The `]` closing the bracket at `open`, skipping quoted strings.
fn find_close(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut depth = 0usize;
    for (j, &c) in b.iter().enumerate().skip(open) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
}

fn parse_bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name.to_string()));
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Some(Step::Index(n));
    }
    let f = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (lhs, rhs, negate) = if let Some((l, r)) = f.split_once("!=") {
        (l, r, true)
    } else {
        let (l, r) = f.split_once("==")?;
        (l, r, false)
    };
    let lhs = lhs.trim().strip_prefix("@.")?;
    let path: Vec<String> = lhs.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return None;
    }
    let rhs = rhs.trim();
    let value = match unquote(rhs) {
        Some(s) => Value::String(s.to_string()),
        None => serde_json::from_str::<Value>(rhs).ok()?,
    };
    Some(Step::Filter {
        path,
        negate,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_select_like_client_go() {
        let obj = json!({"spec": {"replicas": 3, "a.b": 1, "list": [1, 2, 3]},
            "status": {"conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True"}]}});
        let p = |s: &str| Path::parse(s).unwrap();
        assert_eq!(p(".spec.replicas").first(&obj), Some(&json!(3)));
        assert_eq!(p("{.spec.replicas}").first(&obj), Some(&json!(3)));
        assert_eq!(p(".spec['a.b']").first(&obj), Some(&json!(1)));
        assert_eq!(p(".spec.list[1]").first(&obj), Some(&json!(2)));
        assert_eq!(p(".spec.list[-1]").first(&obj), Some(&json!(3)));
        assert_eq!(p(".spec.list[*]").find(&obj).len(), 3);
        assert_eq!(
            p(".status.conditions[?(@.type==\"Ready\")].status").first(&obj),
            Some(&json!("True"))
        );
        assert_eq!(p(".spec.missing.deeper").first(&obj), None);
        assert_eq!(p(".spec.replicas").fields(), Some(vec!["spec", "replicas"]));
        assert!(Path::parse("spec").is_err());
        assert!(Path::parse(".spec[").is_err());
        assert!(Path::parse("").is_err());
        assert!(Path::parse(&".a".repeat(MAX_STEPS + 1)).is_err());
    }
}
