//! The built-in kinds' schemas that the write path checks objects against (the type check of
//! [`super::types`], unknown fields and pruning of [`super::unknown_fields`]).
//!
//! One schema source (DESIGN §2): the table is k8s-openapi's schemars output for every
//! built-in resource, shaped as in upstream's `swagger.json` (`#/definitions/` refs), without
//! descriptions (the checks never read them), committed as `schemas.json`, one definition per
//! line. The test `committed_table_is_k8s_openapis_schemas` regenerates it from schemars and
//! fails on any difference (`FERROKUBE_REGENERATE=1` rewrites the file). Generating it with
//! schemars at every start cost ~6 ms of CPU, ~3 MB held for good (descriptions included) and
//! ~5 MB of schema-generating code paged in; the committed text is indexed at start and each
//! definition parsed when a write first needs it.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::openapi::lazy::LazyDefinitions;
use crate::resources::{ResourceInfo, builtin_resources};

/// The generated table.
const SCHEMAS_JSON: &str = include_str!("schemas.json");

/// The definitions and which one is each served built-in resource's.
pub(super) struct Schemas {
    definitions: LazyDefinitions<Value>,
    roots: HashMap<(&'static str, &'static str, &'static str), &'static str>,
}

impl Schemas {
    /// The definition `name` (`io.k8s.api.core.v1.PodSpec`).
    pub(super) fn definition(&self, name: &str) -> Option<&Value> {
        self.definitions.get(name)
    }

    /// [`Self::definition`] with the table's own copy of the name.
    pub(super) fn entry(&self, name: &str) -> Option<(&str, &Value)> {
        self.definitions.get_key_value(name)
    }

    /// The definition name of a resource's kind; `None` for kinds without a built-in schema
    /// (custom resources).
    pub(super) fn root_name(&self, info: &ResourceInfo) -> Option<&'static str> {
        self.roots
            .get(&(&*info.group, &*info.version, &*info.plural))
            .copied()
    }
}

/// The table, indexed once.
pub(super) fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas {
        definitions: LazyDefinitions::index(SCHEMAS_JSON).unwrap_or_default(),
        // A resource's schema is inserted under its schema name (`schema::add_resource`).
        roots: builtin_resources()
            .iter()
            .filter(|r| r.schema.is_some())
            .map(|r| ((&*r.group, &*r.version, &*r.plural), &*r.schema_name))
            .collect(),
    })
}

/// Indexes the table now (a scan of its text, well under a millisecond).
pub fn warm_up() {
    schemas();
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::openapi::schema;

    /// Drops `description` from a schema and every schema inside it (not from a `properties`
    /// map, where it can be a field's name: PriorityClass has a `description` field).
    fn strip_descriptions(schema: &mut Value) {
        match schema {
            Value::Object(m) => {
                m.shift_remove("description");
                for (k, v) in m.iter_mut() {
                    match (k.as_str(), v) {
                        ("properties", Value::Object(props)) => {
                            props.values_mut().for_each(strip_descriptions)
                        }
                        (_, v) => strip_descriptions(v),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(strip_descriptions),
            _ => {}
        }
    }

    /// The table's text, generated from k8s-openapi's schemars output for every built-in
    /// resource (the optional group-versions' included).
    fn generate() -> String {
        let mut generator = schema::generator();
        for r in &crate::resources::every_builtin_resource() {
            schema::add_resource(&mut generator, r);
        }
        let defs: BTreeMap<String, Value> = generator.take_definitions(false).into_iter().collect();
        let mut out = String::from("{\"definitions\":{\n");
        for (i, (name, mut def)) in defs.into_iter().enumerate() {
            strip_descriptions(&mut def);
            if i > 0 {
                out.push_str(",\n");
            }
            out.push_str(&Value::String(name).to_string());
            out.push(':');
            out.push_str(&def.to_string());
        }
        out.push_str("\n}}\n");
        out
    }

    #[test]
    fn committed_table_is_k8s_openapis_schemas() {
        let want = generate();
        if std::env::var_os("FERROKUBE_REGENERATE").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/validation/schemas.json");
            std::fs::write(path, &want).expect("writing schemas.json");
            return;
        }
        if let Some((n, (have, want))) = SCHEMAS_JSON
            .lines()
            .zip(want.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
        {
            panic!(
                "schemas.json differs from k8s-openapi's schemas at line {}:\n  committed: {}\n  generated: {}\n\
                 regenerate: FERROKUBE_REGENERATE=1 cargo test --release -p ferrokube-machinery committed_table_is_k8s_openapis_schemas",
                n + 1,
                &have[..have.len().min(300)],
                &want[..want.len().min(300)],
            );
        }
        assert_eq!(
            SCHEMAS_JSON.lines().count(),
            want.lines().count(),
            "schemas.json has a different number of definitions: regenerate it"
        );
    }

    #[test]
    fn every_definition_parses_and_every_resource_has_its_root() {
        let s = schemas();
        assert!(s.definitions.len() > 400, "{}", s.definitions.len());
        let names: Vec<String> = s.definitions.names().map(str::to_string).collect();
        for name in &names {
            let def = s.definition(name);
            assert!(def.is_some_and(Value::is_object), "{name} does not parse");
            assert!(
                def.is_none_or(|d| d.get("description").is_none()),
                "{name} kept its description"
            );
        }
        let mut roots = 0;
        for r in builtin_resources().iter().filter(|r| r.schema.is_some()) {
            let name = s.root_name(r).expect("a root");
            assert!(s.definition(name).is_some(), "no definition {name}");
            roots += 1;
        }
        assert!(roots > 50, "{roots}");
        // A field named `description` is a field, not a schema's description.
        let pc = s
            .definition("io.k8s.api.scheduling.v1.PriorityClass")
            .expect("PriorityClass");
        assert_eq!(pc["properties"]["description"]["type"], "string");
    }
}
