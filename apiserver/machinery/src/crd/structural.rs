//! Structural-schema checks on the CRD and building the compiled tree.
use serde_json::Value;

use super::{FieldError, ScalePaths, SchemaNode};

pub(super) fn check_and_build(_schema: &Value, _path: &str) -> Result<SchemaNode, Vec<FieldError>> {
    Ok(SchemaNode::default())
}

pub(super) fn check_scale_paths(
    _root: &SchemaNode,
    _scale: &ScalePaths,
    _fld: &str,
) -> Vec<FieldError> {
    Vec::new()
}
