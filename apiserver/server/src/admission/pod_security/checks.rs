//! The Pod Security Standards checks (upstream `staging/src/k8s.io/pod-security-admission/
//! policy/check_*.go`), latest version: each returns `(reason, detail)` when the pod violates
//! it. Evaluation order is upstream's: the baseline checks sorted by ID, then the restricted
//! ones sorted by ID, the three restricted checks replacing their baseline counterparts.

use std::collections::BTreeSet;

use serde_json::Value;

use super::super::pod::{CONTAINER_LISTS, s};

/// A violation: the reason and its detail (`reason (detail)` in messages).
pub type Violation = (String, String);

/// The Pod Security levels.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// Parses a label value.
    pub fn parse(v: &str) -> Option<Level> {
        match v {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

type Check = fn(&Value, &Value) -> Option<Violation>;

/// Baseline checks by ID: appArmorProfile, capabilities_baseline, hostNamespaces,
/// hostPathVolumes, hostPorts, privileged, procMount, seLinuxOptions, seccompProfile_baseline,
/// sysctls, windowsHostProcess.
const BASELINE: [(&str, Check); 11] = [
    ("appArmorProfile", app_armor),
    ("capabilities_baseline", capabilities_baseline),
    ("hostNamespaces", host_namespaces),
    ("hostPathVolumes", host_path_volumes),
    ("hostPorts", host_ports),
    ("privileged", privileged),
    ("procMount", proc_mount),
    ("seLinuxOptions", se_linux),
    ("seccompProfile_baseline", seccomp_baseline),
    ("sysctls", sysctls),
    ("windowsHostProcess", windows_host_process),
];

/// Restricted checks by ID and the baseline check each replaces.
const RESTRICTED: [(&str, Option<&str>, Check); 6] = [
    ("allowPrivilegeEscalation", None, allow_privilege_escalation),
    (
        "capabilities_restricted",
        Some("capabilities_baseline"),
        capabilities_restricted,
    ),
    (
        "restrictedVolumes",
        Some("hostPathVolumes"),
        restricted_volumes,
    ),
    ("runAsNonRoot", None, run_as_non_root),
    ("runAsUser", None, run_as_user),
    (
        "seccompProfile_restricted",
        Some("seccompProfile_baseline"),
        seccomp_restricted,
    ),
];

/// Every violation of `level` by a pod (`meta` its metadata, `spec` its spec), in upstream's
/// order.
pub fn evaluate(level: Level, meta: &Value, spec: &Value) -> Vec<Violation> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let replaced: Vec<&str> = if level == Level::Restricted {
        RESTRICTED.iter().filter_map(|(_, r, _)| *r).collect()
    } else {
        Vec::new()
    };
    let mut out: Vec<Violation> = BASELINE
        .iter()
        .filter(|(id, _)| !replaced.contains(id))
        .filter_map(|(_, f)| f(meta, spec))
        .collect();
    if level == Level::Restricted {
        out.extend(RESTRICTED.iter().filter_map(|(_, _, f)| f(meta, spec)));
    }
    out
}

/// upstream `ForbiddenDetail`: `reason (detail), reason (detail)`.
pub fn detail(v: &[Violation]) -> String {
    v.iter()
        .map(|(r, d)| {
            if d.is_empty() {
                r.clone()
            } else {
                format!("{r} ({d})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    CONTAINER_LISTS
        .iter()
        .flat_map(move |(f, _)| spec.get(*f).and_then(Value::as_array).into_iter().flatten())
}

fn quote_join<S: AsRef<str>>(v: &[S]) -> String {
    v.iter()
        .map(|x| format!("{:?}", x.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 { one } else { many }
}

/// `container "a"` / `containers "a", "b"`.
fn names(list: &[String]) -> String {
    format!(
        "{} {}",
        plural("container", "containers", list.len()),
        quote_join(list)
    )
}

fn name(c: &Value) -> String {
    s(c, "/name").to_string()
}

fn bad_containers(spec: &Value, bad: impl Fn(&Value) -> bool) -> Vec<String> {
    containers(spec).filter(|c| bad(c)).map(name).collect()
}

fn app_armor(meta: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let bad_type = |t: &str| !t.is_empty() && t != "RuntimeDefault" && t != "Localhost";
    let t = s(spec, "/securityContext/appArmorProfile/type");
    if bad_type(t) {
        bad.push(format!(
            "pod must not set securityContext.appArmorProfile.type to {t:?}"
        ));
    }
    for c in containers(spec) {
        let t = s(c, "/securityContext/appArmorProfile/type");
        if bad_type(t) {
            bad.push(format!(
                "container {:?} must not set securityContext.appArmorProfile.type to {t:?}",
                name(c)
            ));
        }
    }
    if let Some(ann) = meta.pointer("/annotations").and_then(Value::as_object) {
        for (k, v) in ann {
            let v = v.as_str().unwrap_or("");
            if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && v != "runtime/default"
                && !v.starts_with("localhost/")
            {
                bad.push(format!("{k}={v:?}"));
            }
        }
    }
    (!bad.is_empty()).then(|| {
        (
            plural(
                "forbidden AppArmor profile",
                "forbidden AppArmor profiles",
                bad.len(),
            )
            .into(),
            bad.join(", "),
        )
    })
}

const BASELINE_CAPS: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_caps(c: &Value) -> Vec<String> {
    c.pointer("/securityContext/capabilities/add")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn capabilities_baseline(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let extra: Vec<String> = added_caps(c)
            .into_iter()
            .filter(|x| !BASELINE_CAPS.contains(&x.as_str()))
            .collect();
        if !extra.is_empty() {
            bad.push(name(c));
            caps.extend(extra);
        }
    }
    (!bad.is_empty()).then(|| {
        let caps: Vec<String> = caps.into_iter().collect();
        (
            "non-default capabilities".into(),
            format!(
                "{} must not include {} in securityContext.capabilities.add",
                names(&bad),
                quote_join(&caps)
            ),
        )
    })
}

fn host_namespaces(_: &Value, spec: &Value) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec.get(**f).and_then(Value::as_bool) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    (!set.is_empty()).then(|| ("host namespaces".into(), set.join(", ")))
}

fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn host_path_volumes(_: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = volumes(spec)
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(name)
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "hostPath volumes".into(),
            format!(
                "{} {}",
                plural("volume", "volumes", bad.len()),
                quote_join(&bad)
            ),
        )
    })
}

fn host_ports(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = Vec::new();
    for c in containers(spec) {
        let mut found = false;
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(hp) = p
                .get("hostPort")
                .and_then(Value::as_i64)
                .filter(|h| *h != 0)
            {
                found = true;
                ports.push(hp.to_string());
            }
        }
        if found {
            bad.push(name(c));
        }
    }
    (!bad.is_empty()).then(|| {
        (
            "hostPort".into(),
            format!(
                "{} {} {} {}",
                names(&bad),
                plural("uses", "use", bad.len()),
                plural("hostPort", "hostPorts", ports.len()),
                ports.join(", ")
            ),
        )
    })
}

fn privileged(_: &Value, spec: &Value) -> Option<Violation> {
    let bad = bad_containers(spec, |c| {
        c.pointer("/securityContext/privileged")
            .and_then(Value::as_bool)
            == Some(true)
    });
    (!bad.is_empty()).then(|| {
        (
            "privileged".into(),
            format!(
                "{} must not set securityContext.privileged=true",
                names(&bad)
            ),
        )
    })
}

fn proc_mount(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut kinds = BTreeSet::new();
    for c in containers(spec) {
        let p = s(c, "/securityContext/procMount");
        if !p.is_empty() && p != "Default" {
            bad.push(name(c));
            kinds.insert(p.to_string());
        }
    }
    (!bad.is_empty()).then(|| {
        let kinds: Vec<String> = kinds.into_iter().collect();
        (
            "procMount".into(),
            format!(
                "{} must not set securityContext.procMount to {}",
                names(&bad),
                quote_join(&kinds)
            ),
        )
    })
}

fn se_linux(_: &Value, spec: &Value) -> Option<Violation> {
    const TYPES: [&str; 5] = [
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let mut found = BTreeSet::new();
    let mut bad = |o: Option<&Value>| {
        let Some(o) = o else { return false };
        let mut b = false;
        let t = s(o, "/type");
        if !TYPES.contains(&t) {
            found.insert(format!("type {t:?}"));
            b = true;
        }
        for f in ["user", "role"] {
            let v = s(o, &format!("/{f}"));
            if !v.is_empty() {
                found.insert(format!("{f} {v:?}"));
                b = true;
            }
        }
        b
    };
    let pod_bad = bad(spec.pointer("/securityContext/seLinuxOptions"));
    let mut cs = Vec::new();
    for c in containers(spec) {
        if bad(c.pointer("/securityContext/seLinuxOptions")) {
            cs.push(name(c));
        }
    }
    if !pod_bad && cs.is_empty() {
        return None;
    }
    let who = match (pod_bad, cs.is_empty()) {
        (true, true) => "pod".to_string(),
        (true, false) => format!("pod and {}", names(&cs)),
        _ => names(&cs),
    };
    let found: Vec<String> = found.into_iter().collect();
    Some((
        "seLinuxOptions".into(),
        format!(
            "{who} set forbidden securityContext.seLinuxOptions: {}",
            found.join(", ")
        ),
    ))
}

fn seccomp_type(v: &Value) -> &str {
    s(v, "/securityContext/seccompProfile/type")
}

fn seccomp_baseline(_: &Value, spec: &Value) -> Option<Violation> {
    let mut msgs = Vec::new();
    if seccomp_type(spec) == "Unconfined" {
        msgs.push(
            "pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_string(),
        );
    }
    let bad = bad_containers(spec, |c| seccomp_type(c) == "Unconfined");
    if !bad.is_empty() {
        msgs.push(format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            names(&bad)
        ));
    }
    (!msgs.is_empty()).then(|| ("seccompProfile".into(), msgs.join("; ")))
}

const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

fn sysctls(_: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = spec
        .pointer("/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(name)
        .filter(|n| !SAFE_SYSCTLS.contains(&n.as_str()))
        .collect();
    (!bad.is_empty()).then(|| ("forbidden sysctls".into(), bad.join(", ")))
}

fn windows_host_process(_: &Value, spec: &Value) -> Option<Violation> {
    let hp = |v: &Value| {
        v.pointer("/securityContext/windowsOptions/hostProcess")
            .and_then(Value::as_bool)
            == Some(true)
    };
    let pod = hp(spec);
    let bad = bad_containers(spec, hp);
    if !pod && bad.is_empty() {
        return None;
    }
    let who = match (pod, bad.is_empty()) {
        (true, true) => "pod".to_string(),
        (true, false) => format!("pod and {}", names(&bad)),
        _ => names(&bad),
    };
    Some((
        "hostProcess".into(),
        format!("{who} must not set securityContext.windowsOptions.hostProcess=true"),
    ))
}

fn windows(spec: &Value) -> bool {
    s(spec, "/os/name") == "windows"
}

fn allow_privilege_escalation(_: &Value, spec: &Value) -> Option<Violation> {
    if windows(spec) {
        return None;
    }
    let bad = bad_containers(spec, |c| {
        c.pointer("/securityContext/allowPrivilegeEscalation")
            .and_then(Value::as_bool)
            != Some(false)
    });
    (!bad.is_empty()).then(|| {
        (
            "allowPrivilegeEscalation != false".into(),
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                names(&bad)
            ),
        )
    })
}

fn capabilities_restricted(_: &Value, spec: &Value) -> Option<Violation> {
    if windows(spec) {
        return None;
    }
    let mut no_drop = Vec::new();
    let mut bad_add = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let drops_all = c
            .pointer("/securityContext/capabilities/drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x.as_str() == Some("ALL")));
        if !drops_all {
            no_drop.push(name(c));
        }
        let extra: Vec<String> = added_caps(c)
            .into_iter()
            .filter(|x| x != "NET_BIND_SERVICE")
            .collect();
        if !extra.is_empty() {
            bad_add.push(name(c));
            caps.extend(extra);
        }
    }
    let mut msgs = Vec::new();
    if !no_drop.is_empty() {
        msgs.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            names(&no_drop)
        ));
    }
    if !bad_add.is_empty() {
        let caps: Vec<String> = caps.into_iter().collect();
        msgs.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            names(&bad_add),
            quote_join(&caps)
        ));
    }
    (!msgs.is_empty()).then(|| ("unrestricted capabilities".into(), msgs.join("; ")))
}

