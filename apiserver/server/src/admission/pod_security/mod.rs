//! PodSecurity (upstream `staging/src/k8s.io/pod-security-admission`): the Pod Security
//! Standards, chosen per namespace by the labels `pod-security.kubernetes.io/<mode>` and
//! `<mode>-version` (modes `enforce`, `warn`, `audit`), else by the plugin's defaults
//! (`PodSecurityConfiguration` in `--admission-control-config-file`; `privileged:latest`
//! without one). `enforce` refuses a pod with upstream's 403
//! `violates PodSecurity "restricted:latest": ...`; `warn` adds the
//! `would violate PodSecurity ...` warning kubectl prints; workload resources (their pod
//! templates) get warnings only. Exempt usernames, namespaces and runtime classes skip the
//! checks. `audit` puts `pod-security.kubernetes.io/audit-violations` on the request's audit
//! event (with `enforce-policy` for every evaluated object and `exempt` for exemptions), as
//! upstream. Not done: per-version check differences (every version is evaluated with the
//! latest checks).

mod checks;

use serde::Deserialize;
use serde_json::Value;

use super::api::{ApiHandle, NAMESPACES};
use super::pod::s;
use super::{AdmissionPlugin, Attributes, Operation};
use crate::error::ApiResult;
pub use checks::Level;

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// One mode's level and version.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelVersion {
    pub level: Level,
    pub version: String,
}

impl LevelVersion {
    fn text(&self) -> String {
        format!("{}:{}", self.level.as_str(), self.version)
    }
}

/// `PodSecurityConfiguration` (pod-security.admission.config.k8s.io/v1).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodSecurityConfiguration {
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub exemptions: Exemptions,
}

/// `defaults` of the configuration.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Defaults {
    #[serde(default)]
    pub enforce: Option<String>,
    #[serde(default, rename = "enforce-version")]
    pub enforce_version: Option<String>,
    #[serde(default)]
    pub audit: Option<String>,
    #[serde(default, rename = "audit-version")]
    pub audit_version: Option<String>,
    #[serde(default)]
    pub warn: Option<String>,
    #[serde(default, rename = "warn-version")]
    pub warn_version: Option<String>,
}

/// `exemptions` of the configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exemptions {
    #[serde(default)]
    pub usernames: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub runtime_classes: Vec<String>,
}

impl PodSecurityConfiguration {
    /// Checks the default levels (upstream validates the configuration at start).
    pub fn validate(&self) -> anyhow::Result<()> {
        let d = &self.defaults;
        for (mode, v) in [
            ("enforce", &d.enforce),
            ("audit", &d.audit),
            ("warn", &d.warn),
        ] {
            if let Some(v) = v
                && Level::parse(v).is_none()
            {
                anyhow::bail!(
                    "PodSecurityConfiguration: defaults.{mode}: Unsupported value: {v:?}: supported values: \"privileged\", \"baseline\", \"restricted\""
                );
            }
        }
        Ok(())
    }

    fn default_for(&self, mode: &str) -> LevelVersion {
        let d = &self.defaults;
        let (l, v) = match mode {
            "enforce" => (&d.enforce, &d.enforce_version),
            "audit" => (&d.audit, &d.audit_version),
            _ => (&d.warn, &d.warn_version),
        };
        LevelVersion {
            level: l
                .as_deref()
                .and_then(Level::parse)
                .unwrap_or(Level::Privileged),
            version: v.clone().unwrap_or_else(|| "latest".into()),
        }
    }
}

/// The PodSecurity plugin.
pub struct PodSecurity {
    pub api: ApiHandle,
    pub config: PodSecurityConfiguration,
}

