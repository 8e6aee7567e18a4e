//! Pure helpers of the Deployment controller (upstream `pkg/controller/deployment/util`):
//! the pod-template hash, revision annotations, surge/unavailable fenceposts, proportional
//! scaling and conditions.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

/// The label the controller adds to ReplicaSets, their selectors and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// `deployment.kubernetes.io/revision`.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// `deployment.kubernetes.io/revision-history`.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `deployment.kubernetes.io/desired-replicas`.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `deployment.kubernetes.io/max-replicas`.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations never copied from a Deployment to its ReplicaSets (upstream `skipCopyAnnotation`).
const SKIP_COPY: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Condition reasons (upstream `deploymentutil`).
pub mod reason {
    /// Progressing: a new ReplicaSet was created.
    pub const NEW_RS: &str = "NewReplicaSetCreated";
    /// Progressing: the existing new ReplicaSet was found.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// Progressing: the new ReplicaSet is being updated.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// Progressing=False: the deadline passed.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Progressing: the rollout completed.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// Progressing=Unknown: paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// Progressing=Unknown: resumed.
    pub const RESUMED: &str = "DeploymentResumed";
    /// Available=True.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Available=False.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `rand.SafeEncodeString`: maps every byte onto a consonant/digit alphabet (no vowels, so no
/// words, no look-alike characters).
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHANUMS[usize::from(b) % SAFE_ALPHANUMS.len()] as char)
        .collect()
}

/// 32-bit FNV-1a.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `controller.ComputeHash`: FNV-32a of the template followed by the collision count (4 bytes
/// little-endian, then 4 zero bytes as upstream writes an 8-byte buffer), printed in decimal
/// and safe-encoded. The template is hashed as its canonical JSON (upstream hashes its Go
/// `%#v` dump, which cannot be reproduced outside Go, so the values differ from upstream's).
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut data = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend_from_slice(&(c as u32).to_le_bytes());
        data.extend_from_slice(&[0, 0, 0, 0]);
    }
    safe_encode(&fnv32a(&data).to_string())
}

/// `EqualIgnoreHash`: the templates are equal once the pod-template-hash label is ignored.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(m) = t.metadata.as_mut() {
            if let Some(l) = m.labels.as_mut() {
                l.remove(POD_TEMPLATE_HASH);
            }
            if m.labels.as_ref().is_some_and(|l| l.is_empty()) {
                m.labels = None;
            }
        }
        t
    };
    strip(a) == strip(b)
}

/// The revision annotation of an object (0 when absent or unparsable).
pub fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Annotations of a Deployment that its ReplicaSets carry.
pub fn copyable_annotations(d: &Deployment) -> impl Iterator<Item = (&String, &String)> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !SKIP_COPY.contains(&k.as_str()))
}

/// `spec.replicas` of a Deployment (default 1).
pub fn d_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet (default 1).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `status.replicas` of a ReplicaSet.
pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// `status.availableReplicas` of a ReplicaSet.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// `status.readyReplicas` of a ReplicaSet.
pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// Whether the strategy is RollingUpdate (the default).
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// `intstr.GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let owned;
    let v = match v {
        Some(v) => v,
        None => {
            owned = IntOrString::String(default.to_string());
            &owned
        }
    };
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = pct * i64::from(total);
            let r = if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            };
            i32::try_from(r).unwrap_or(i32::MAX)
        }
    }
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable) for `desired` replicas; never both zero.
pub fn resolve_fenceposts(d: &Deployment, desired: i32) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled_value(ru.and_then(|r| r.max_surge.as_ref()), desired, true, "25%");
    let mut unavailable = scaled_value(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        desired,
        false,
        "25%",
    );
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// `MaxUnavailable`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = d_replicas(d);
    if !is_rolling(d) || replicas == 0 {
        return 0;
    }
    resolve_fenceposts(d, replicas).1.min(replicas)
}

/// `MaxSurge`.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    resolve_fenceposts(d, d_replicas(d)).0
}

/// `NewRSNewReplicas`: how many replicas the new ReplicaSet may have now.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    let replicas = d_replicas(d);
    if !is_rolling(d) {
        return replicas;
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = replicas + max_surge(d);
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas - rs_replicas(new_rs));
    rs_replicas(new_rs) + up
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// The desired-replicas annotation.
pub fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_i32(rs, DESIRED_REPLICAS)
}

/// `getReplicaSetFraction`.
fn rs_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let replicas = d_replicas(d);
    if replicas == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas + max_surge(d);
    let annotated = annotation_i32(rs, MAX_REPLICAS)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    // `integer.RoundToInt32`: round half away from zero.
    size.round() as i32 - rs_replicas(rs)
}

