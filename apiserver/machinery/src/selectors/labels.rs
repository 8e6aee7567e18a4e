//! Label selectors: upstream's lexer, recursive-descent parser, matching and canonical string.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use super::SelectorError;
use crate::validation::{
    FieldError, Path, aggregate_message, is_qualified_name, is_valid_label_value,
};

/// A label requirement operator (`selection.Operator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOp {
    /// `in (a,b)`.
    In,
    /// `notin (a,b)`.
    NotIn,
    /// `=`.
    Equals,
    /// `==`.
    DoubleEquals,
    /// `!=`.
    NotEquals,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>1` (integer comparison).
    GreaterThan,
    /// `key<1` (integer comparison).
    LessThan,
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: LabelOp,
    values: Vec<String>,
}

impl Requirement {
    /// Upstream `NewRequirement`: validates the key, the operator's value count and each value.
    /// Errors are aggregated like upstream; `path` prefixes the `key`/`values` paths.
    pub fn new(
        key: &str,
        op: LabelOp,
        values: Vec<String>,
        path: &Path,
    ) -> Result<Self, SelectorError> {
        let mut errs: Vec<FieldError> = Vec::new();
        let kmsgs = is_qualified_name(key);
        if !kmsgs.is_empty() {
            errs.push(FieldError::invalid(
                path.child("key"),
                key,
                &kmsgs.join("; "),
            ));
        }
        let vpath = path.child("values");
        let vals = || Value::from(values.clone());
        match op {
            LabelOp::In | LabelOp::NotIn if values.is_empty() => errs.push(FieldError::invalid(
                vpath.clone(),
                vals(),
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::NotEquals if values.len() != 1 => {
                errs.push(FieldError::invalid(
                    vpath.clone(),
                    vals(),
                    "exact-match compatibility requires one single value",
                ))
            }
            LabelOp::Exists | LabelOp::DoesNotExist if !values.is_empty() => {
                errs.push(FieldError::invalid(
                    vpath.clone(),
                    vals(),
                    "values set must be empty for exists and does not exist",
                ))
            }
            LabelOp::GreaterThan | LabelOp::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        vpath.clone(),
                        vals(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(FieldError::invalid(
                            vpath.index(i),
                            v.as_str(),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_valid_label_value(v);
            if !msgs.is_empty() {
                errs.push(FieldError::invalid(
                    vpath.index(i).key(key),
                    v.as_str(),
                    &msgs.join("; "),
                ));
            }
        }
        match aggregate_message(&errs) {
            Some(m) => Err(SelectorError::Label(m)),
            None => Ok(Requirement {
                key: key.to_string(),
                op,
                values,
            }),
        }
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> LabelOp {
        self.op
    }

    /// The values (as given; sorted when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn matches_with(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        match self.op {
            LabelOp::In | LabelOp::Equals | LabelOp::DoubleEquals => {
                lookup(&self.key).is_some_and(|v| self.values.contains(&v))
            }
            LabelOp::NotIn | LabelOp::NotEquals => {
                lookup(&self.key).is_none_or(|v| !self.values.contains(&v))
            }
            LabelOp::Exists => lookup(&self.key).is_some(),
            LabelOp::DoesNotExist => lookup(&self.key).is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let Some(have) = lookup(&self.key).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == LabelOp::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.op {
            LabelOp::Equals => "=",
            LabelOp::DoubleEquals => "==",
            LabelOp::NotEquals => "!=",
            LabelOp::In => " in ",
            LabelOp::NotIn => " notin ",
            LabelOp::GreaterThan => ">",
            LabelOp::LessThan => "<",
            LabelOp::Exists | LabelOp::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.op, LabelOp::In | LabelOp::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        f.write_str(&sorted.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: all requirements must hold. Empty selects everything; the
/// "nothing" selector (from a null `metav1.LabelSelector`) selects nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Upstream `labels.Parse`.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut p = Parser {
            items: lex_all(s),
            pos: 0,
        };
        let mut requirements = p.parse().map_err(SelectorError::Label)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// `labels.SelectorFromSet`: `k=v` for every pair (no validation, like upstream).
    pub fn from_set(set: &BTreeMap<String, String>) -> Self {
        let requirements = set
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: LabelOp::Equals,
                values: vec![v.clone()],
            })
            .collect();
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// A selector that matches nothing (`labels.Nothing()`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Upstream `metav1.LabelSelectorAsSelector` on the JSON form (`matchLabels`,
    /// `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`). `null` selects nothing,
    /// `{}` selects everything.
    pub fn from_json(sel: &Value) -> Result<LabelSelector, SelectorError> {
        let Some(obj) = sel.as_object() else {
            return Ok(Self::nothing());
        };
        let root = Path::default();
        let mut reqs = Vec::new();
        if let Some(ml) = obj.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                let v = v.as_str().unwrap_or_default().to_string();
                reqs.push(Requirement::new(k, LabelOp::Equals, vec![v], &root)?);
            }
        }
        if let Some(exprs) = obj.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let op_s = e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let op = match op_s {
                    "In" => LabelOp::In,
                    "NotIn" => LabelOp::NotIn,
                    "Exists" => LabelOp::Exists,
                    "DoesNotExist" => LabelOp::DoesNotExist,
                    other => {
                        return Err(SelectorError::Label(format!(
                            "{} is not a valid label selector operator",
                            crate::validation::go_quote(other)
                        )));
                    }
                };
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|v| v.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                reqs.push(Requirement::new(key, op, values, &root)?);
            }
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements: reqs,
            nothing: false,
        })
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector does not restrict anything (false for "nothing").
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the selector that matches nothing.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// Evaluates against a label set.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(&|k| labels.get(k).cloned())
    }

    /// Evaluates against the JSON `metadata.labels` object (absent means no labels).
    pub fn matches_json(&self, labels: Option<&Value>) -> bool {
        let obj = labels.and_then(Value::as_object);
        self.matches_with(&|k| {
            obj.and_then(|o| o.get(k))
                .map(|v| v.as_str().unwrap_or_default().to_string())
        })
    }

    fn matches_with(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches_with(lookup))
    }

    /// Upstream `RequiresExactMatch`: the single value a `=`, `==` or one-value `in` demands.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.op, r.values.as_slice()) {
            (LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::In, [v]) => Some(v.as_str()),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Error,
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &[u8]) -> Option<Tok> {
    Some(match s {
        b")" => Tok::ClosedPar,
        b"," => Tok::Comma,
        b"!" => Tok::DoesNotExist,
        b"==" => Tok::DoubleEquals,
        b"=" => Tok::Equals,
        b">" => Tok::GreaterThan,
        b"in" => Tok::In,
        b"<" => Tok::LessThan,
        b"!=" => Tok::NotEquals,
        b"notin" => Tok::NotIn,
        b"(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Tokenizes the whole input like upstream's `Lexer` + `Parser.scan`.
fn lex_all(s: &str) -> Vec<(Tok, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_whitespace(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() || b[pos] == 0 {
            out.push((Tok::End, String::new()));
            return out;
        }
        if is_special(b[pos]) {
            let start = pos;
            let mut last: Option<(Tok, usize)> = None;
            while pos < b.len() && is_special(b[pos]) {
                let cand = &b[start..=pos];
                if let Some(t) = keyword(cand) {
                    last = Some((t, pos + 1));
                } else if last.is_some() {
                    break;
                }
                pos += 1;
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push((t, String::from_utf8_lossy(&b[start..end]).into_owned()));
                }
                None => {
                    let lit = String::from_utf8_lossy(&b[start..pos]).into_owned();
                    out.push((Tok::Error, format!("error expected: keyword found '{lit}'")));
                }
            }
        } else {
            let start = pos;
            while pos < b.len() && b[pos] != 0 && !is_special(b[pos]) && !is_whitespace(b[pos]) {
                pos += 1;
            }
            let word = &b[start..pos];
            let lit = String::from_utf8_lossy(word).into_owned();
            out.push((keyword(word).unwrap_or(Tok::Identifier), lit));
        }
    }
}

struct Parser {
    items: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    /// Token at the cursor; in a values context `in`/`notin` are identifiers.
    fn peek(&self, values: bool) -> (Tok, String) {
        let (t, l) = self
            .items
            .get(self.pos)
            .cloned()
            .unwrap_or((Tok::End, String::new()));
        (
            if values && matches!(t, Tok::In | Tok::NotIn) {
                Tok::Identifier
            } else {
                t
            },
            l,
        )
    }

    fn next(&mut self, values: bool) -> (Tok, String) {
        let r = self.peek(values);
        if self.pos < self.items.len() {
            self.pos += 1;
        }
        r
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.peek(true);
            match tok {
                Tok::Identifier | Tok::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.next(true);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.peek(true);
                            if t2 != Tok::Identifier && t2 != Tok::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        let root = Path::default();
        if let Some(op) = op {
            return Requirement::new(&key, op, Vec::new(), &root).map_err(|e| e.to_string());
        }
        let op = self.parse_operator()?;
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values.into_iter().collect(), &root).map_err(|e| e.to_string())
    }

    /// Returns the key and `Some(Exists|DoesNotExist)` when no binary operator follows.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<LabelOp>), String> {
        let (mut tok, mut lit) = self.next(true);
        let negated = tok == Tok::DoesNotExist;
        if negated {
            (tok, lit) = self.next(true);
        }
        if tok != Tok::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let msgs = is_qualified_name(&lit);
        if !msgs.is_empty() {
            // Upstream validates with a nil path, which prints as "<nil>".
            return Err(FieldError::invalid("<nil>", lit.as_str(), &msgs.join("; ")).to_string());
        }
        let (t, _) = self.peek(true);
        let op = if negated {
            Some(LabelOp::DoesNotExist)
        } else if t == Tok::End || t == Tok::Comma {
            Some(LabelOp::Exists)
        } else {
            None
        };
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<LabelOp, String> {
        let (tok, lit) = self.next(false);
        Ok(match tok {
            Tok::In => LabelOp::In,
            Tok::Equals => LabelOp::Equals,
            Tok::DoubleEquals => LabelOp::DoubleEquals,
            Tok::GreaterThan => LabelOp::GreaterThan,
            Tok::LessThan => LabelOp::LessThan,
            Tok::NotIn => LabelOp::NotIn,
            Tok::NotEquals => LabelOp::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.next(true);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.peek(true);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let s = self.parse_identifiers_list()?;
                let (t, _) = self.next(true);
                if t != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(s)
            }
            Tok::ClosedPar => {
                self.next(true);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut s = BTreeSet::new();
        loop {
            let (tok, lit) = self.next(true);
            match tok {
                Tok::Identifier => {
                    s.insert(lit);
                    let (t2, l2) = self.peek(true);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(s),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if s.is_empty() {
                        s.insert(String::new());
                    }
                    let (t2, _) = self.peek(true);
                    if t2 == Tok::ClosedPar {
                        s.insert(String::new());
                        return Ok(s);
                    }
                    if t2 == Tok::Comma {
                        s.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.peek(true);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.next(true);
        if tok == Tok::Identifier {
            Ok(BTreeSet::from([lit]))
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_canonical() {
        let cases = [
            ("", ""),
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("z=c,x=a", "x=a,z=c"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            ("x=", "x="),
            ("x= ", "x="),
            (" x = a ", "x=a"),
            ("x", "x"),
            ("!x", "!x"),
            ("x>1", "x>1"),
            ("x<1", "x<1"),
            (
                "x in (foo,,baz),y,z notin ()",
                "x in (,baz,foo),y,z notin ()",
            ),
            ("x in (b,a,a)", "x in (a,b)"),
            ("x notin (a)", "x notin (a)"),
            ("x in (in,notin)", "x in (in,notin)"),
            ("w in (,a)", "w in (,a)"),
            ("w in (a,)", "w in (,a)"),
            ("example.com/app=web", "example.com/app=web"),
            ("x=a\t,\ny=b", "x=a,y=b"),
        ];
        for (input, canonical) in cases {
            let s = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn parse_errors() {
        let name_part = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let cases: Vec<(&str, String)> = vec![
            ("x=a b", "found 'b', expected: ',' or 'end of string'".into()),
            ("x,", "found '', expected: identifier after ','".into()),
            ("=a", "found '=', expected: !, identifier, or 'end of string'".into()),
            ("x in a", "unable to parse requirement: found 'a' expected: '('".into()),
            ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'".into()),
            ("x (a)", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt".into()),
            ("x=(", "unable to parse requirement: found '(', expected: identifier".into()),
            ("!", "unable to parse requirement: found '', expected: identifier".into()),
            ("app:monolith", format!("unable to parse requirement: <nil>: Invalid value: \"app:monolith\": {name_part}")),
            ("x=-a", "unable to parse requirement: values[0][x]: Invalid value: \"-a\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into()),
            ("x>a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer".into()),
            ("x!!=a", "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt".into()),
        ];
        for (input, msg) in cases {
            assert_eq!(
                LabelSelector::parse(input),
                Err(SelectorError::Label(msg.clone())),
                "{input}"
            );
        }
    }

    #[test]
    fn matching() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let m = |s: &str| LabelSelector::parse(s).expect("parse").matches(&l);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web,db)"));
        assert!(!m("app notin (web)"));
        assert!(m("missing notin (x)"));
        assert!(m("missing!=x"));
        assert!(!m("missing=x"));
        assert!(m("!missing"));
        assert!(!m("!app"));
        assert!(m("n>4") && m("n<6") && !m("n>5") && !m("tier>1"));
        let sel = LabelSelector::parse("app=web").expect("parse");
        assert!(sel.matches_json(Some(&json!({"app": "web"}))));
        assert!(!sel.matches_json(None));
        assert!(
            LabelSelector::parse("!app")
                .expect("parse")
                .matches_json(None)
        );
    }

    #[test]
    fn from_json() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "Exists"}
            ]
        }))
        .expect("valid");
        assert_eq!(s.to_string(), "app=web,!canary,env,tier in (a,b)");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a"), ("env", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a")])));

        let everything = LabelSelector::from_json(&json!({})).expect("valid");
        assert!(everything.is_empty() && everything.matches(&BTreeMap::new()));
        let nothing = LabelSelector::from_json(&Value::Null).expect("valid");
        assert!(!nothing.is_empty() && !nothing.matches(&BTreeMap::new()));

        assert_eq!(
            LabelSelector::from_json(
                &json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]})
            ),
            Err(SelectorError::Label(
                "\"Foo\" is not a valid label selector operator".into()
            ))
        );
        assert_eq!(
            LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})),
            Err(SelectorError::Label("values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty".into()))
        );
        assert_eq!(
            LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})),
            Err(SelectorError::Label("values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist".into()))
        );
        let err =
            LabelSelector::from_json(&json!({"matchLabels": {"-k": "v"}})).expect_err("bad key");
        assert!(
            err.to_string()
                .starts_with("key: Invalid value: \"-k\": name part must consist"),
            "{err}"
        );
    }

    #[test]
    fn from_set() {
        let set = labels(&[("b", "2"), ("a", "1")]);
        let s = LabelSelector::from_set(&set);
        assert_eq!(s.to_string(), "a=1,b=2");
        assert!(s.matches(&set));
        assert!(!s.matches(&labels(&[("a", "1")])));
        assert!(LabelSelector::from_set(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn exact_match() {
        let s = LabelSelector::parse("a=1,b in (2),c in (3,4),d!=5").expect("parse");
        assert_eq!(s.requires_exact_match("a"), Some("1"));
        assert_eq!(s.requires_exact_match("b"), Some("2"));
        assert_eq!(s.requires_exact_match("c"), None);
        assert_eq!(s.requires_exact_match("d"), None);
    }
}
