//! `metadata.managedFields` on every write (upstream `fieldmanager`, wired as a decorator of the
//! REST storage): the handler states who is writing ([`Writer`], from `fieldManager` or the
//! User-Agent) for the duration of the request, and the generic store calls [`record`] once per
//! create/update with the old and new object. Apply requests compute their managed fields in
//! `endpoints/apply.rs` and mark the context so that [`record`] leaves them alone.

use ferrokube_machinery::managedfields::{self, Writer};
use serde_json::Value;

use super::ResourceHandle;
use super::store::{UpdateTarget, now_rfc3339};

/// Who is writing in the current request.
#[derive(Clone, Debug)]
pub struct WriteContext {
    pub manager: String,
    /// The managed fields were computed by server-side apply already.
    pub applied: bool,
}

tokio::task_local! {
    /// The writer of the request being served (set by `endpoints::serve`).
    pub static WRITE_CONTEXT: WriteContext;
}

/// Records the write in `new`'s `metadata.managedFields` (`old` is `None` for a create).
/// Writes outside a request (bootstrap objects) are recorded under `kube-apiserver`, as upstream.
pub fn record(h: &ResourceHandle, old: Option<&Value>, new: &mut Value, target: UpdateTarget) {
    let ctx = WRITE_CONTEXT
        .try_with(Clone::clone)
        .unwrap_or(WriteContext {
            manager: "kube-apiserver".into(),
            applied: false,
        });
    if ctx.applied {
        return;
    }
    let info = &h.info;
    let t = managedfields::root_type(info.group, info.version, info.kind);
    let now = now_rfc3339();
    let api_version = info.api_version();
    let w = Writer {
        manager: &ctx.manager,
        api_version: &api_version,
        subresource: match target {
            UpdateTarget::Status => "status",
            UpdateTarget::Main => "",
        },
        now: &now,
    };
    managedfields::update(old, new, &t, &w, h.has_status());
}