/// `GetReplicaSetProportion`.
pub fn rs_proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = rs_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// `ReplicaSetsByCreationTimestamp`: oldest first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// `ReplicaSetsBySizeNewer`: larger first, newer first on ties.
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// `ReplicaSetsBySizeOlder`: larger first, older first on ties.
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// `ReplicaSetsByRevision`: lowest revision first, then by creation.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(&a.metadata)
        .cmp(&revision(&b.metadata))
        .then_with(|| by_creation(a, b))
}

/// A new condition (`NewDeploymentCondition`).
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of `type_`, if present.
pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// `SetDeploymentCondition`: same status and reason → unchanged; same status → keeps the
/// transition time; replaces the old condition of that type.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

/// `RemoveDeploymentCondition`.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conds) = status.conditions.as_mut() {
        conds.retain(|x| x.type_ != type_);
        if conds.is_empty() {
            status.conditions = None;
        }
    }
}

/// `DeploymentComplete`.
pub fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = d_replicas(d);
    s.updated_replicas.unwrap_or(0) == r
        && s.replicas.unwrap_or(0) == r
        && s.available_replicas.unwrap_or(0) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: more updated/ready/available replicas, or fewer old ones.
pub fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
        || new_old < old_old
}

/// `progressDeadlineSeconds`, None when unset (or the "never" sentinel `MaxInt32`).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|&s| s != i32::MAX)
}

/// `DeploymentTimedOut`.
pub fn is_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(s, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some(reason::NEW_RS_AVAILABLE) => false,
        Some(reason::TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < now.as_second()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, RollingUpdateDeployment,
    };
    use std::collections::BTreeMap;

    fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rs(replicas: i32, max_replicas: Option<i32>) -> ReplicaSet {
        let mut r = ReplicaSet {
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(m) = max_replicas {
            r.metadata.annotations =
                Some(BTreeMap::from([(MAX_REPLICAS.to_string(), m.to_string())]));
        }
        r
    }

    #[test]
    fn fnv_and_safe_encoding_match_go() {
        // Reference values of Go's hash/fnv New32a.
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
        // rand.SafeEncodeString maps bytes into "bcdfghjklmnpqrstvwxz2456789".
        assert_eq!(safe_encode("0129"), "456f");
        let t = PodTemplateSpec::default();
        let h0 = compute_hash(&t, None);
        assert_eq!(h0, compute_hash(&t, None));
        assert_ne!(h0, compute_hash(&t, Some(1)));
        assert!(h0.chars().all(|c| SAFE_ALPHANUMS.contains(&(c as u8))));
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let d = deployment(
            10,
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
        );
        assert_eq!(resolve_fenceposts(&d, 10), (3, 2));
        let d = deployment(3, IntOrString::Int(0), IntOrString::Int(0));
        assert_eq!(resolve_fenceposts(&d, 3), (0, 1));
        let d = deployment(
            1,
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
        );
        assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 0));
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        let d = deployment(3, IntOrString::Int(1), IntOrString::Int(0));
        let old = rs(3, None);
        let new = rs(0, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let new = rs(1, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let old = rs(2, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 2);
    }

    #[test]
    fn proportional_scaling_follows_the_max_replicas_annotation() {
        // 10 replicas (+3 surge = 13 annotated) split 8/5; scaled to 20 (+5 surge = 25).
        let d = deployment(
            20,
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
        );
        let a = rs(8, Some(13));
        let b = rs(5, Some(13));
        let to_add = 25 - 13;
        let pa = rs_proportion(&a, &d, to_add, 0);
        let pb = rs_proportion(&b, &d, to_add, pa);
        assert_eq!((pa, pb), (7, 5));
    }

    #[test]
    fn conditions_keep_transition_time_when_status_unchanged() {
        let t0 = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let t1 = Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            condition("Progressing", "True", reason::NEW_RS, "a".into(), t0),
        );
        set_condition(
            &mut s,
            condition("Progressing", "True", reason::RS_UPDATED, "b".into(), t1),
        );
        let c = get_condition(&s, "Progressing")
            .cloned()
            .unwrap_or_default();
        assert_eq!(c.reason.as_deref(), Some(reason::RS_UPDATED));
        assert_eq!(c.last_transition_time, Some(Time(t0)));
        assert_eq!(c.last_update_time, Some(Time(t1)));
        remove_condition(&mut s, "Progressing");
        assert!(s.conditions.is_none());
    }
}