const ALLOWED_VOLUMES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn restricted_volumes(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut kinds = BTreeSet::new();
    for v in volumes(spec) {
        let Some(m) = v.as_object() else { continue };
        let types: Vec<&String> = m
            .keys()
            .filter(|k| *k != "name" && !m[*k].is_null())
            .collect();
        let forbidden: Vec<&String> = types
            .into_iter()
            .filter(|k| !ALLOWED_VOLUMES.contains(&k.as_str()))
            .collect();
        if !forbidden.is_empty() {
            bad.push(name(v));
            kinds.extend(forbidden.into_iter().cloned());
        }
    }
    (!bad.is_empty()).then(|| {
        let kinds: Vec<String> = kinds.into_iter().collect();
        (
            "restricted volume types".into(),
            format!(
                "{} {} {} {} {}",
                plural("volume", "volumes", bad.len()),
                quote_join(&bad),
                plural("uses", "use", bad.len()),
                plural(
                    "restricted volume type",
                    "restricted volume types",
                    kinds.len()
                ),
                quote_join(&kinds)
            ),
        )
    })
}

fn run_as_non_root(_: &Value, spec: &Value) -> Option<Violation> {
    let non_root = |v: &Value| {
        v.pointer("/securityContext/runAsNonRoot")
            .and_then(Value::as_bool)
    };
    let user = |v: &Value| {
        v.pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64)
    };
    let pod_nr = non_root(spec);
    let mut msgs = Vec::new();
    if pod_nr == Some(false) {
        msgs.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    let explicit = bad_containers(spec, |c| non_root(c) == Some(false));
    let implicit = bad_containers(spec, |c| {
        non_root(c).is_none()
            && pod_nr != Some(true)
            && user(c).or(user(spec)).is_none_or(|u| u <= 0)
    });
    if !explicit.is_empty() {
        msgs.push(format!(
            "{} must not set securityContext.runAsNonRoot=false",
            names(&explicit)
        ));
    }
    if !implicit.is_empty() && pod_nr != Some(false) {
        msgs.push(format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            names(&implicit)
        ));
    }
    (!msgs.is_empty()).then(|| ("runAsNonRoot != true".into(), msgs.join("; ")))
}

