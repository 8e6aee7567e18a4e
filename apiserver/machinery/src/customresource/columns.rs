//! Tables of custom resources (upstream `apiextensions-apiserver/pkg/registry/customresource/
//! tableconvertor`): a `Name` column, then the version's `additionalPrinterColumns` (or `Age`
//! when it declares none, as upstream's CRD defaulting does), cells typed by the column type.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::jsonpath::Path;
use crate::printers::human_duration;

/// `ObjectMeta.name` documentation (upstream's `Name` column description).
const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// One `additionalPrinterColumns` entry.
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
    /// `None` when the path does not parse (the column shows nothing).
    pub path: Option<Path>,
}

impl PrinterColumn {
    /// Parses one entry of `additionalPrinterColumns`.
    pub fn parse(v: &Value) -> Option<PrinterColumn> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let json_path = s("jsonPath");
        Some(PrinterColumn {
            name: v.get("name").and_then(Value::as_str)?.to_string(),
            type_: s("type"),
            format: s("format"),
            description: s("description"),
            priority: v.get("priority").and_then(Value::as_i64).unwrap_or(0),
            path: Path::parse(&json_path).ok(),
            json_path,
        })
    }

    /// Upstream's default column of a version without printer columns.
    pub fn age() -> PrinterColumn {
        PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
            path: Path::parse(".metadata.creationTimestamp").ok(),
        }
    }
}

/// The effective columns of a version (its own, else `Age`).
pub fn effective(columns: &[PrinterColumn]) -> Vec<PrinterColumn> {
    if columns.is_empty() {
        vec![PrinterColumn::age()]
    } else {
        columns.to_vec()
    }
}

/// The `columnDefinitions` of a table.
pub fn definitions(columns: &[PrinterColumn]) -> Vec<Value> {
    let mut out = vec![json!({
        "name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0,
    })];
    for c in columns {
        let description = if c.description.is_empty() {
            format!(
                "Custom resource definition column (in JSONPath format): {}",
                c.json_path
            )
        } else {
            c.description.clone()
        };
        out.push(json!({
            "name": c.name, "type": c.type_, "format": c.format,
            "description": description, "priority": c.priority,
        }));
    }
    out
}

/// The cells of one object's row.
pub fn cells(columns: &[PrinterColumn], obj: &Value, now: Timestamp) -> Vec<Value> {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let mut out = vec![name];
    for c in columns {
        let v = c.path.as_ref().and_then(|p| p.first(obj));
        out.push(match v {
            None => Value::Null,
            Some(v) => cell(&c.type_, v, now),
        });
    }
    out
}

/// `cellForJSONValue`, and client-go's text printing for `string` columns.
fn cell(type_: &str, v: &Value, now: Timestamp) -> Value {
    match (type_, v) {
        (_, Value::Null) => Value::Null,
        ("string", Value::String(s)) => Value::String(s.clone()),
        ("string", Value::Number(_) | Value::Bool(_)) => Value::String(v.to_string()),
        ("string", _) => Value::String(serde_json::to_string(v).unwrap_or_default()),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            None => n.as_f64().map_or(Value::Null, |f| json!(f as i64)),
        },
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(s)) => match s.parse::<Timestamp>() {
            Ok(t) => {
                let d = now.duration_since(t);
                let d = std::time::Duration::try_from(d).unwrap_or_default();
                Value::String(human_duration(d))
            }
            Err(_) => Value::String("<invalid>".into()),
        },
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_the_column_types() {
        let cols: Vec<PrinterColumn> = [
            json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
            json!({"name": "Ready", "type": "string",
                   "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}),
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
            json!({"name": "Missing", "type": "string", "jsonPath": ".spec.nope", "priority": 1}),
        ]
        .iter()
        .filter_map(PrinterColumn::parse)
        .collect();
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"replicas": 2.0}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let c = cells(&cols, &obj, now);
        assert_eq!(
            c,
            vec![
                json!("a"),
                json!(2),
                json!("True"),
                json!("60m"),
                Value::Null
            ]
        );
        let defs = definitions(&cols);
        assert_eq!(defs.len(), 5);
        assert_eq!(defs[4]["priority"], json!(1));
        assert_eq!(
            defs[4]["description"],
            json!("Custom resource definition column (in JSONPath format): .spec.nope")
        );
        assert_eq!(effective(&[])[0].name, "Age");
    }
}
