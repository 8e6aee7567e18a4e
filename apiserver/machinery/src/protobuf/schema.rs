//! The generated schema table (`schema.txt`, written by `hack/gen-proto-schema.py`), parsed once.

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("schema.txt");

/// How a field repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Optional,
    Repeated,
    /// `map<string, V>`: repeated entries `{key = 1, value = 2}`.
    Map,
    /// A Go embedded struct: its fields are inlined into the enclosing JSON object.
    Embedded,
}

/// One field of a message.
#[derive(Debug)]
pub struct Field {
    pub json: &'static str,
    pub label: Label,
    /// A scalar type name (`string`, `bool`, `int32`, `int64`, `double`, `bytes`) or a message
    /// full name; for maps the value type.
    pub ty: &'static str,
}

/// One message.
#[derive(Debug, Default)]
pub struct Message {
    pub fields: HashMap<u32, Field>,
    /// Encoded as the JSON array of its field 1 (`ExtraValue`, `Verbs`).
    pub array: bool,
}

/// The whole table.
#[derive(Debug, Default)]
pub struct Schema {
    pub messages: HashMap<&'static str, Message>,
    /// API group (`""` for core) → proto package prefix (`k8s.io.api.core`).
    pub groups: HashMap<&'static str, &'static str>,
}

impl Schema {
    /// The message for an envelope's apiVersion and kind.
    pub fn message_for(&self, api_version: &str, kind: &str) -> Option<&'static str> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let prefix = self.groups.get(group)?;
        let name = format!("{prefix}.{version}.{kind}");
        self.messages
            .get_key_value(name.as_str())
            // meta/v1 option kinds (DeleteOptions) travel under every group version.
            .or_else(|| {
                let meta = format!("k8s.io.apimachinery.pkg.apis.meta.{version}.{kind}");
                self.messages.get_key_value(meta.as_str())
            })
            .map(|(k, _)| *k)
    }
}

/// The parsed table.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(TABLE))
}

fn parse(text: &'static str) -> Schema {
    let mut schema = Schema::default();
    let mut current: Option<(&'static str, Message)> = None;
    for line in text.lines() {
        let mut parts = line.split(' ');
        match parts.next() {
            Some("g") => {
                if let (Some(g), Some(p)) = (parts.next(), parts.next()) {
                    schema.groups.insert(if g == "-" { "" } else { g }, p);
                }
            }
            Some("m") => {
                if let Some((name, msg)) = current.take() {
                    schema.messages.insert(name, msg);
                }
                if let Some(name) = parts.next() {
                    current = Some((name, Message::default()));
                }
            }
            Some("a") => {
                if let Some((_, msg)) = current.as_mut() {
                    msg.array = true;
                }
            }
            Some("f") => {
                let (Some(tag), Some(json), Some(label), Some(ty)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let label = match label {
                    "r" => Label::Repeated,
                    "p" => Label::Map,
                    "e" => Label::Embedded,
                    _ => Label::Optional,
                };
                let ty = if label == Label::Map {
                    ty.split_once(',').map_or(ty, |(_, v)| v)
                } else {
                    ty
                };
                if let (Ok(tag), Some((_, msg))) = (tag.parse(), current.as_mut()) {
                    msg.fields.insert(tag, Field { json, label, ty });
                }
            }
            _ => {}
        }
    }
    if let Some((name, msg)) = current.take() {
        schema.messages.insert(name, msg);
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_knows_core_and_group_kinds() {
        let s = schema();
        assert_eq!(
            s.message_for("v1", "ConfigMap"),
            Some("k8s.io.api.core.v1.ConfigMap")
        );
        assert_eq!(
            s.message_for("apps/v1", "Deployment"),
            Some("k8s.io.api.apps.v1.Deployment")
        );
        assert_eq!(s.message_for("nope.io/v1", "Thing"), None);
        let svc = &s.messages["k8s.io.api.core.v1.ServiceSpec"];
        assert!(svc.fields.values().any(|f| f.json == "clusterIPs"));
        let cm = &s.messages["k8s.io.api.core.v1.ConfigMap"];
        assert_eq!(cm.fields[&3].json, "binaryData");
        assert_eq!(cm.fields[&3].label, Label::Map);
        assert_eq!(cm.fields[&3].ty, "bytes");
    }
}
