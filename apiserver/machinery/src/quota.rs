//! Resource quota arithmetic (upstream `pkg/quota/v1` and its core evaluators): the usage an
//! object charges against a `ResourceQuota`, quantities as exact milli-units, and upstream's
//! canonical quantity text. Shared by the ResourceQuota admission plugin and the quota
//! controller, so both count the same way.

use std::collections::BTreeMap;

use serde_json::Value;

/// Usage per resource name, in milli-units.
pub type Usage = BTreeMap<String, i128>;

/// Parses a resource quantity into milli-units (`1` → 1000, `100m` → 100, `1Ki` → 1,024,000);
/// `None` when it is not a quantity. Sub-milli values round up, as `Quantity.MilliValue`.
pub fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    if num.is_empty() || num.len() > 30 {
        return None;
    }
    let (mul, div): (i128, i128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "u" => (1, 1000),
        "n" => (1, 1_000_000),
        "k" => (1_000_000, 1),
        "M" => (1_000_000_000, 1),
        "G" => (1_000_000_000_000, 1),
        "T" => (1_000_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000_000, 1),
        "Ki" => (1024 * 1000, 1),
        "Mi" => (1024i128.pow(2) * 1000, 1),
        "Gi" => (1024i128.pow(3) * 1000, 1),
        "Ti" => (1024i128.pow(4) * 1000, 1),
        "Pi" => (1024i128.pow(5) * 1000, 1),
        "Ei" => (1024i128.pow(6) * 1000, 1),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().ok()?;
            match exp {
                0..=18 => (1000 * 10i128.pow(exp as u32), 1),
                -9..=-1 => (1000, 10i128.pow((-exp) as u32)),
                _ => return None,
            }
        }
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let neg = int.starts_with('-');
    let int = int.trim_start_matches(['+', '-']);
    if int.contains(['+', '-']) || frac.contains(['+', '-', '.']) {
        return None;
    }
    let int_v: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac = &frac[..frac.len().min(12)];
    let frac_v: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scale = 10i128.pow(frac.len() as u32);
    let total = (int_v * scale + frac_v).checked_mul(mul)?;
    let den = scale * div;
    let v = (total + den - 1) / den;
    Some(if neg { -v } else { v })
}

/// A quantity field (string, or a number as clients may send) in milli-units.
pub fn milli_of(v: &Value) -> Option<i128> {
    match v {
        Value::String(s) => parse_milli(s),
        Value::Number(n) => parse_milli(&n.to_string()),
        _ => None,
    }
}

/// Whether a quantity text is in the binary SI format (`Ki`, `Mi`, ...).
pub fn is_binary(q: &str) -> bool {
    q.ends_with('i')
}

/// upstream `Quantity.String()` of a value in milli-units: the largest exact suffix of the
/// format (`Ki`/`Mi`/... for binary, `k`/`M`/... for decimal), else milli-units (`500m`).
pub fn format_milli(milli: i128, binary: bool) -> String {
    if milli == 0 {
        return "0".into();
    }
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let v = milli / 1000;
    if binary {
        let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
        let mut n = v;
        let mut i = 0;
        while i + 1 < suffixes.len() && n % 1024 == 0 && n != 0 {
            n /= 1024;
            i += 1;
        }
        if i > 0 {
            return format!("{n}{}", suffixes[i]);
        }
        // Not a multiple of 1024: upstream falls back to decimal notation.
    }
    let suffixes = ["", "k", "M", "G", "T", "P", "E"];
    let mut n = v;
    let mut i = 0;
    while i + 1 < suffixes.len() && n % 1000 == 0 && n != 0 {
        n /= 1000;
        i += 1;
    }
    format!("{n}{}", suffixes[i])
}

fn add(u: &mut Usage, k: &str, v: i128) {
    *u.entry(k.to_string()).or_insert(0) += v;
}

/// The object-count resource name of a resource (`count/pods`, `count/deployments.apps`).
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// Whether a pod no longer charges quota (upstream `QuotaV1Pod`): terminal phase, or deleted
/// past its grace period (approximated: deleted with grace 0).
pub fn pod_terminal(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return true;
    }
    pod.pointer("/metadata/deletionTimestamp").is_some()
        && pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(0)
}

fn resources_of(c: &Value, kind: &str) -> BTreeMap<String, i128> {
    let mut out = BTreeMap::new();
    if let Some(m) = c
        .pointer(&format!("/resources/{kind}"))
        .and_then(Value::as_object)
    {
        for (k, v) in m {
            if let Some(x) = milli_of(v) {
                out.insert(k.clone(), x);
            }
        }
    }
    out
}

