//! The status a CRD's controllers maintain (upstream `apiextensions-apiserver/pkg/controller/
//! status/naming_controller.go`, `establish/establishing_controller.go` and
//! `finalizer/crd_finalizer.go`): `acceptedNames` against the names other CRDs of the group
//! already hold, the `NamesAccepted`, `Established` and `Terminating` conditions and
//! `storedVersions`. [`desired`] computes it; the server writes it through `/status` when it
//! differs from the stored one.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::{Crd, Names, condition};

/// A condition as upstream sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl Condition {
    fn new(type_: &'static str, status: &'static str, reason: &str, message: &str) -> Self {
        Condition {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Names held by the other CRDs of `crd`'s group (their accepted names).
fn used_names(crd: &Crd, others: &[&Crd]) -> (HashSet<String>, HashSet<String>) {
    let mut resources = HashSet::new();
    let mut kinds = HashSet::new();
    for o in others {
        if o.group != crd.group || o.name == crd.name {
            continue;
        }
        if let Some(a) = &o.accepted {
            resources.insert(a.plural.clone());
            resources.insert(a.singular.clone());
            resources.extend(a.short_names.iter().cloned());
            kinds.insert(a.kind.clone());
            kinds.insert(a.list_kind.clone());
        }
    }
    resources.remove("");
    kinds.remove("");
    (resources, kinds)
}

fn fresh(requested: &str, accepted: &str, used: &HashSet<String>) -> Result<(), String> {
    if requested == accepted || !used.contains(requested) {
        Ok(())
    } else {
        Err(format!("{requested:?} is already in use"))
    }
}

/// Upstream's `calculateNamesAndConditions`: the accepted names and the `NamesAccepted`
/// condition.
pub fn accepted_names(crd: &Crd, others: &[&Crd]) -> (Names, Condition) {
    let (resources, kinds) = used_names(crd, others);
    let requested = &crd.names;
    let accepted = crd.accepted.clone().unwrap_or_default();
    let mut new = accepted.clone();
    let mut cond: Option<Condition> = None;
    let mut fail = |reason: &str, msg: String| {
        cond = Some(Condition::new("NamesAccepted", "False", reason, &msg));
    };
    match fresh(&requested.plural, &accepted.plural, &resources) {
        Ok(()) => new.plural = requested.plural.clone(),
        Err(e) => fail("PluralConflict", e),
    }
    match fresh(&requested.singular, &accepted.singular, &resources) {
        Ok(()) => new.singular = requested.singular.clone(),
        Err(e) => fail("SingularConflict", e),
    }
    if requested.short_names != accepted.short_names {
        let errs: Vec<String> = requested
            .short_names
            .iter()
            .filter(|s| !accepted.short_names.contains(s))
            .filter_map(|s| fresh(s, "", &resources).err())
            .collect();
        if errs.is_empty() {
            new.short_names = requested.short_names.clone();
        } else if errs.len() == 1 {
            fail("ShortNamesConflict", errs[0].clone());
        } else {
            fail("ShortNamesConflict", format!("[{}]", errs.join(", ")));
        }
    }
    match fresh(&requested.kind, &accepted.kind, &kinds) {
        Ok(()) => new.kind = requested.kind.clone(),
        Err(e) => fail("KindConflict", e),
    }
    match fresh(&requested.list_kind, &accepted.list_kind, &kinds) {
        Ok(()) => new.list_kind = requested.list_kind.clone(),
        Err(e) => fail("ListKindConflict", e),
    }
    new.categories = requested.categories.clone();
    let cond = cond.unwrap_or_else(|| {
        Condition::new("NamesAccepted", "True", "NoConflicts", "no conflicts found")
    });
    (new, cond)
}

/// The status `crd` should have given the other CRDs, or `None` when the stored one is it.
/// `now` is the RFC 3339 time for new `lastTransitionTime`s.
pub fn desired(crd: &Crd, others: &[&Crd], now: &str) -> Option<Value> {
    let stored = crd.raw.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut conditions: Vec<Condition> = Vec::new();
    let names_settled = crd.accepted.as_ref() == Some(&crd.names);
    let (names, named) = if names_settled {
        (
            crd.names.clone(),
            Condition::new("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
        )
    } else {
        accepted_names(crd, others)
    };
    let accepted_ok = named.status == "True";
    conditions.push(named);
    // Established: once true it stays (upstream's establishing controller never unsets it).
    let established = if crd.established || accepted_ok {
        match condition(&crd.raw, "Established") {
            Some(c) if crd.established => Condition {
                type_: "Established",
                status: "True",
                reason: str_of(c, "reason"),
                message: str_of(c, "message"),
            },
            _ => Condition::new(
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
        }
    } else {
        Condition::new(
            "Established",
            "False",
            "NotAccepted",
            "not all names are accepted",
        )
    };
    conditions.push(established);
    if crd.deleting {
        let c = match condition(&crd.raw, "Terminating") {
            Some(c) => Condition {
                type_: "Terminating",
                status: "True",
                reason: str_of(c, "reason"),
                message: str_of(c, "message"),
            },
            None => Condition::new(
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            ),
        };
        conditions.push(c);
    }
    let mut out = stored.as_object().cloned().unwrap_or_default();
    out.insert(
        "conditions".into(),
        merge_conditions(&stored, &conditions, now),
    );
    out.insert("acceptedNames".into(), names.to_json());
    let mut stored_versions: Vec<String> = stored
        .get("storedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let sv = crd.storage_version().to_string();
    if !stored_versions.contains(&sv) {
        stored_versions.push(sv);
    }
    out.insert("storedVersions".into(), json!(stored_versions));
    let out = Value::Object(out);
    (out != stored).then_some(out)
}

/// Replaces the `Terminating` condition's reason and message (the cleanup's progress).
pub fn with_terminating(status: &Value, reason: &str, message: &str, now: &str) -> Value {
    let mut out = status.as_object().cloned().unwrap_or_default();
    let mut conds: Vec<Condition> = status
        .get("conditions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(parse_condition).collect())
        .unwrap_or_default();
    conds.retain(|c| c.type_ != "Terminating");
    conds.push(Condition::new("Terminating", "True", reason, message));
    out.insert("conditions".into(), merge_conditions(status, &conds, now));
    Value::Object(out)
}

fn parse_condition(c: &Value) -> Option<Condition> {
    let type_ = match c.get("type").and_then(Value::as_str)? {
        "NamesAccepted" => "NamesAccepted",
        "Established" => "Established",
        "Terminating" => "Terminating",
        "NonStructuralSchema" => "NonStructuralSchema",
        "KubernetesAPIApprovalPolicyConformant" => "KubernetesAPIApprovalPolicyConformant",
        _ => return None,
    };
    let status = match c.get("status").and_then(Value::as_str)? {
        "True" => "True",
        "False" => "False",
        _ => "Unknown",
    };
    Some(Condition {
        type_,
        status,
        reason: str_of(c, "reason"),
        message: str_of(c, "message"),
    })
}

fn str_of(c: &Value, k: &str) -> String {
    c.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The condition list: the stored conditions updated in place (`lastTransitionTime` kept
/// unless the status flips), new ones appended, in upstream's `SetCRDCondition` manner.
fn merge_conditions(stored: &Value, want: &[Condition], now: &str) -> Value {
    let mut list: Vec<Value> = stored
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in want {
        let pos = list
            .iter()
            .position(|x| x.get("type").and_then(Value::as_str) == Some(c.type_));
        let ltt = match pos.map(|p| &list[p]) {
            Some(old) if old.get("status").and_then(Value::as_str) == Some(c.status) => old
                .get("lastTransitionTime")
                .cloned()
                .unwrap_or_else(|| json!(now)),
            _ => json!(now),
        };
        let mut m = Map::new();
        m.insert("type".into(), json!(c.type_));
        m.insert("status".into(), json!(c.status));
        m.insert("lastTransitionTime".into(), ltt);
        m.insert("reason".into(), json!(c.reason));
        m.insert("message".into(), json!(c.message));
        match pos {
            Some(p) => list[p] = Value::Object(m),
            None => list.push(Value::Object(m)),
        }
    }
    Value::Array(list)
}
