//! Conversion between the versions of a kind that share one storage version (upstream's
//! conversion functions, on JSON values). Two built-in pairs need it in 1.35:
//!
//! - `autoscaling/v1` ↔ `autoscaling/v2` HorizontalPodAutoscaler (stored as v2; v1 keeps what it
//!   cannot express in the `autoscaling.alpha.kubernetes.io/*` annotations, as upstream's
//!   `pkg/apis/autoscaling/v1/conversion.go` does), see [`hpa`];
//! - core `v1` ↔ `events.k8s.io/v1` Event (stored as core v1; renamed fields), see [`event`].
//!
//! [`convert`] turns an object of any served version into any other version of its kind; the
//! server converts on the way into storage and on the way out to a client of another version.

pub mod event;
pub mod hpa;

use serde_json::Value;

/// Why an object could not be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConversionError {
    /// No conversion is known between the two versions of this kind.
    #[error("no conversion for {kind} from {from} to {to}")]
    Unsupported {
        /// The object's kind.
        kind: String,
        /// Its apiVersion.
        from: String,
        /// The wanted apiVersion.
        to: String,
    },
    /// A round-trip annotation holds something that is not the JSON it should be.
    #[error("annotation {annotation}: {message}")]
    BadAnnotation {
        /// The annotation key.
        annotation: &'static str,
        /// The decoding error.
        message: String,
    },
}

/// Converts `obj` (with its `apiVersion` and `kind`) to `to_api_version` in place. A no-op when
/// the object already has that version.
pub fn convert(obj: &mut Value, to_api_version: &str) -> Result<(), ConversionError> {
    let from = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if from == to_api_version {
        return Ok(());
    }
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match (kind.as_str(), from.as_str(), to_api_version) {
        ("HorizontalPodAutoscaler", "autoscaling/v2", "autoscaling/v1") => hpa::v2_to_v1(obj)?,
        ("HorizontalPodAutoscaler", "autoscaling/v1", "autoscaling/v2") => hpa::v1_to_v2(obj)?,
        ("Event", "v1", "events.k8s.io/v1") => event::core_to_events(obj),
        ("Event", "events.k8s.io/v1", "v1") => event::events_to_core(obj),
        _ => {
            return Err(ConversionError::Unsupported {
                kind,
                from,
                to: to_api_version.to_string(),
            });
        }
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            Value::String(to_api_version.to_string()),
        );
    }
    Ok(())
}

/// Moves `from[old]` to `to[new]` (nothing when absent).
pub(crate) fn move_field(
    from: &mut serde_json::Map<String, Value>,
    old: &str,
    to: &mut serde_json::Map<String, Value>,
    new: &str,
) {
    if let Some(v) = from.remove(old) {
        to.insert(new.to_string(), v);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn same_version_is_a_no_op_and_unknown_pairs_fail() {
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}});
        let before = obj.clone();
        assert_eq!(convert(&mut obj, "v1"), Ok(()));
        assert_eq!(obj, before);
        assert!(matches!(
            convert(&mut obj, "apps/v1"),
            Err(ConversionError::Unsupported { .. })
        ));
    }
}
