//! `apps` printers: deployments, replica sets, stateful sets, daemon sets and controller
//! revisions.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::format::{
    age, containers, format_label_selector, format_labels, int, int_or, list, name, selector_string,
};
use super::{AGE, CONTAINERS, CellFn, ColumnDefinition, IMAGES, NAME, Printer, col, wide};

pub(super) fn lookup(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [ColumnDefinition], CellFn) = match (group, resource) {
        ("apps", "deployments") => (DEPLOYMENT, deployment),
        ("apps", "replicasets") => (REPLICA_SET, replica_set),
        ("apps", "statefulsets") => (STATEFUL_SET, stateful_set),
        ("apps", "daemonsets") => (DAEMON_SET, daemon_set),
        ("apps", "controllerrevisions") => (CONTROLLER_REVISION, controller_revision),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

const SELECTOR_DOC: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.";

const DEPLOYMENT: &[ColumnDefinition] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", SELECTOR_DOC),
];

fn deployment(d: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(list(d, "/spec/template/spec/containers"));
    let selector =
        selector_string(d.pointer("/spec/selector")).unwrap_or_else(|()| "<invalid>".to_owned());
    vec![
        json!(name(d)),
        json!(format!(
            "{}/{}",
            int(d, "/status/readyReplicas"),
            int_or(d, "/spec/replicas", 1)
        )),
        json!(int(d, "/status/updatedReplicas")),
        json!(int(d, "/status/availableReplicas")),
        json!(age(d, now)),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

const REPLICA_SET: &[ColumnDefinition] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count.",
    ),
];

fn replica_set(rs: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(list(rs, "/spec/template/spec/containers"));
    vec![
        json!(name(rs)),
        json!(int_or(rs, "/spec/replicas", 1)),
        json!(int(rs, "/status/replicas")),
        json!(int(rs, "/status/readyReplicas")),
        json!(age(rs, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(rs.pointer("/spec/selector"))),
    ]
}

const STATEFUL_SET: &[ColumnDefinition] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

fn stateful_set(ss: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(list(ss, "/spec/template/spec/containers"));
    vec![
        json!(name(ss)),
        json!(format!(
            "{}/{}",
            int(ss, "/status/readyReplicas"),
            int_or(ss, "/spec/replicas", 1)
        )),
        json!(age(ss, now)),
        json!(names),
        json!(images),
    ]
}

const DAEMON_SET: &[ColumnDefinition] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
    ),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    col(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
    ),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that are managed by the daemon set.",
    ),
];

fn daemon_set(ds: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(list(ds, "/spec/template/spec/containers"));
    vec![
        json!(name(ds)),
        json!(int(ds, "/status/desiredNumberScheduled")),
        json!(int(ds, "/status/currentNumberScheduled")),
        json!(int(ds, "/status/numberReady")),
        json!(int(ds, "/status/updatedNumberScheduled")),
        json!(int(ds, "/status/numberAvailable")),
        json!(format_labels(
            ds.pointer("/spec/template/spec/nodeSelector")
        )),
        json!(age(ds, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(ds.pointer("/spec/selector"))),
    ]
}

const CONTROLLER_REVISION: &[ColumnDefinition] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// The controlling owner as `kind.group/name` (lower-cased kind and group), `<none>` without
/// one.
pub(super) fn controller_name(obj: &Value) -> String {
    let owner = list(obj, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true));
    let Some(owner) = owner else {
        return "<none>".to_owned();
    };
    let api_version = owner
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = owner
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let owner_name = owner
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default();
    let group_kind = match (kind.is_empty(), group.is_empty()) {
        (true, true) => return owner_name.to_owned(),
        (_, true) => kind.to_owned(),
        _ => format!("{kind}.{group}"),
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

fn controller_revision(cr: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        json!(name(cr)),
        json!(controller_name(cr)),
        json!(int(cr, "/revision")),
        json!(age(cr, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::cells;
    use super::super::test_support::{names, now};
    use serde_json::{Value, json};

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}})
    }

    #[test]
    fn deployment_row() {
        assert_eq!(
            names("apps", "deployments"),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2025-06-01T11:55:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells("apps", "deployments", &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("5m"),
                json!("nginx,log"),
                json!("nginx:1.27,busybox"),
                json!("app=web")
            ]
        );
        let fresh = json!({"metadata": {"name": "new"}, "spec": {"replicas": 1}});
        let row = cells("apps", "deployments", &fresh, now());
        assert_eq!(
            (row[1].clone(), row[2].clone(), row[4].clone()),
            (json!("0/1"), json!(0), json!("<unknown>"))
        );
    }

    #[test]
    fn replica_stateful_and_daemon_sets() {
        let rs = json!({"metadata": {"name": "web-7d9f", "creationTimestamp": "2025-06-01T11:55:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d9f"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 3}});
        assert_eq!(
            cells("apps", "replicasets", &rs, now()),
            vec![
                json!("web-7d9f"),
                json!(3),
                json!(3),
                json!(3),
                json!("5m"),
                json!("nginx,log"),
                json!("nginx:1.27,busybox"),
                json!("app=web,pod-template-hash=7d9f")
            ]
        );
        let ss = json!({"metadata": {"name": "db", "creationTimestamp": "2025-06-01T11:55:00Z"},
            "spec": {"replicas": 2, "template": template()}, "status": {"readyReplicas": 1}});
        assert_eq!(
            names("apps", "statefulsets"),
            ["Name", "Ready", "Age", "Containers", "Images"]
        );
        assert_eq!(
            cells("apps", "statefulsets", &ss, now())[..3],
            [json!("db"), json!("1/2"), json!("5m")]
        );
        let ds = json!({"metadata": {"name": "agent", "creationTimestamp": "2025-06-01T11:55:00Z"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"spec": {
                "nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "agent:1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            cells("apps", "daemonsets", &ds, now()),
            vec![
                json!("agent"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("5m"),
                json!("a"),
                json!("agent:1"),
                json!("app=agent")
            ]
        );
    }

    #[test]
    fn controller_revision_names_its_owner() {
        let cr = json!({"metadata": {"name": "db-5c8", "creationTimestamp": "2025-06-01T11:55:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]},
            "revision": 2});
        assert_eq!(
            cells("apps", "controllerrevisions", &cr, now()),
            vec![
                json!("db-5c8"),
                json!("statefulset.apps/db"),
                json!(2),
                json!("5m")
            ]
        );
    }
}