fn run_as_user(_: &Value, spec: &Value) -> Option<Violation> {
    let zero = |v: &Value| {
        v.pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64)
            == Some(0)
    };
    let pod = zero(spec);
    let bad = bad_containers(spec, zero);
    if !pod && bad.is_empty() {
        return None;
    }
    let who = match (pod, bad.is_empty()) {
        (true, true) => "pod".to_string(),
        (true, false) => format!("pod and {}", names(&bad)),
        _ => names(&bad),
    };
    Some((
        "runAsUser=0".into(),
        format!("{who} must not set runAsUser=0"),
    ))
}

fn seccomp_restricted(_: &Value, spec: &Value) -> Option<Violation> {
    if windows(spec) {
        return None;
    }
    let ok = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let pod_t = seccomp_type(spec);
    let mut msgs = Vec::new();
    if !pod_t.is_empty() && !ok(pod_t) {
        msgs.push(format!(
            "pod must not set securityContext.seccompProfile.type to {pod_t:?}"
        ));
    }
    let mut explicit = Vec::new();
    let mut types = BTreeSet::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        let t = seccomp_type(c);
        if !t.is_empty() && !ok(t) {
            explicit.push(name(c));
            types.insert(t.to_string());
        } else if t.is_empty() && !ok(pod_t) {
            implicit.push(name(c));
        }
    }
    if !explicit.is_empty() {
        let types: Vec<String> = types.into_iter().collect();
        msgs.push(format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            names(&explicit),
            quote_join(&types)
        ));
    }
    if !implicit.is_empty() && pod_t.is_empty() {
        msgs.push(format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            names(&implicit)
        ));
    }
    (!msgs.is_empty()).then(|| ("seccompProfile".into(), msgs.join("; ")))
}
