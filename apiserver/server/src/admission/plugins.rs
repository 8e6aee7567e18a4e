//! The named plugins, upstream's order and defaults, and kube-apiserver's flags
//! `--enable-admission-plugins`, `--disable-admission-plugins` and
//! `--admission-control-config-file` (upstream `pkg/kubeapiserver/options/plugins.go`).
//!
//! The chain always runs the enabled plugins in upstream's order (`ORDERED`), whatever the
//! order of the flags. Enabled by default: upstream 1.35's default set, restricted to the
//! plugins implemented here, plus NodeRestriction when the Node authorizer is on (as kubeadm
//! and k3s run it; upstream leaves it to the flag).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use super::api::ApiHandle;
use super::certificates::{CertificateApproval, CertificateSigning, CertificateSubjectRestriction};
use super::default_ingress_class::DefaultIngressClass;
use super::default_storage_class::DefaultStorageClass;
use super::limit_ranger::LimitRanger;
use super::node_restriction::NodeRestriction;
use super::node_taint::TaintNodesByCondition;
use super::pod_security::{PodSecurity, PodSecurityConfiguration};
use super::priority::Priority;
use super::pvc_resize::PersistentVolumeClaimResize;
use super::resource_quota::ResourceQuota;
use super::runtime_class::RuntimeClass;
use super::service_account::ServiceAccount;
use super::storage_protection::StorageObjectInUseProtection;
use super::tolerations::DefaultTolerationSeconds;
use super::{AdmissionChain, AdmissionPlugin, Attributes, NamespaceLifecycle, StoreReader};
use crate::error::ApiResult;
use crate::registry::ResourceHandle;

/// upstream `AllOrderedPlugins` (1.35): every plugin name kube-apiserver knows, in the order
/// the chain runs them.
pub const ORDERED: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceLifecycle",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodSecurity",
    "PodNodeSelector",
    "Priority",
    "DefaultTolerationSeconds",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DenyServiceExternalIPs",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "AlwaysDeny",
];

/// The plugins on by default (upstream's default set that ferrokube implements).
pub const DEFAULT_ON: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "MutatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
    "ResourceQuota",
];

/// The plugins implemented here (the others are known names that cannot be enabled).
const IMPLEMENTED: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "MutatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
    "ResourceQuota",
    "AlwaysDeny",
];

/// What the flags select.
#[derive(Clone, Debug, Default)]
pub struct PluginSelection {
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    pub config_file: Option<PathBuf>,
    /// Whether `--authorization-mode` includes `Node` (turns NodeRestriction on by default).
    pub node_authorizer: bool,
}

impl PluginSelection {
    /// The enabled plugin names in chain order, or upstream's validation error.
    pub fn enabled(&self) -> anyhow::Result<Vec<&'static str>> {
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let (enable, disable) = (clean(&self.enable), clean(&self.disable));
        for (flag, list) in [("enable", &enable), ("disable", &disable)] {
            for p in list {
                if !ORDERED.contains(&p.as_str()) {
                    anyhow::bail!("{flag}-admission-plugins plugin {p:?} is unknown");
                }
            }
        }
        let overlap: Vec<&String> = enable.iter().filter(|p| disable.contains(p)).collect();
        if !overlap.is_empty() {
            anyhow::bail!(
                "{overlap:?} in enable-admission-plugins and disable-admission-plugins overlapped"
            );
        }
        for p in &enable {
            if !IMPLEMENTED.contains(&p.as_str()) {
                anyhow::bail!(
                    "enable-admission-plugins plugin {p:?} is not implemented by ferrokube (implemented: {})",
                    IMPLEMENTED.join(", ")
                );
            }
        }
        Ok(ORDERED
            .iter()
            .copied()
            .filter(|p| {
                let default =
                    DEFAULT_ON.contains(p) || (*p == "NodeRestriction" && self.node_authorizer);
                (default || enable.iter().any(|e| e == p)) && !disable.iter().any(|d| d == p)
            })
            .collect())
    }
}

/// `--admission-control-config-file`: plugin configurations (PodSecurity's is read).
#[derive(Clone, Debug, Default)]
pub struct AdmissionConfig {
    pub pod_security: PodSecurityConfiguration,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    plugins: Vec<PluginEntry>,
}

#[derive(Deserialize)]
struct PluginEntry {
    name: String,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    configuration: Option<Value>,
}

impl AdmissionConfig {
    /// Reads an `AdmissionConfiguration` (apiserver.config.k8s.io/v1), inline plugin
    /// configurations or `path`s relative to the file.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<AdmissionConfig> {
        let Some(path) = path else {
            return Ok(AdmissionConfig::default());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: ConfigFile =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut out = AdmissionConfig::default();
        for p in file.plugins {
            if p.name != "PodSecurity" {
                continue;
            }
            let conf = match (p.configuration, p.path) {
                (Some(c), _) => c,
                (None, Some(rel)) => {
                    let full = path.parent().map(|d| d.join(&rel)).unwrap_or(rel);
                    let t = std::fs::read_to_string(&full)
                        .with_context(|| format!("reading {}", full.display()))?;
                    serde_yaml::from_str(&t)
                        .with_context(|| format!("parsing {}", full.display()))?
                }
                (None, None) => continue,
            };
            let ps: PodSecurityConfiguration =
                serde_json::from_value(conf).context("decoding the PodSecurity configuration")?;
            ps.validate()?;
            out.pod_security = ps;
        }
        Ok(out)
    }
}

