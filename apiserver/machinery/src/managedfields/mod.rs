//! Server-side apply and `metadata.managedFields` (upstream
//! `k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager` over
//! `sigs.k8s.io/structured-merge-diff/v4`): field sets in FieldsV1 form ([`fieldpath`]),
//! objects walked under the schema facts ([`typed`]), and the two operations every write goes
//! through ([`update`] for create/update/patch, [`apply`] for apply patches), with conflicts.

pub mod fieldpath;
pub mod last_applied;
pub mod typed;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};

use crate::status::{Status, StatusCause, StatusDetails};
use fieldpath::{Path, Set, path_string};
use typed::{Comparison, NodeType, compare, complete_keys, merge, remove_path, to_field_set};

/// `Apply` or `Update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub set: Set,
}

impl Entry {
    /// Same manager identity (upstream `BuildManagerIdentifier`: manager, operation,
    /// subresource, and the apiVersion for updaters only).
    pub fn same_identity(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// The manager as upstream's `printManager` shows it in conflict messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// Who is writing, and how.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    /// `status` for status writes, empty for the main resource.
    pub subresource: &'a str,
    /// The current time (RFC 3339).
    pub now: &'a str,
}

/// Reads `metadata.managedFields` (entries that do not parse are dropped).
pub fn decode(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let manager = e.get("manager").and_then(Value::as_str)?.to_string();
            let operation = match e.get("operation").and_then(Value::as_str)? {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return None,
            };
            let set = match e.get("fieldsV1") {
                Some(v) => Set::from_fields_v1(v).ok()?,
                None => Set::new(),
            };
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Some(Entry {
                manager,
                operation,
                api_version: s("apiVersion"),
                time: e.get("time").and_then(Value::as_str).map(str::to_string),
                subresource: s("subresource"),
                set,
            })
        })
        .collect()
}

/// Writes the entries as `metadata.managedFields`, sorted as upstream
/// (`sortEncodedManagedFields`: operation, time, manager, apiVersion, subresource).
pub fn encode(obj: &mut Value, entries: &[Entry]) {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.set.is_empty()).collect();
    sorted.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let list: Vec<Value> = sorted
        .iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), json!(e.manager));
            m.insert("operation".into(), json!(e.operation.as_str()));
            m.insert("apiVersion".into(), json!(e.api_version));
            if let Some(t) = &e.time {
                m.insert("time".into(), json!(t));
            }
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), e.set.to_fields_v1());
            if !e.subresource.is_empty() {
                m.insert("subresource".into(), json!(e.subresource));
            }
            Value::Object(m)
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// System metadata nobody owns (upstream `stripmeta.go`).
const STRIPPED_META: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Whether a top-level property is part of [`owned_view`].
fn owned_root_key(k: &str, subresource: &str, has_status: bool) -> bool {
    match k {
        "apiVersion" | "kind" => false,
        "status" if has_status && subresource != "status" => false,
        _ if subresource == "status" && k != "status" => false,
        _ => true,
    }
}

/// `compare` of two objects' [`owned_view`]s, without copying the objects when the types
/// allow (they always do for built-in kinds).
fn compare_owned(
    old: &Value,
    new: &Value,
    t: &NodeType,
    subresource: &str,
    has_status: bool,
) -> Comparison {
    let keep_root = |k: &str| owned_root_key(k, subresource, has_status);
    let keep_meta = |k: &str| !STRIPPED_META.contains(&k);
    typed::compare_views(old, new, t, &keep_root, &keep_meta).unwrap_or_else(|| {
        compare(
            &owned_view(old, subresource, has_status),
            &owned_view(new, subresource, has_status),
            t,
        )
    })
}

