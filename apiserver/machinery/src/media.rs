//! Media types and `Accept` headers, for content negotiation.
//!
//! `application/json;as=Table;v=v1;g=meta.k8s.io` parses into type `application`, subtype
//! `json` and the parameters `as`, `v`, `g` (names lower-cased, values kept, quotes removed).
//! The `q` parameter is taken out into [`MediaType::q`]. `parse_accept` keeps the client's
//! order, as upstream's negotiation walks the clauses in order.

use std::fmt;

/// One media type or media range.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaType {
    /// Top-level type (lower-cased), `*` for any.
    pub type_: String,
    /// Subtype (lower-cased), `*` for any.
    pub subtype: String,
    /// Parameters other than `q`, in order, names lower-cased.
    pub params: Vec<(String, String)>,
    /// Quality factor (1.0 unless given; an unparsable `q` counts as 0).
    pub q: f32,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'(' | b')'
                        | b'<'
                        | b'>'
                        | b'@'
                        | b','
                        | b';'
                        | b':'
                        | b'\\'
                        | b'"'
                        | b'/'
                        | b'['
                        | b']'
                        | b'?'
                        | b'='
                        | b'{'
                        | b'}'
                )
        })
}

impl MediaType {
    /// Parses one media type such as `application/json; charset=utf-8`. A bare `*` is read as
    /// `*/*` like upstream's Accept parser. Returns `None` when malformed.
    pub fn parse(s: &str) -> Option<MediaType> {
        let mut pieces = s.split(';');
        let essence = pieces.next()?.trim();
        let (t, st) = if essence == "*" {
            ("*", "*")
        } else {
            essence.split_once('/')?
        };
        let (t, st) = (t.trim(), st.trim());
        if !is_token(t) || !is_token(st) {
            return None;
        }
        let mut mt = MediaType {
            type_: t.to_ascii_lowercase(),
            subtype: st.to_ascii_lowercase(),
            params: Vec::new(),
            q: 1.0,
        };
        for p in pieces {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (k, v) = p.split_once('=')?;
            let k = k.trim().to_ascii_lowercase();
            if !is_token(&k) {
                return None;
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v)
                .to_string();
            if k == "q" {
                mt.q = v.parse::<f32>().unwrap_or(0.0);
            } else {
                mt.params.push((k, v));
            }
        }
        Some(mt)
    }

    /// The value of parameter `name` (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `type/subtype` without parameters, e.g. `application/json`.
    pub fn essence(&self) -> String {
        format!("{}/{}", self.type_, self.subtype)
    }

    /// True when this media range covers `type_/subtype` (`*` matches anything).
    pub fn matches(&self, type_: &str, subtype: &str) -> bool {
        (self.type_ == "*" || self.type_.eq_ignore_ascii_case(type_))
            && (self.subtype == "*" || self.subtype.eq_ignore_ascii_case(subtype))
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.type_, self.subtype)?;
        for (k, v) in &self.params {
            write!(f, ";{k}={v}")?;
        }
        Ok(())
    }
}

/// Parses an `Accept` header into its clauses, in the client's order; malformed clauses are
/// skipped.
pub fn parse_accept(header: &str) -> Vec<MediaType> {
    header
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter_map(MediaType::parse)
        .collect()
}

/// Orders Accept clauses by preference like upstream's Accept parser (`goautoneg`): higher `q`
/// first, then concrete types before `*`, then concrete subtypes before `*`; ties keep the
/// client's order.
pub fn sort_by_preference(clauses: &mut [MediaType]) {
    clauses.sort_by(|a, b| {
        b.q.partial_cmp(&a.q)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| (a.type_ == "*").cmp(&(b.type_ == "*")))
            .then_with(|| (a.subtype == "*").cmp(&(b.subtype == "*")))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table_accept() {
        let v = parse_accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].essence(), "application/json");
        assert_eq!(v[0].param("as"), Some("Table"));
        assert_eq!(v[0].param("V"), Some("v1"));
        assert_eq!(v[0].param("g"), Some("meta.k8s.io"));
        assert_eq!(v[1].param("v"), Some("v1beta1"));
        assert!(v[2].params.is_empty());
        assert_eq!(
            v[0].to_string(),
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        );
    }

    #[test]
    fn q_values_and_wildcards() {
        let v = parse_accept(
            "text/html, application/*;q=0.5 , */*; q=0.1, *, bad, application/yaml;q=x",
        );
        let got: Vec<(String, f32)> = v.iter().map(|m| (m.essence(), m.q)).collect();
        assert_eq!(
            got,
            vec![
                ("text/html".to_string(), 1.0),
                ("application/*".to_string(), 0.5),
                ("*/*".to_string(), 0.1),
                ("*/*".to_string(), 1.0),
                ("application/yaml".to_string(), 0.0),
            ]
        );
        assert!(v[1].matches("application", "json"));
        assert!(!v[1].matches("text", "plain"));
        assert!(v[2].matches("text", "plain"));
        assert!(!v[0].matches("application", "json"));
    }

    #[test]
    fn preference_order() {
        let mut v =
            parse_accept("*/*;q=0.8, application/*, application/yaml;q=0.9, application/json");
        sort_by_preference(&mut v);
        let got: Vec<String> = v.iter().map(MediaType::essence).collect();
        assert_eq!(
            got,
            [
                "application/json",
                "application/*",
                "application/yaml",
                "*/*"
            ]
        );
    }

    #[test]
    fn parse_single() {
        let m = MediaType::parse("Application/JSON; Charset=\"utf-8\"").expect("valid");
        assert_eq!(m.essence(), "application/json");
        assert_eq!(m.param("charset"), Some("utf-8"));
        assert_eq!(
            MediaType::parse("application/apply-patch+yaml")
                .expect("valid")
                .subtype,
            "apply-patch+yaml"
        );
        assert!(MediaType::parse("").is_none());
        assert!(MediaType::parse("application").is_none());
        assert!(MediaType::parse("application/json;foo").is_none());
        assert!(MediaType::parse("a b/json").is_none());
        assert!(parse_accept("").is_empty());
    }
}
