//! Small shared pieces of the per-kind validators: JSON accessors, port numbers, quantities,
//! label selectors (upstream `ValidateLabelSelector`, `LabelSelectorAsSelector().Matches`) and
//! int-or-percent values.

use serde_json::{Map, Value};

use super::field::{FieldError, Path};
use super::meta::validate_labels;
use super::names::is_qualified_name;

/// Upstream `IsNegativeErrorMsg`.
pub const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";

/// The string at `v[key]`, empty when absent or not a string.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The array at `v[key]` (empty when absent).
pub fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `v[key]`, if any.
pub fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// The integer at `v[key]`, if any.
pub fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// A JSON null for "no value" lookups.
pub static NULL: Value = Value::Null;

/// `v[key]` or null.
pub fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&NULL)
}

/// Upstream `ValidateNonnegativeField` on an optional integer field.
pub fn nonnegative(v: &Value, key: &str, path: &Path) -> Vec<FieldError> {
    match int(v, key) {
        Some(n) if n < 0 => vec![FieldError::invalid(
            path.child(key),
            n,
            IS_NEGATIVE_ERROR_MSG,
        )],
        _ => Vec::new(),
    }
}

/// Upstream `IsValidPortNum`.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_string()]
    }
}

/// Upstream `IsValidPortName` (IANA_SVC_NAME).
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.is_empty() || port.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    let b = port.as_bytes();
    if !b
        .iter()
        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !b.iter().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Parses a `resource.Quantity` string into its numeric value (`None` when malformed).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let (num_end, _) = q
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || ((*c == '+' || *c == '-') && *i == 0)))
        .unwrap_or((q.len(), ' '));
    let (num, suffix) = q.split_at(num_end);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// A quantity field as text (JSON numbers are allowed for quantities).
pub fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Upstream `ValidateLabelSelector` (metav1 validation) at `path`.
pub fn validate_label_selector(sel: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if sel.is_null() {
        return errs;
    }
    let exprs = path.child("matchExpressions");
    for (i, e) in arr(sel, "matchExpressions").iter().enumerate() {
        let p = exprs.index(i);
        let op = s(e, "operator");
        let values = arr(e, "values");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        let key = s(e, "key");
        for msg in is_qualified_name(key) {
            errs.push(FieldError::invalid(p.child("key"), key, &msg));
        }
    }
    errs.extend(validate_labels(
        sel.get("matchLabels"),
        &path.child("matchLabels"),
    ));
    errs
}

/// Whether a label selector has no requirements (`selector.Empty()`).
pub fn selector_is_empty(sel: &Value) -> bool {
    obj(sel, "matchLabels").is_none_or(Map::is_empty) && arr(sel, "matchExpressions").is_empty()
}

/// `LabelSelectorAsSelector(sel).Matches(labels)`.
pub fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = obj(sel, "matchLabels") {
        for (k, v) in ml {
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    for e in arr(sel, "matchExpressions") {
        let key = s(e, "key");
        let values: Vec<&str> = arr(e, "values").iter().filter_map(Value::as_str).collect();
        let ok = match s(e, "operator") {
            "In" => label(key).is_some_and(|l| values.contains(&l)),
            "NotIn" => label(key).is_none_or(|l| !values.contains(&l)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Upstream `ValidatePositiveIntOrPercent` + `IsNotMoreThan100Percent` on an optional
/// int-or-string field.
pub fn int_or_percent(v: &Value, key: &str, path: &Path) -> Vec<FieldError> {
    let p = path.child(key);
    match v.get(key) {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) if i < 0 => vec![FieldError::invalid(p, i, IS_NEGATIVE_ERROR_MSG)],
            _ => Vec::new(),
        },
        Some(Value::String(st)) => {
            let Some(pct) = st.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) else {
                return vec![FieldError::invalid(
                    p,
                    st.as_str(),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )];
            };
            if pct < 0 {
                vec![FieldError::invalid(p, st.as_str(), IS_NEGATIVE_ERROR_MSG)]
            } else if pct > 100 {
                vec![FieldError::invalid(
                    p,
                    st.as_str(),
                    "must not be greater than 100%",
                )]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(parse_quantity("-1"), Some(-1.0));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("abc"), None);
    }

    #[test]
    fn selectors() {
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]});
        assert!(selector_matches(&sel, &json!({"app": "web", "tier": "a"})));
        assert!(!selector_matches(&sel, &json!({"app": "web"})));
        assert!(!selector_matches(&sel, &json!({"app": "db", "tier": "a"})));
        let bad = json!({"matchExpressions": [{"key": "k", "operator": "In"}]});
        assert_eq!(
            validate_label_selector(&bad, &Path::new("spec").child("selector"))[0].to_string(),
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
        assert!(selector_is_empty(&json!({})));
    }

    #[test]
    fn ports_and_percents() {
        assert!(is_valid_port_num(80).is_empty());
        assert_eq!(is_valid_port_num(70000).len(), 1);
        assert!(is_valid_port_name("http").is_empty());
        assert!(!is_valid_port_name("1234").is_empty());
        let p = Path::new("spec");
        assert_eq!(
            int_or_percent(&json!({"m": "120%"}), "m", &p)[0].to_string(),
            "spec.m: Invalid value: \"120%\": must not be greater than 100%"
        );
    }
}
