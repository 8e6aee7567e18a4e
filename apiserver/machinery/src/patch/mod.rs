//! The PATCH body formats over `serde_json::Value`: RFC 6902 JSON patch ([`json_patch`]),
//! RFC 7386 JSON merge patch ([`merge_patch`]) and Kubernetes' strategic merge patch
//! ([`strategic_merge_patch`]), which is driven by the OpenAPI schema facts
//! (`x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`).

mod json;
mod merge;
mod strategic;
#[cfg(test)]
mod strategic_tests;
mod strategic_util;

pub use json::json_patch;
pub use merge::merge_patch;
pub use strategic::{strategic_merge_patch, strategic_merge_patch_with};

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    /// The patch document is malformed.
    #[error("{0}")]
    Malformed(String),
    /// A `test` operation failed.
    #[error("testing value {path} failed")]
    TestFailed { path: String },
    /// A path does not exist (or cannot be created) in the document.
    #[error("{0}")]
    Path(String),
    /// A strategic merge patch is malformed in a way upstream answers with 400 BadRequest
    /// (`ErrBadJSONDoc`, `ErrBadPatchFormatFor*` in `interpretStrategicMergePatchError`).
    #[error("{0}")]
    StrategicBadRequest(String),
    /// A strategic merge patch upstream answers with 422 (`ErrNoListOfLists`,
    /// `ErrPatchContentNotMatchRetainKeys`).
    #[error("{0}")]
    StrategicUnprocessable(String),
    /// More operations than upstream's `maxJSONPatchOperations` (413 RequestEntityTooLarge).
    #[error("The allowed maximum operations in a JSON patch is 10000, got {got}")]
    TooManyOperations { got: usize },
    /// `copy` operations duplicated more than `JSONPatchMaxCopyBytes` (upstream: 422 with
    /// evanphx/json-patch's `AccumulatedCopySizeError` text).
    #[error(
        "Unable to complete the copy, the accumulated size increase of copy is {accumulated}, exceeding the limit {limit}"
    )]
    CopyTooLarge { accumulated: u64, limit: u64 },
    /// The patched object would be nested deeper than [`crate::limits::MAX_DEPTH`] (422).
    #[error(transparent)]
    TooDeep(#[from] crate::limits::TooDeep),
    /// Any other strategic merge failure (missing merge key, bad `$patch` value, ...): upstream
    /// returns the plain error, which the API server turns into a 500 with its message.
    #[error("{0}")]
    Strategic(String),
}
