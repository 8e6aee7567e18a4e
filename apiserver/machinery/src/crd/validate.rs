//! Validation.
use serde_json::Value;

use super::{FieldError, SchemaNode};

pub(super) fn validate(_root: &SchemaNode, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
    Vec::new()
}
