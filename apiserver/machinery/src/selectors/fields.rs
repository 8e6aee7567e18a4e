//! Field selectors: `a=b,c!=d`, with `\` escaping of `\`, `,` and `=` in values.

use std::fmt;

use super::SelectorError;

/// The operator of one field requirement (`=` and `==` are the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOp {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One term of a field selector; `value` is unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Field path, e.g. `metadata.name`.
    pub field: String,
    /// The comparison.
    pub op: FieldOp,
    /// The value, unescaped.
    pub value: String,
}

/// A parsed field selector: all requirements must hold. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Upstream `fields.EscapeValue`.
pub fn escape_field_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits on commas that are not escaped, keeping escapes in place (upstream `splitTerms`).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Finds the first operator position, trying `!=`, `==`, `=` at each offset (upstream `splitTerm`).
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, value));
            }
        }
    }
    None
}

/// Upstream `fields.UnescapeValue` with its error messages.
fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if matches!(c, '\\' | ',' | '=') {
                out.push(c);
            } else {
                return Err(SelectorError::Field(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                // Upstream prints the rune with %v, i.e. as its code point number.
                return Err(SelectorError::Field(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::Field(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

impl FieldSelector {
    /// Upstream `fields.ParseSelector`.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut requirements = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError::Field(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            requirements.push(FieldRequirement {
                field: lhs.to_string(),
                op,
                value: unescape_value(rhs)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The requirements, in upstream's (sorted) order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Evaluates against an object's field set; a missing field compares as `""` like upstream.
    pub fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = get(&r.field).unwrap_or_default();
            match r.op {
                FieldOp::Equals => v == r.value,
                FieldOp::NotEquals => v != r.value,
            }
        })
    }

    /// Upstream `RequiresExactMatch`: the value of the first `field=value` term for `field`.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Equals)
            .map(|r| r.value.as_str())
    }

    /// Replaces field names (upstream `Transform`), e.g. to map legacy aliases.
    pub fn transform(&mut self, f: impl Fn(&str) -> String) {
        for r in &mut self.requirements {
            r.field = f(&r.field);
        }
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.op {
                FieldOp::Equals => "=",
                FieldOp::NotEquals => "!=",
            };
            write!(f, "{}{}{}", r.field, op, escape_field_value(&r.value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_valid() {
        let cases = [
            ("", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("z=c,x=a", "x=a,z=c"),
            ("x=a,", "x=a"),
            ("x=,z= ", "x=,z= "),
            ("x=a||y\\=b", "x=a||y\\=b"),
            ("x=a\\,y\\=b", "x=a\\,y\\=b"),
            ("x=a\\\\b", "x=a\\\\b"),
            (
                "metadata.name=foo,spec.nodeName!=",
                "metadata.name=foo,spec.nodeName!=",
            ),
        ];
        for (input, canonical) in cases {
            let s = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.to_string(), canonical, "{input}");
        }
        let s = FieldSelector::parse("x=a\\,y\\=b").expect("parse");
        assert_eq!(s.requirements()[0].value, "a,y=b");
    }

    #[test]
    fn parse_errors() {
        let cases = [
            ("x", "invalid selector: 'x'; can't understand 'x'"),
            (
                "metadata.name=name1,foo",
                "invalid selector: 'metadata.name=name1,foo'; can't understand 'foo'",
            ),
            (
                "x=a=b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "x=a\\b",
                "invalid field selector: invalid escape sequence: \\b",
            ),
            (
                "x=a\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
        ];
        for (input, msg) in cases {
            assert_eq!(
                FieldSelector::parse(input),
                Err(SelectorError::Field(msg.to_string())),
                "{input}"
            );
        }
    }

    #[test]
    fn matching() {
        let get = |f: &str| match f {
            "metadata.name" => Some("foo".to_string()),
            "status.phase" => Some("Running".to_string()),
            _ => None,
        };
        let m = |s: &str| FieldSelector::parse(s).expect("parse").matches(&get);
        assert!(m(""));
        assert!(m("metadata.name=foo"));
        assert!(m("metadata.name==foo,status.phase!=Pending"));
        assert!(!m("metadata.name=bar"));
        assert!(m("spec.nodeName="), "missing field compares as empty");
        assert!(!m("spec.nodeName!="));
    }

    #[test]
    fn exact_match() {
        let s = FieldSelector::parse("metadata.namespace!=a,metadata.name=x").expect("parse");
        assert_eq!(s.exact_match("metadata.name"), Some("x"));
        assert_eq!(s.exact_match("metadata.namespace"), None);
        assert!(!s.is_empty());
        assert!(FieldSelector::parse("").expect("parse").is_empty());
    }
}