/// The part of an object a writer's field set is computed on: without `apiVersion`, `kind`
/// and system metadata; the main resource without `status` (when the resource has a status
/// subresource), the status subresource with `status` only (upstream reset fields).
pub fn owned_view(obj: &Value, subresource: &str, has_status: bool) -> Value {
    let Some(m) = obj.as_object() else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            _ if !owned_root_key(k, subresource, has_status) => {}
            "metadata" => {
                let mut meta = v.as_object().cloned().unwrap_or_default();
                for f in STRIPPED_META {
                    meta.remove(*f);
                }
                if !meta.is_empty() {
                    out.insert(k.clone(), Value::Object(meta));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn entry_index(entries: &[Entry], probe: &Entry) -> Option<usize> {
    entries.iter().position(|e| e.same_identity(probe))
}

/// Records a create/update/patch (upstream `Updater.Update`): the writer gains every field it
/// added or changed, other managers lose those (updates never conflict), everybody loses
/// removed fields, and empty managers disappear. `old` is `None` for a create. The entries
/// start from the new object's `metadata.managedFields` when the client sent different ones
/// (that is how a client resets ownership), else from the old object's.
pub fn update(
    old: Option<&Value>,
    new: &mut Value,
    t: &NodeType,
    w: &Writer<'_>,
    has_status: bool,
) {
    let old_entries = old.map(decode).unwrap_or_default();
    let sent = new.pointer("/metadata/managedFields");
    let recorded = old.and_then(|o| o.pointer("/metadata/managedFields"));
    let client_reset =
        sent.is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty())) && sent != recorded;
    let mut entries = if client_reset {
        decode(new)
            .into_iter()
            .filter(|e| !e.manager.is_empty())
            .collect()
    } else {
        old_entries.clone()
    };
    let empty = Value::Object(Map::new());
    let c = compare_owned(old.unwrap_or(&empty), new, t, w.subresource, has_status);
    let changed = c.added.union(&c.modified);
    for e in entries.iter_mut() {
        e.set = e.set.difference(&changed).difference(&c.removed);
    }
    let probe = Entry {
        manager: w.manager.to_string(),
        operation: Operation::Update,
        api_version: w.api_version.to_string(),
        time: Some(w.now.to_string()),
        subresource: w.subresource.to_string(),
        set: Set::new(),
    };
    let prior = entry_index(&old_entries, &probe).map(|i| old_entries[i].set.clone());
    let i = match entry_index(&entries, &probe) {
        Some(i) => i,
        None => {
            entries.push(probe);
            entries.len() - 1
        }
    };
    let set = entries[i].set.union(&changed);
    if !c.is_same() || prior.as_ref() != Some(&set) {
        entries[i].time = Some(w.now.to_string());
    }
    entries[i].set = set;
    entries[i].api_version = w.api_version.to_string();
    entries.retain(|e| !e.set.is_empty());
    encode(new, &entries);
}

/// One field another manager owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub path: Path,
}

/// An apply that would change fields other managers own.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// The message upstream's `getConflictMessage` builds.
    pub fn message(&self) -> String {
        if let [c] = self.0.as_slice() {
            return format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                c.manager,
                path_string(&c.path)
            );
        }
        let mut managers: Vec<&String> = self.0.iter().map(|c| &c.manager).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}"));
            for c in self.0.iter().filter(|c| &c.manager == m) {
                lines.push(format!("- {}", path_string(&c.path)));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }

    /// The 409 Status (upstream `NewConflictError` / `errors.NewApplyConflict`).
    pub fn to_status(&self) -> Status {
        let mut s = Status::failure(409, "Conflict", self.message());
        s.details = Some(StatusDetails {
            causes: self
                .0
                .iter()
                .map(|c| StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with {}", c.manager),
                    field: path_string(&c.path),
                })
                .collect(),
            ..StatusDetails::default()
        });
        s
    }
}

/// What an apply request carries.
#[derive(Clone, Debug)]
pub struct ApplyRequest<'a> {
    pub writer: Writer<'a>,
    pub force: bool,
    pub has_status: bool,
    /// The configuration after the resource's defaulting, so that list keys with defaulted
    /// fields (`protocol`) of new items are the ones the stored object will have.
    pub defaulted: Option<&'a Value>,
}

/// Server-side apply (upstream `Updater.Apply` + `prune` + `update`): merges `config` into
/// `live` (`None` creates), removes what the applier applied last time and no longer applies
/// unless another manager owns it, and fails with the conflicts when a field another manager
/// owns would change, unless forced (then ownership moves to the applier). Returns the new
/// object with `metadata.managedFields` set.
///
/// For the `kubectl` manager on an object written by client-side apply, conflicts on the
/// fields of its last-applied annotation are taken over, and the annotation follows the
/// applied configuration ([`last_applied`]).
pub fn apply(
    live: Option<&Value>,
    config: Value,
    t: &NodeType,
    req: &ApplyRequest<'_>,
) -> Result<Value, Conflicts> {
    let upgrading = req.writer.manager == last_applied::UPGRADING_MANAGER;
    let Some(live_v) = live.filter(|_| upgrading) else {
        return apply_once(live, config, t, req, req.force);
    };
    let mut out = match apply_once(live, config.clone(), t, req, req.force) {
        Err(conflicts) => {
            last_applied::resolve(live_v, conflicts, t, req)?;
            apply_once(live, config.clone(), t, req, true)?
        }
        Ok(out) => out,
    };
    if last_applied::last_applied(live_v).is_some() {
        last_applied::update_annotation(&mut out, &config);
    }
    Ok(out)
}

