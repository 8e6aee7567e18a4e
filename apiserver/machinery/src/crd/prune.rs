//! Pruning.
use serde_json::Value;

use super::SchemaNode;

pub(super) fn prune(_root: &SchemaNode, _obj: &mut Value) -> Vec<String> {
    Vec::new()
}
