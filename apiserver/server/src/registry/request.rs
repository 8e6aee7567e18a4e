//! The request types the generic store takes (upstream's `metav1.CreateOptions`,
//! `UpdateOptions`, `PatchOptions`, `DeleteOptions`, `ListOptions` as the registry sees them):
//! built by the handlers, read by the store, its stages and admission. They live here, apart
//! from the store, so that `managed`, `store` and `admission` depend on them and not on each
//! other.

use ferrokube_machinery::selectors::{FieldSelector, LabelSelector};

use std::sync::{Arc, Mutex};

use crate::UserInfo;

/// Total bytes of warnings one request collects (upstream's recorder bounds them too).
const MAX_WARNING_BYTES: usize = 4096;

/// Warnings a write produced (admission webhooks), sent back as `Warning: 299` headers by the
/// router (upstream's per-request warning recorder), and the request's audit context, where
/// admission puts its audit annotations. Shared by clones; bounded.
#[derive(Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<String>>>, Option<crate::audit::AuditHandle>);

impl std::fmt::Debug for Warnings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Warnings").field(&self.0).finish()
    }
}

impl Warnings {
    /// The recorder of a request, with its audit context when the request is audited.
    pub fn for_request(audit: Option<crate::audit::AuditHandle>) -> Self {
        Warnings(Arc::default(), audit)
    }

    /// Adds an audit annotation (upstream `Attributes.AddAnnotation`); nothing when the
    /// request is not audited.
    pub fn audit_annotation(&self, key: &str, value: &str) {
        if let Some(a) = &self.1 {
            a.annotate(key, value);
        }
    }

    /// Records one warning (control characters make it invalid, as upstream; beyond the byte
    /// budget warnings are dropped).
    pub fn add(&self, w: impl AsRef<str>) {
        let w = w.as_ref();
        if w.is_empty() || w.chars().any(|c| c.is_control()) {
            return;
        }
        if let Ok(mut v) = self.0.lock() {
            let used: usize = v.iter().map(String::len).sum();
            if v.iter().any(|x| x == w) || used + w.len() > MAX_WARNING_BYTES {
                return;
            }
            v.push(w.to_string());
        }
    }

    /// The warnings recorded so far.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Query options of list and watch.
#[derive(Default, Debug, Clone)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// `metav1.DeletionPropagation`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// Options of delete.
#[derive(Default, Debug, Clone)]
pub struct DeleteOptions {
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Option<Propagation>,
    /// The deprecated `orphanDependents`.
    pub orphan_dependents: Option<bool>,
    /// Who deletes (for admission).
    pub user: UserInfo,
    /// Where admission puts warnings for the client.
    pub warnings: Warnings,
}

/// What a write changes: the main resource or one of its subresources. Decides the
/// spec/status split, the validation hook and the `subresource` of managedFields entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum UpdateTarget {
    #[default]
    Main,
    /// `/status`: only the status changes.
    Status,
    /// `/scale`: the main resource, written through its Scale view.
    Scale,
    /// `namespaces/{name}/finalize`: only `spec.finalizers` changes.
    Finalize,
    /// `certificatesigningrequests/{name}/approval`: only the status (its conditions) changes.
    Approval,
}

impl UpdateTarget {
    /// The subresource name (`""` for the main resource).
    pub fn subresource(self) -> &'static str {
        match self {
            UpdateTarget::Main => "",
            UpdateTarget::Status => "status",
            UpdateTarget::Scale => "scale",
            UpdateTarget::Finalize => "finalize",
            UpdateTarget::Approval => "approval",
        }
    }
}

/// `fieldValidation=Ignore|Warn|Strict`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// How `metadata.managedFields` is maintained by a write.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ManagedFieldsMode {
    /// The store records the writer's fields as an update (every verb but apply).
    #[default]
    Record,
    /// Server-side apply computed them inside the mutation: the store leaves them alone.
    Applied,
}

/// What every create, update, patch and apply carries (upstream's Create/Update/PatchOptions
/// plus the request's user), passed explicitly to the store.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// `dryRun=All`: every stage runs, nothing is written.
    pub dry_run: bool,
    /// The manager of managedFields entries (`fieldManager`, else from the User-Agent).
    pub field_manager: String,
    /// How unknown and duplicate fields were treated (already applied by the handler or the
    /// mutation; admission can read it).
    pub field_validation: FieldValidation,
    /// Which part of the object is written.
    pub subresource: UpdateTarget,
    /// Who writes.
    pub user: UserInfo,
    /// Whether apply already computed managedFields.
    pub managed_fields: ManagedFieldsMode,
    /// The size of the request body: with the stored object's, it decides whether the
    /// mutation runs off the async workers (`store::HEAVY_BYTES`).
    pub body_bytes: usize,
    /// Where admission puts warnings for the client.
    pub warnings: Warnings,
}

impl Default for WriteOptions {
    /// A write by the server itself (bootstrap objects), recorded under `kube-apiserver`.
    fn default() -> Self {
        WriteOptions {
            dry_run: false,
            field_manager: "kube-apiserver".into(),
            field_validation: FieldValidation::default(),
            subresource: UpdateTarget::Main,
            user: UserInfo::default(),
            managed_fields: ManagedFieldsMode::default(),
            body_bytes: 0,
            warnings: Warnings::default(),
        }
    }
}
