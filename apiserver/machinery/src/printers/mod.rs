//! `meta.k8s.io/v1` Table columns and row cells for `kubectl get`.
//!
//! Re-implements the behaviour of upstream's `pkg/printers/internalversion/printers.go`
//! (`AddHandlers` column definitions and the `print*` cell functions) for objects given as the
//! stored JSON. The API server always asks upstream's table generator for the wide form and
//! lets kubectl hide `priority > 0` columns, so [`cells`] always returns every column.
//!
//! Start with [`columns`] and [`cells`]; per-group printers live in the submodules, shared cell
//! formatting (durations, selectors) in [`format`]. Resources without a printer get upstream's
//! default table (`Name`, `Created At`) when they are built-ins, and `Name` + `Age` (what
//! apiextensions serves for a CRD without printer columns) otherwise.

mod apps;
mod batch;
mod control;
mod core;
mod events;
pub mod format;
mod misc;
mod networking;
mod pod;
mod storage;

use jiff::Timestamp;
use serde_json::{Value, json};

pub use format::{human_duration, short_human_duration};

/// One `metav1.TableColumnDefinition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDefinition {
    /// Column header as upstream spells it (`Name`, `Ready`, `Nominated Node`).
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `date`, `number` or `boolean`.
    pub type_: &'static str,
    /// `name` for the object-name column, empty otherwise.
    pub format: &'static str,
    /// Human-readable description (upstream copies the API field docs).
    pub description: &'static str,
    /// 0 for the default view, 1 for columns only `-o wide` shows.
    pub priority: i32,
}

