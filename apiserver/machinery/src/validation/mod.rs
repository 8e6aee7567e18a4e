//! Field errors and name/metadata validation with upstream's exact messages.
//!
//! Mirrors `k8s.io/apimachinery/pkg/util/validation/field` (the error list every `Invalid`
//! response is built from), `k8s.io/apimachinery/pkg/util/validation` (DNS names, qualified
//! names, label values) and `k8s.io/apimachinery/pkg/api/validation` (`ValidateObjectMeta`).
//! Per-kind validators (`core`, `pod`, `workloads`, `misc`) follow upstream's
//! `pkg/apis/*/validation` packages on the JSON form of objects.
//! Messages are facts clients and tests compare against, so they are kept byte for byte.

mod builtin;
pub mod core;
mod cron;
mod field;
pub mod helpers;
mod meta;
mod meta_update;
pub mod misc;
mod names;
pub mod pod;
pub mod schema_table;
pub mod types;
pub mod unknown_fields;
pub mod workloads;

pub use builtin::{validate_builtin, validate_builtin_update};
pub use field::{FieldError, FieldErrorType, Path, aggregate_message, go_quote};
pub use meta::{
    NameRule, TOTAL_ANNOTATION_SIZE_LIMIT_B, validate_annotations, validate_finalizers,
    validate_labels, validate_object_meta, validate_owner_references,
};
pub use meta_update::{
    FIELD_IMMUTABLE_ERROR_MSG, validate_immutable_field, validate_object_meta_update,
};
pub use names::{
    empty_error, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value, max_len_error, regex_error, validate_path_segment_name,
};