/// AlwaysAdmit: admits everything (deprecated upstream, kept for its name).
struct AlwaysAdmit;

#[async_trait::async_trait]
impl AdmissionPlugin for AlwaysAdmit {
    fn name(&self) -> &'static str {
        "AlwaysAdmit"
    }
}

/// AlwaysDeny: refuses every write (for tests, as upstream).
struct AlwaysDeny;

#[async_trait::async_trait]
impl AdmissionPlugin for AlwaysDeny {
    fn name(&self) -> &'static str {
        "AlwaysDeny"
    }

    async fn admit(&self, a: &Attributes<'_>, _obj: &mut Value) -> ApiResult<()> {
        Err(a.forbidden("admission control is denying all modifications"))
    }
}

/// Builds the chain the flags select.
pub fn build_chain(
    sel: &PluginSelection,
    api: &ApiHandle,
    reader: StoreReader,
    namespaces: Arc<ResourceHandle>,
) -> anyhow::Result<AdmissionChain> {
    let config = AdmissionConfig::load(sel.config_file.as_deref())?;
    let mut plugins: Vec<Arc<dyn AdmissionPlugin>> = Vec::new();
    for name in sel.enabled()? {
        let api = api.clone();
        let p: Arc<dyn AdmissionPlugin> = match name {
            "AlwaysAdmit" => Arc::new(AlwaysAdmit),
            "NamespaceLifecycle" => {
                Arc::new(NamespaceLifecycle::new(reader.clone(), namespaces.clone()))
            }
            "LimitRanger" => Arc::new(LimitRanger { api }),
            "ServiceAccount" => Arc::new(ServiceAccount { api }),
            "NodeRestriction" => Arc::new(NodeRestriction),
            "TaintNodesByCondition" => Arc::new(TaintNodesByCondition),
            "PodSecurity" => Arc::new(PodSecurity {
                api,
                config: config.pod_security.clone(),
            }),
            "Priority" => Arc::new(Priority { api }),
            "DefaultTolerationSeconds" => Arc::new(DefaultTolerationSeconds::default()),
            "DefaultStorageClass" => Arc::new(DefaultStorageClass { api }),
            "StorageObjectInUseProtection" => Arc::new(StorageObjectInUseProtection),
            "PersistentVolumeClaimResize" => Arc::new(PersistentVolumeClaimResize { api }),
            "RuntimeClass" => Arc::new(RuntimeClass { api }),
            "CertificateApproval" => Arc::new(CertificateApproval { api }),
            "CertificateSigning" => Arc::new(CertificateSigning { api }),
            "CertificateSubjectRestriction" => Arc::new(CertificateSubjectRestriction),
            "DefaultIngressClass" => Arc::new(DefaultIngressClass { api }),
            "ResourceQuota" => Arc::new(ResourceQuota { api }),
            // Needs the watch cache: added by the server next to the webhook plugins.
            "ValidatingAdmissionPolicy" | "MutatingAdmissionPolicy" => continue,
            "AlwaysDeny" => Arc::new(AlwaysDeny),
            other => anyhow::bail!("admission plugin {other:?} is not implemented"),
        };
        plugins.push(p);
    }
    Ok(AdmissionChain::new(plugins))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(enable: &[&str], disable: &[&str], node: bool) -> PluginSelection {
        PluginSelection {
            enable: enable.iter().map(|s| s.to_string()).collect(),
            disable: disable.iter().map(|s| s.to_string()).collect(),
            config_file: None,
            node_authorizer: node,
        }
    }

    #[test]
    fn defaults_follow_upstream_order_and_flags() {
        let on = sel(&[], &[], true).enabled().expect("defaults");
        assert_eq!(
            on[..4],
            [
                "NamespaceLifecycle",
                "LimitRanger",
                "ServiceAccount",
                "NodeRestriction"
            ]
        );
        assert_eq!(on.last(), Some(&"ResourceQuota"));
        let off = sel(&["AlwaysDeny"], &["PodSecurity", "ResourceQuota"], false)
            .enabled()
            .expect("flags");
        assert!(!off.contains(&"PodSecurity") && !off.contains(&"NodeRestriction"));
        assert_eq!(off.last(), Some(&"AlwaysDeny"));
        let e = sel(&["Nope"], &[], true).enabled().expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "enable-admission-plugins plugin \"Nope\" is unknown"
        );
        assert!(sel(&["Priority"], &["Priority"], true).enabled().is_err());
    }
}
