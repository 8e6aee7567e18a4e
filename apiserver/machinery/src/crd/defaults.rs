//! Defaulting.
use serde_json::Value;

use super::SchemaNode;

pub(super) fn apply(_root: &SchemaNode, _obj: &mut Value) {}