fn apply_once(
    live: Option<&Value>,
    mut config: Value,
    t: &NodeType,
    req: &ApplyRequest<'_>,
    force: bool,
) -> Result<Value, Conflicts> {
    let w = &req.writer;
    let empty = Value::Object(Map::new());
    let live_v = live.unwrap_or(&empty);
    let mut entries = decode(live_v);
    if live.is_some() && entries.is_empty() {
        // Upstream's `before-first-apply`: whoever wrote the object before owns what is there.
        let set = to_field_set(&owned_view(live_v, w.subresource, req.has_status), t);
        entries.push(Entry {
            manager: "before-first-apply".into(),
            operation: Operation::Update,
            api_version: w.api_version.to_string(),
            time: Some(w.now.to_string()),
            subresource: String::new(),
            set,
        });
    }
    if let Some(m) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    let mut filled = Set::new();
    complete_keys(&mut config, live_v, t, &mut Vec::new(), &mut filled);
    if let Some(d) = req.defaulted {
        // Items the live object does not have yet get their defaulted key fields.
        complete_keys(&mut config, d, t, &mut Vec::new(), &mut filled);
    }
    let mut merged = merge(live_v, &config, t);
    let new_set =
        to_field_set(&owned_view(&config, w.subresource, req.has_status), t).difference(&filled);
    let probe = Entry {
        manager: w.manager.to_string(),
        operation: Operation::Apply,
        api_version: w.api_version.to_string(),
        time: Some(w.now.to_string()),
        subresource: w.subresource.to_string(),
        set: new_set.clone(),
    };
    let idx = entry_index(&entries, &probe);
    let last_set = idx.map(|i| entries[i].set.clone()).unwrap_or_default();
    // Prune: fields applied last time and not now, unless someone else owns them (or below).
    let others: Set = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != idx)
        .fold(Set::new(), |acc, (_, e)| acc.union(&e.set));
    let mut gone = last_set.difference(&new_set).paths();
    gone.sort_by_key(Vec::len);
    for p in gone {
        if !others.has_prefix(&p) && !new_set.has_prefix(&p) {
            remove_path(&mut merged, &p, t);
        }
    }
    let c = compare_owned(live_v, &merged, t, w.subresource, req.has_status);
    let changed = c.added.union(&c.modified);
    let mut conflicts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) == idx {
            continue;
        }
        for p in e.set.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: e.describe(),
                path: p,
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(Conflicts(conflicts));
    }
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != idx {
            e.set = e.set.difference(&changed);
        }
        e.set = e.set.difference(&c.removed);
    }
    let unchanged = c.is_same() && last_set == new_set;
    match idx {
        Some(i) => {
            entries[i].set = new_set;
            entries[i].api_version = w.api_version.to_string();
            if !unchanged {
                entries[i].time = Some(w.now.to_string());
            }
        }
        None => entries.push(probe),
    }
    entries.retain(|e| !e.set.is_empty());
    encode(&mut merged, &entries);
    Ok(merged)
}

/// The root node type of an object's kind (unknown, hence granular maps and atomic lists, when
/// the kind has no schema).
pub fn root_type(group: &str, version: &str, kind: &str) -> NodeType {
    match crate::openapi::facts::facts().definition_for_gvk(group, version, kind) {
        Some(d) => NodeType::of_definition(d),
        None => NodeType::unknown(),
    }
}

/// The manager name upstream derives from a User-Agent when no `fieldManager` is given
/// (`prefixFromUserAgent`: everything before the first `/`), at most 128 characters.
pub fn manager_from_user_agent(ua: &str) -> String {
    let p = ua.split('/').next().unwrap_or("");
    p.chars().take(128).collect()
}