/// upstream `PodUsageFunc` (without pod-level resources): requests and limits are the max of
/// the sum over containers and each init container, plus the pod overhead.
fn pod_compute(pod: &Value, kind: &str) -> BTreeMap<String, i128> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut sum = BTreeMap::new();
    for c in spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, v) in resources_of(c, kind) {
            *sum.entry(k).or_insert(0) += v;
        }
    }
    for c in spec
        .get("initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, v) in resources_of(c, kind) {
            let e = sum.entry(k).or_insert(0);
            *e = (*e).max(v);
        }
    }
    if let Some(m) = spec.get("overhead").and_then(Value::as_object) {
        for (k, v) in m {
            if let (Some(x), Some(e)) = (milli_of(v), sum.get_mut(k)) {
                *e += x;
            }
        }
    }
    sum
}

/// The usage one object charges (upstream evaluators: pods, services, persistentvolumeclaims,
/// the legacy counted kinds, and `count/<resource>[.<group>]` for every resource).
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    add(&mut u, &count_name(group, plural), 1000);
    if !group.is_empty() {
        return u;
    }
    match plural {
        "pods" => {
            if pod_terminal(obj) {
                return Usage::new();
            }
            add(&mut u, "pods", 1000);
            for (k, v) in pod_compute(obj, "requests") {
                if k == "cpu" || k == "memory" || k == "ephemeral-storage" {
                    add(&mut u, &k, v);
                }
                add(&mut u, &format!("requests.{k}"), v);
            }
            for (k, v) in pod_compute(obj, "limits") {
                add(&mut u, &format!("limits.{k}"), v);
            }
        }
        "services" => {
            add(&mut u, "services", 1000);
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len) as i128;
            match obj.pointer("/spec/type").and_then(Value::as_str) {
                Some("NodePort") => add(&mut u, "services.nodeports", ports * 1000),
                Some("LoadBalancer") => {
                    add(&mut u, "services.nodeports", ports * 1000);
                    add(&mut u, "services.loadbalancers", 1000);
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            add(&mut u, "persistentvolumeclaims", 1000);
            if let Some(s) = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(milli_of)
            {
                add(&mut u, "requests.storage", s);
                if let Some(class) = obj
                    .pointer("/spec/storageClassName")
                    .and_then(Value::as_str)
                {
                    add(
                        &mut u,
                        &format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                        s,
                    );
                    add(
                        &mut u,
                        &format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
                        1000,
                    );
                }
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            add(&mut u, plural, 1000);
        }
        _ => {}
    }
    u
}

/// The resource names a quota constrains (`spec.hard` keys).
pub fn hard_of(quota: &Value, at: &str) -> BTreeMap<String, (i128, bool)> {
    let mut out = BTreeMap::new();
    if let Some(m) = quota.pointer(at).and_then(Value::as_object) {
        for (k, v) in m {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            if let Some(x) = parse_milli(&text) {
                out.insert(k.clone(), (x, is_binary(&text)));
            }
        }
    }
    out
}

/// Whether the quota's `spec.scopes` and `spec.scopeSelector` select this object (upstream's
/// pod evaluator: `Terminating`, `NotTerminating`, `BestEffort`, `NotBestEffort`,
/// `PriorityClass` with In/NotIn/Exists/DoesNotExist, `CrossNamespacePodAffinity`; a scoped
/// quota selects pods only).
pub fn scopes_match(quota: &Value, plural: &str, obj: &Value) -> bool {
    let scopes: Vec<&str> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let selector: Vec<&Value> = quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if scopes.is_empty() && selector.is_empty() {
        return true;
    }
    // Only the pod evaluator knows scopes: a scoped quota constrains pods only.
    if plural != "pods" {
        return false;
    }
    let facts = PodScopeFacts::of(obj);
    scopes.iter().all(|s| facts.has_scope(s))
        && selector.iter().all(|e| facts.matches_expression(e))
}

/// What the scopes of a pod depend on (upstream `podMatchesScopeFunc`).
struct PodScopeFacts<'a> {
    terminating: bool,
    best_effort: bool,
    priority_class: &'a str,
    cross_namespace_affinity: bool,
}

impl<'a> PodScopeFacts<'a> {
    fn of(obj: &'a Value) -> Self {
        let terminating = obj
            .pointer("/spec/activeDeadlineSeconds")
            .is_some_and(|v| !v.is_null());
        let best_effort =
            pod_compute(obj, "requests").is_empty() && pod_compute(obj, "limits").is_empty();
        let priority_class = obj
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        PodScopeFacts {
            terminating,
            best_effort,
            priority_class,
            cross_namespace_affinity: uses_cross_namespace_affinity(obj),
        }
    }

    /// A scope of `spec.scopes` (or an `Exists` expression).
    fn has_scope(&self, scope: &str) -> bool {
        match scope {
            "Terminating" => self.terminating,
            "NotTerminating" => !self.terminating,
            "BestEffort" => self.best_effort,
            "NotBestEffort" => !self.best_effort,
            "PriorityClass" => !self.priority_class.is_empty(),
            "CrossNamespacePodAffinity" => self.cross_namespace_affinity,
            _ => false,
        }
    }