/// Where a workload resource keeps its pod template.
fn template_pointer(group: &str, plural: &str) -> Option<&'static str> {
    match (group, plural) {
        ("", "podtemplates") => Some("/template"),
        ("", "replicationcontrollers")
        | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => Some("/spec/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

impl PodSecurity {
    /// The policy of one mode from the namespace labels (an invalid level fails closed to
    /// `restricted`), else the default.
    fn policy(&self, labels: Option<&Value>, mode: &str) -> LevelVersion {
        let label = |k: &str| {
            labels
                .and_then(|l| l.get(format!("{LABEL_PREFIX}{k}")))
                .and_then(Value::as_str)
        };
        let def = self.config.default_for(mode);
        let level = match label(mode) {
            Some(v) => Level::parse(v).unwrap_or(Level::Restricted),
            None => def.level,
        };
        let version = label(&format!("{mode}-version"))
            .map(str::to_string)
            .unwrap_or(def.version);
        LevelVersion { level, version }
    }
}

#[async_trait::async_trait]
impl AdmissionPlugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    async fn validate(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        if !matches!(a.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        let info = &a.handle.info;
        let is_pod = a.is("", "pods");
        let template = if is_pod {
            None
        } else {
            match template_pointer(&info.group, &info.plural) {
                Some(p) => Some(p),
                None => return Ok(()),
            }
        };
        if is_pod && !(a.subresource.is_empty() || a.subresource == "ephemeralcontainers") {
            return Ok(());
        }
        if template.is_some() && !a.subresource.is_empty() {
            return Ok(());
        }
        let ex = &self.config.exemptions;
        if ex.namespaces.iter().any(|n| n == a.namespace) {
            a.warnings
                .audit_annotation(&format!("{LABEL_PREFIX}exempt"), "namespace");
            return Ok(());
        }
        if ex.usernames.contains(&a.user.username) {
            a.warnings
                .audit_annotation(&format!("{LABEL_PREFIX}exempt"), "user");
            return Ok(());
        }
        let (meta, spec) = match template {
            None => (
                obj.get("metadata").unwrap_or(&Value::Null),
                obj.get("spec").unwrap_or(&Value::Null),
            ),
            Some(p) => {
                let t = obj.pointer(p).unwrap_or(&Value::Null);
                (
                    t.get("metadata").unwrap_or(&Value::Null),
                    t.get("spec").unwrap_or(&Value::Null),
                )
            }
        };
        // Only significant updates are evaluated (upstream `isSignificantPodUpdate`).
        if a.operation == Operation::Update
            && let Some(old) = old
        {
            let old_spec = match template {
                None => old.get("spec"),
                Some(p) => old.pointer(&format!("{p}/spec")),
            };
            let old_meta = match template {
                None => old.get("metadata").and_then(|m| m.get("annotations")),
                Some(p) => old.pointer(&format!("{p}/metadata/annotations")),
            };
            if old_spec == Some(spec) && old_meta == meta.get("annotations") {
                return Ok(());
            }
        }
        let rc = s(spec, "/runtimeClassName");
        if !rc.is_empty() && ex.runtime_classes.iter().any(|r| r == rc) {
            a.warnings
                .audit_annotation(&format!("{LABEL_PREFIX}exempt"), "runtimeClass");
            return Ok(());
        }
        let ns = self.api.lookup(NAMESPACES, "", a.namespace).await?;
        let labels = ns.as_ref().and_then(|n| n.pointer("/metadata/labels"));
        let enforce = self.policy(labels, "enforce");
        let warn = self.policy(labels, "warn");
        let audit = self.policy(labels, "audit");
        let enforce_result = checks::evaluate(enforce.level, meta, spec);
        a.warnings
            .audit_annotation(&format!("{LABEL_PREFIX}enforce-policy"), &enforce.text());
        if audit.level != Level::Privileged {
            let audit_result = if audit == enforce {
                enforce_result.clone()
            } else {
                checks::evaluate(audit.level, meta, spec)
            };
            if !audit_result.is_empty() {
                a.warnings.audit_annotation(
                    &format!("{LABEL_PREFIX}audit-violations"),
                    &format!(
                        "would violate PodSecurity {:?}: {}",
                        audit.text(),
                        checks::detail(&audit_result)
                    ),
                );
            }
        }
        if template.is_some() && !enforce_result.is_empty() {
            a.warnings.add(format!(
                "would violate PodSecurity {:?}: {}",
                enforce.text(),
                checks::detail(&enforce_result)
            ));
        }
        if warn.level != Level::Privileged && warn != enforce {
            let warn_result = checks::evaluate(warn.level, meta, spec);
            if !warn_result.is_empty() {
                a.warnings.add(format!(
                    "would violate PodSecurity {:?}: {}",
                    warn.text(),
                    checks::detail(&warn_result)
                ));
            }
        }
        if template.is_none() && !enforce_result.is_empty() {
            return Err(a.forbidden(&format!(
                "violates PodSecurity {:?}: {}",
                enforce.text(),
                checks::detail(&enforce_result)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::checks::{Level, detail, evaluate};
    use serde_json::json;

    #[test]
    fn restricted_message_matches_upstream() {
        let spec = json!({"containers": [{"name": "nginx", "image": "nginx",
            "securityContext": {"privileged": true}}]});
        let v = evaluate(Level::Restricted, &json!({}), &spec);
        assert_eq!(
            detail(&v),
            "privileged (container \"nginx\" must not set securityContext.privileged=true), \
allowPrivilegeEscalation != false (container \"nginx\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"nginx\" must set securityContext.capabilities.drop=[\"ALL\"]), \
runAsNonRoot != true (pod or container \"nginx\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"nginx\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert!(
            evaluate(
                Level::Baseline,
                &json!({}),
                &json!({"containers": [{"name": "a"}]})
            )
            .is_empty()
        );
        let host = json!({"hostNetwork": true, "containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]}]});
        assert_eq!(
            detail(&evaluate(Level::Baseline, &json!({}), &host)),
            "host namespaces (hostNetwork=true), hostPort (container \"a\" uses hostPort 80)"
        );
    }

    #[test]
    fn a_compliant_pod_passes_restricted() {
        let spec = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "t", "projected": {"sources": []}}]});
        assert!(evaluate(Level::Restricted, &json!({}), &spec).is_empty());
    }
}