impl ColumnDefinition {
    /// The wire form: `{"name","type","format","description","priority"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A column shown by default.
pub(crate) const fn col(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> ColumnDefinition {
    ColumnDefinition {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

/// A column shown only with `-o wide`.
pub(crate) const fn wide(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> ColumnDefinition {
    ColumnDefinition {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

/// `ObjectMeta.name` field documentation.
pub(crate) const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp` field documentation.
pub(crate) const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The `Name` column (format `name`).
pub(crate) const NAME: ColumnDefinition = ColumnDefinition {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
};

/// The `Age` column.
pub(crate) const AGE: ColumnDefinition = col("Age", "string", CREATED_DOC);

/// Wide `Containers` column of workload templates.
pub(crate) const CONTAINERS: ColumnDefinition = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);

/// Wide `Images` column of workload templates.
pub(crate) const IMAGES: ColumnDefinition = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

/// Produces one object's row cells at the given "now".
pub(crate) type CellFn = fn(&Value, Timestamp) -> Vec<Value>;

/// A kind's printer: its columns and the function producing one row's cells.
#[derive(Clone, Copy)]
pub(crate) struct Printer {
    /// Column definitions, in cell order.
    pub columns: &'static [ColumnDefinition],
    /// Cells of one object, same length as `columns`.
    pub cells: CellFn,
}

/// Upstream's default table convertor (`rest.NewDefaultTableConvertor`).
const DEFAULT_COLUMNS: &[ColumnDefinition] = &[NAME, col("Created At", "date", CREATED_DOC)];

/// apiextensions' default columns for a custom resource without printer columns.
const CUSTOM_COLUMNS: &[ColumnDefinition] = &[NAME, col("Age", "date", CREATED_DOC)];

fn default_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    // Go formats `creationTimestamp.UTC()` as RFC 3339 (second precision); a zero time prints as
    // year 1.
    let created = format::parse_time(obj.pointer("/metadata/creationTimestamp"))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned());
    vec![json!(format::name(obj)), json!(created)]
}

fn custom_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![json!(format::name(obj)), json!(format::age(obj, now))]
}

/// Whether `group` is served by the built-in API server (core, `*.k8s.io` and the legacy
/// unsuffixed groups) rather than by a CRD.
fn is_builtin_group(group: &str) -> bool {
    matches!(
        group,
        "" | "apps" | "batch" | "autoscaling" | "policy" | "extensions"
    ) || group.ends_with(".k8s.io")
}

/// The printer for a resource, falling back to the default tables.
fn printer(group: &str, resource: &str) -> Printer {
    let found = pod::lookup(group, resource)
        .or_else(|| core::lookup(group, resource))
        .or_else(|| events::lookup(group, resource))
        .or_else(|| apps::lookup(group, resource))
        .or_else(|| batch::lookup(group, resource))
        .or_else(|| networking::lookup(group, resource))
        .or_else(|| storage::lookup(group, resource))
        .or_else(|| misc::lookup(group, resource));
    match found {
        Some(p) => p,
        None if is_builtin_group(group) => Printer {
            columns: DEFAULT_COLUMNS,
            cells: default_cells,
        },
        None => Printer {
            columns: CUSTOM_COLUMNS,
            cells: custom_cells,
        },
    }
}

/// Whether upstream has a dedicated printer for the resource (otherwise [`columns`] returns a
/// default table).
pub fn has_printer(group: &str, resource: &str) -> bool {
    let p = printer(group, resource);
    !std::ptr::eq(p.columns, DEFAULT_COLUMNS) && !std::ptr::eq(p.columns, CUSTOM_COLUMNS)
}

/// The table columns for a resource (`group` is "" for core; `resource` is the plural).
pub fn columns(group: &str, resource: &str) -> Vec<ColumnDefinition> {
    printer(group, resource).columns.to_vec()
}

/// The row cells for one object of the resource, in [`columns`] order; `now` is the reference
/// time for ages.
pub fn cells(group: &str, resource: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    let p = printer(group, resource);
    let mut out = (p.cells)(obj, now);
    // Defensive: a printer bug must not produce a malformed table.
    out.resize(p.columns.len(), Value::String(String::new()));
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for the per-group printer tests.
    use jiff::Timestamp;

    /// The fixed "now" of every printer test.
    pub fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    /// Column names of a resource.
    pub fn names(group: &str, resource: &str) -> Vec<&'static str> {
        super::columns(group, resource)
            .iter()
            .map(|c| c.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::now;

    /// Every (group, resource) with a printer, to check shape invariants across all of them.
    pub(crate) const ALL: &[(&str, &str)] = &[
        ("", "pods"),
        ("", "podtemplates"),
        ("", "replicationcontrollers"),
        ("", "services"),
        ("", "endpoints"),
        ("", "nodes"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("", "namespaces"),
        ("", "secrets"),
        ("", "serviceaccounts"),
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("", "componentstatuses"),
        ("", "configmaps"),
        ("", "resourcequotas"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "controllerrevisions"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "servicecidrs"),
        ("networking.k8s.io", "ipaddresses"),
        ("discovery.k8s.io", "endpointslices"),
        ("storage.k8s.io", "storageclasses"),
        ("storage.k8s.io", "volumeattributesclasses"),
        ("storage.k8s.io", "volumeattachments"),
        ("storage.k8s.io", "csinodes"),
        ("storage.k8s.io", "csidrivers"),
        ("policy", "poddisruptionbudgets"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("certificates.k8s.io", "certificatesigningrequests"),
        ("certificates.k8s.io", "clustertrustbundles"),
        ("coordination.k8s.io", "leases"),
        ("coordination.k8s.io", "leasecandidates"),
        ("scheduling.k8s.io", "priorityclasses"),
        ("node.k8s.io", "runtimeclasses"),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
        ),
        ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
        (
            "admissionregistration.k8s.io",
            "mutatingadmissionpolicybindings",
        ),
        ("flowcontrol.apiserver.k8s.io", "flowschemas"),
        (
            "flowcontrol.apiserver.k8s.io",
            "prioritylevelconfigurations",
        ),
        ("internal.apiserver.k8s.io", "storageversions"),
        ("resource.k8s.io", "deviceclasses"),
        ("resource.k8s.io", "resourceclaims"),
        ("resource.k8s.io", "resourceclaimtemplates"),
        ("resource.k8s.io", "resourceslices"),
        ("storagemigration.k8s.io", "storageversionmigrations"),
        ("apiregistration.k8s.io", "apiservices"),
    ];

    #[test]
    fn every_printer_has_one_name_column_and_matching_cells_for_an_empty_object() {
        for (group, resource) in ALL {
            assert!(
                has_printer(group, resource),
                "{group}/{resource} has no printer"
            );
            let cols = columns(group, resource);
            assert!(
                cols.iter().any(|c| c.name == "Name"),
                "{group}/{resource}: no Name column"
            );
            for c in &cols {
                assert!(
                    matches!(
                        c.type_,
                        "string" | "integer" | "date" | "number" | "boolean"
                    ),
                    "{group}/{resource}: bad type {}",
                    c.type_
                );
            }
            let p = printer(group, resource);
            let raw = (p.cells)(&json!({}), now());
            assert_eq!(raw.len(), cols.len(), "{group}/{resource}: cell count");
        }
    }

    #[test]
    fn column_wire_form_has_all_five_fields() {
        let v = columns("", "pods")[0].to_json();
        assert_eq!(v["name"], "Name");
        assert_eq!(v["type"], "string");
        assert_eq!(v["format"], "name");
        assert_eq!(v["priority"], 0);
        assert!(
            v["description"]
                .as_str()
                .unwrap()
                .starts_with("Name must be unique")
        );
        assert_eq!(columns("", "pods")[5].to_json()["priority"], 1);
    }

    #[test]
    fn builtins_without_printer_get_created_at_and_custom_resources_get_age() {
        let obj =
            json!({"metadata": {"name": "admin", "creationTimestamp": "2025-06-01T11:00:00Z"}});
        for (group, resource) in [
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("", "limitranges"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("storage.k8s.io", "csistoragecapacities"),
        ] {
            assert!(!has_printer(group, resource));
            let cols = columns(group, resource);
            assert_eq!(cols[1].name, "Created At");
            assert_eq!(cols[1].type_, "date");
            assert_eq!(
                cells(group, resource, &obj, now()),
                vec![json!("admin"), json!("2025-06-01T11:00:00Z")]
            );
        }
        let cols = columns("example.com", "widgets");
        assert_eq!((cols[1].name, cols[1].type_), ("Age", "date"));
        assert_eq!(
            cells("example.com", "widgets", &obj, now()),
            vec![json!("admin"), json!("60m")]
        );
    }
}