    /// One `scopeSelector.matchExpressions` entry (`In`, `NotIn`, `Exists`, `DoesNotExist`);
    /// only PriorityClass has values.
    fn matches_expression(&self, e: &Value) -> bool {
        let name = e
            .get("scopeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let op = e
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match (name, op) {
            ("PriorityClass", "In") => values.contains(&self.priority_class),
            ("PriorityClass", "NotIn") => !values.contains(&self.priority_class),
            (s, "Exists") => self.has_scope(s),
            (s, "DoesNotExist") => !self.has_scope(s),
            _ => false,
        }
    }
}

/// Whether a pod's (anti-)affinity terms name other namespaces (`namespaces` or a
/// `namespaceSelector`).
fn uses_cross_namespace_affinity(obj: &Value) -> bool {
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = obj.pointer(&format!("/spec/affinity/{kind}")) else {
            return false;
        };
        let required = a
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let preferred = a
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.get("podAffinityTerm"));
        required.chain(preferred).any(|t| {
            t.get("namespaces")
                .and_then(Value::as_array)
                .is_some_and(|n| !n.is_empty())
                || t.get("namespaceSelector").is_some_and(|s| !s.is_null())
        })
    })
}

/// upstream `prettyPrint`: `a=1,b=2` in key order, quantities in canonical form.
pub fn pretty(u: &BTreeMap<String, i128>, binary: &BTreeMap<String, bool>) -> String {
    u.iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                format_milli(*v, binary.get(k).copied().unwrap_or(false))
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scope_selectors_match_like_upstream() {
        let q = |scopes: Value, exprs: Value| json!({"spec": {"scopes": scopes, "scopeSelector": {"matchExpressions": exprs}}});
        let high = json!({"spec": {"priorityClassName": "high", "containers": [{"name": "a"}]}});
        let plain = json!({"spec": {"containers": [{"name": "a",
            "resources": {"requests": {"cpu": "1"}}}]}});
        let in_high = q(
            json!([]),
            json!([{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]),
        );
        assert!(scopes_match(&in_high, "pods", &high));
        assert!(!scopes_match(&in_high, "pods", &plain));
        assert!(!scopes_match(&in_high, "services", &high));
        let not_in = q(
            json!([]),
            json!([{"scopeName": "PriorityClass", "operator": "NotIn", "values": ["high"]}]),
        );
        assert!(!scopes_match(&not_in, "pods", &high) && scopes_match(&not_in, "pods", &plain));
        let exists = q(
            json!([]),
            json!([{"scopeName": "PriorityClass", "operator": "Exists"}]),
        );
        assert!(scopes_match(&exists, "pods", &high) && !scopes_match(&exists, "pods", &plain));
        let gone = q(
            json!([]),
            json!([{"scopeName": "PriorityClass", "operator": "DoesNotExist"}]),
        );
        assert!(!scopes_match(&gone, "pods", &high) && scopes_match(&gone, "pods", &plain));
        // scopes and the selector must both hold.
        let both = q(
            json!(["BestEffort"]),
            json!([{"scopeName": "PriorityClass", "operator": "Exists"}]),
        );
        assert!(scopes_match(&both, "pods", &high));
        assert!(!scopes_match(&both, "pods", &plain));
        let terminating = q(
            json!([]),
            json!([{"scopeName": "Terminating", "operator": "Exists"}]),
        );
        let job_pod = json!({"spec": {"activeDeadlineSeconds": 30, "containers": []}});
        assert!(scopes_match(&terminating, "pods", &job_pod));
        assert!(!scopes_match(&terminating, "pods", &plain));
        let cross = q(json!(["CrossNamespacePodAffinity"]), json!([]));
        let affine = json!({"spec": {"affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "k", "namespaceSelector": {}}]}}}});
        assert!(scopes_match(&cross, "pods", &affine) && !scopes_match(&cross, "pods", &plain));
    }

    #[test]
    fn quantities_parse_and_print_like_upstream() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("64Mi"), Some(64 * 1024 * 1024 * 1000));
        assert_eq!(format_milli(1500, false), "1500m");
        assert_eq!(format_milli(2000, false), "2");
        assert_eq!(format_milli(128 * 1024 * 1024 * 1000, true), "128Mi");
        assert_eq!(format_milli(2_000_000, false), "2k");
        assert_eq!(parse_milli("1x"), None);
    }

    #[test]
    fn pod_usage_sums_containers_and_takes_init_max() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}}},
                {"resources": {"requests": {"cpu": "200m"}}}
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "500m"}}}]
        }});
        let u = usage("", "pods", &pod);
        assert_eq!(u["pods"], 1000);
        assert_eq!(u["count/pods"], 1000);
        assert_eq!(u["requests.cpu"], 500);
        assert_eq!(u["cpu"], 500);
        assert_eq!(u["limits.memory"], 64 * 1024 * 1024 * 1000);
        let done = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        assert!(usage("", "pods", &done).is_empty());
    }
}
