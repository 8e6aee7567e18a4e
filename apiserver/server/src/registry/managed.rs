//! `metadata.managedFields` on every write (upstream `fieldmanager`, wired as a decorator of the
//! REST storage): the generic store calls [`record`] once per create/update with the old and new
//! object and the request's [`WriteOptions`] (who writes, which subresource). Apply requests
//! compute their managed fields inside their mutation (`endpoints/apply.rs`) and say so with
//! [`ManagedFieldsMode::Applied`], so that [`record`] leaves them alone.

use ferrokube_machinery::managedfields::typed::NodeType;
use ferrokube_machinery::managedfields::{self, Writer};
use serde_json::Value;

use super::ResourceHandle;
use super::request::{ManagedFieldsMode, WriteOptions};
use super::store::now_rfc3339;

/// The managed-fields type of `h`'s objects: the built-in OpenAPI facts, or a custom
/// resource's schema (`served`: the served version's, for objects in that version; else the
/// schema of the write stages, for objects in the form they are stored).
pub fn node_type(h: &ResourceHandle, served: bool) -> NodeType {
    let custom = h.custom.as_ref().and_then(|c| {
        if served {
            c.own_schema.clone()
        } else {
            c.schema.clone()
        }
    });
    match custom {
        Some(s) => NodeType::of_schema(s),
        None => managedfields::root_type(&h.info.group, &h.info.version, &h.info.kind),
    }
}

/// Records the write in `new`'s `metadata.managedFields` (`old` is `None` for a create).
pub fn record(h: &ResourceHandle, old: Option<&Value>, new: &mut Value, opts: &WriteOptions) {
    if opts.managed_fields == ManagedFieldsMode::Applied {
        return;
    }
    let info = &h.info;
    let t = node_type(h, false);
    let now = now_rfc3339();
    let api_version = info.api_version();
    let w = Writer {
        manager: &opts.field_manager,
        api_version: &api_version,
        subresource: opts.subresource.subresource(),
        now: &now,
    };
    managedfields::update(old, new, &t, &w, h.has_status());
}
