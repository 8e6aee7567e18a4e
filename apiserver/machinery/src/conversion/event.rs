//! core/v1 Event ↔ events.k8s.io/v1 Event (upstream `pkg/apis/events/v1/conversion.go` plus the
//! generated field-by-field conversion). Events are stored as core/v1.
//!
//! | core/v1 | events.k8s.io/v1 |
//! | --- | --- |
//! | `involvedObject` | `regarding` |
//! | `message` | `note` |
//! | `source` | `deprecatedSource` |
//! | `firstTimestamp` | `deprecatedFirstTimestamp` |
//! | `lastTimestamp` | `deprecatedLastTimestamp` |
//! | `count` | `deprecatedCount` |
//! | `reportingComponent` | `reportingController` |
//!
//! `eventTime`, `series`, `related`, `action`, `reason`, `type`, `reportingInstance` keep their
//! names.

use serde_json::{Map, Value};

use super::move_field;

const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(obj: &mut Value, forward: bool) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let mut moved = Map::new();
    for (core, events) in RENAMES {
        let (old, new) = if forward {
            (core, events)
        } else {
            (events, core)
        };
        move_field(map, old, &mut moved, new);
    }
    map.extend(moved);
}

/// core/v1 → events.k8s.io/v1 (fields only; the caller sets `apiVersion`).
pub fn core_to_events(obj: &mut Value) {
    rename(obj, true);
}

/// events.k8s.io/v1 → core/v1 (fields only; the caller sets `apiVersion`).
pub fn events_to_core(obj: &mut Value) {
    rename(obj, false);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::convert;

    #[test]
    fn core_event_round_trips_through_events_v1() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started", "message": "Started container", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z",
            "count": 3, "reportingComponent": "kubelet", "reportingInstance": "n1",
            "eventTime": null
        });
        let mut ev = core.clone();
        convert(&mut ev, "events.k8s.io/v1").unwrap();
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["note"], "Started container");
        assert_eq!(ev["deprecatedSource"]["component"], "kubelet");
        assert_eq!(ev["deprecatedFirstTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(ev["deprecatedLastTimestamp"], "2026-01-01T00:00:05Z");
        assert_eq!(ev["deprecatedCount"], 3);
        assert_eq!(ev["reportingController"], "kubelet");
        assert_eq!(ev["reportingInstance"], "n1");
        assert_eq!(ev["reason"], "Started");
        for gone in [
            "involvedObject",
            "message",
            "source",
            "count",
            "reportingComponent",
        ] {
            assert!(ev.get(gone).is_none(), "{gone} left in {ev}");
        }
        convert(&mut ev, "v1").unwrap();
        assert_eq!(ev, core);
    }
}
