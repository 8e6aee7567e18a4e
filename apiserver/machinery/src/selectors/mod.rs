//! Label and field selectors (`k8s.io/apimachinery/pkg/labels`, `.../pkg/fields`).
//!
//! Parsing follows upstream's lexer and grammar so that the same inputs are accepted and the
//! same error messages are produced (clients show them verbatim, e.g. kubectl's
//! `unable to parse requirement: ...`).

mod fields;
mod labels;

pub use fields::{FieldOp, FieldRequirement, FieldSelector, escape_field_value};
pub use labels::{LabelOp, LabelSelector, Requirement};

/// A selector that could not be parsed or built; the message is upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A bad label selector (string form or `metav1.LabelSelector`).
    #[error("{0}")]
    Label(String),
    /// A bad field selector.
    #[error("{0}")]
    Field(String),
}
