//! Events, core (`v1`) and `events.k8s.io/v1` alike: upstream converts the latter to the
//! internal core Event before printing, so both share the columns
//! `LAST SEEN TYPE REASON OBJECT MESSAGE` (+ wide `SUBOBJECT SOURCE FIRST SEEN COUNT NAME`).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::format::{int, name, since, text};
use super::{ColumnDefinition, NAME_DOC, Printer, col, wide};

const COLUMNS: &[ColumnDefinition] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    super::ColumnDefinition {
        name: "Name",
        type_: "string",
        format: "name",
        description: NAME_DOC,
        priority: 1,
    },
];

pub(super) fn lookup(group: &str, resource: &str) -> Option<Printer> {
    match (group, resource) {
        ("", "events") => Some(Printer {
            columns: COLUMNS,
            cells: core_event,
        }),
        ("events.k8s.io", "events") => Some(Printer {
            columns: COLUMNS,
            cells: new_event,
        }),
        _ => None,
    }
}

/// The fields the printer needs, in core Event terms.
struct EventView<'a> {
    first: Option<&'a Value>,
    last: Option<&'a Value>,
    event_time: Option<&'a Value>,
    series_last: Option<&'a Value>,
    series_count: Option<i64>,
    count: i64,
    kind: String,
    object_name: String,
    field_path: String,
    component: String,
    host: String,
    message: String,
    reporting_controller: String,
    reporting_instance: String,
}

fn nonzero(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
}

fn core_event(ev: &Value, now: Timestamp) -> Vec<Value> {
    let view = EventView {
        first: nonzero(ev.get("firstTimestamp")),
        last: nonzero(ev.get("lastTimestamp")),
        event_time: nonzero(ev.get("eventTime")),
        series_last: ev.pointer("/series/lastObservedTime"),
        series_count: ev
            .get("series")
            .filter(|s| s.is_object())
            .map(|_| int(ev, "/series/count")),
        count: int(ev, "/count"),
        kind: text(ev, "/involvedObject/kind"),
        object_name: text(ev, "/involvedObject/name"),
        field_path: text(ev, "/involvedObject/fieldPath"),
        component: text(ev, "/source/component"),
        host: text(ev, "/source/host"),
        message: text(ev, "/message"),
        reporting_controller: text(ev, "/reportingComponent"),
        reporting_instance: text(ev, "/reportingInstance"),
    };
    render(ev, &view, now)
}

fn new_event(ev: &Value, now: Timestamp) -> Vec<Value> {
    let view = EventView {
        first: nonzero(ev.get("deprecatedFirstTimestamp")),
        last: nonzero(ev.get("deprecatedLastTimestamp")),
        event_time: nonzero(ev.get("eventTime")),
        series_last: ev.pointer("/series/lastObservedTime"),
        series_count: ev
            .get("series")
            .filter(|s| s.is_object())
            .map(|_| int(ev, "/series/count")),
        count: int(ev, "/deprecatedCount"),
        kind: text(ev, "/regarding/kind"),
        object_name: text(ev, "/regarding/name"),
        field_path: text(ev, "/regarding/fieldPath"),
        component: text(ev, "/deprecatedSource/component"),
        host: text(ev, "/deprecatedSource/host"),
        message: text(ev, "/note"),
        reporting_controller: text(ev, "/reportingController"),
        reporting_instance: text(ev, "/reportingInstance"),
    };
    render(ev, &view, now)
}

fn render(ev: &Value, v: &EventView<'_>, now: Timestamp) -> Vec<Value> {
    let first = match v.first {
        Some(t) => since(Some(t), now),
        None => since(v.event_time, now),
    };
    let mut last = match v.last {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = v.count;
    if let Some(series_count) = v.series_count {
        last = since(v.series_last, now);
        count = series_count;
    } else if count == 0 {
        count = 1;
    }
    let kind = v.kind.to_lowercase();
    let target = if v.object_name.is_empty() {
        kind
    } else {
        format!("{kind}/{}", v.object_name)
    };
    let component = if v.component.is_empty() {
        &v.reporting_controller
    } else {
        &v.component
    };
    let instance = if v.host.is_empty() {
        &v.reporting_instance
    } else {
        &v.host
    };
    let source = if instance.is_empty() {
        component.clone()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(text(ev, "/type")),
        json!(text(ev, "/reason")),
        json!(target),
        json!(v.field_path),
        json!(source),
        json!(v.message.trim()),
        json!(first),
        json!(count),
        json!(name(ev)),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::cells;
    use super::super::test_support::{names, now};
    use serde_json::json;

    #[test]
    fn core_event_row() {
        assert_eq!(
            names("", "events"),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        let ev = json!({"metadata": {"name": "web-0.17f", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "message": "Back-off restarting failed container\n", "type": "Warning",
            "firstTimestamp": "2025-06-01T11:00:00Z", "lastTimestamp": "2025-06-01T11:59:30Z", "count": 12,
            "source": {"component": "kubelet", "host": "node-1"}});
        assert_eq!(
            cells("", "events", &ev, now()),
            vec![
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-0"),
                json!("spec.containers{app}"),
                json!("kubelet, node-1"),
                json!("Back-off restarting failed container"),
                json!("60m"),
                json!(12),
                json!("web-0.17f")
            ]
        );
    }

    #[test]
    fn events_k8s_io_event_with_series_and_event_time() {
        let ev = json!({"metadata": {"name": "e1"}, "eventTime": "2025-06-01T11:50:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2025-06-01T11:58:00.000000Z"},
            "regarding": {"kind": "Deployment", "name": "web"}, "reason": "ScalingReplicaSet", "note": "Scaled up",
            "type": "Normal", "reportingController": "deployment-controller"});
        assert_eq!(
            cells("events.k8s.io", "events", &ev, now()),
            vec![
                json!("2m"),
                json!("Normal"),
                json!("ScalingReplicaSet"),
                json!("deployment/web"),
                json!(""),
                json!("deployment-controller"),
                json!("Scaled up"),
                json!("10m"),
                json!(4),
                json!("e1")
            ]
        );
        let singleton = json!({"metadata": {"name": "e2"}, "eventTime": "2025-06-01T11:59:00.000000Z",
            "regarding": {"kind": "Node"}, "reason": "Starting", "note": "", "type": "Normal"});
        let row = cells("events.k8s.io", "events", &singleton, now());
        assert_eq!(
            (row[0].clone(), row[3].clone(), row[8].clone()),
            (json!("60s"), json!("node"), json!(1))
        );
    }
}
