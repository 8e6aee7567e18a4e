//! The `audit.k8s.io/v1` `Event` as written to the log, one JSON object per line. The struct's
//! field order is upstream's (`TypeMeta`, level, auditID, stage, ...), so lines read the same.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::UserInfo;

/// `authentication.k8s.io/v1` `UserInfo` inside an event.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EventUser {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&UserInfo> for EventUser {
    fn from(u: &UserInfo) -> Self {
        EventUser {
            username: u.username.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: u.extra.clone(),
        }
    }
}

/// `ObjectReference` of an event.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// One audit event.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub level: &'static str,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: &'static str,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    pub user: EventUser,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<EventUser>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    pub request_received_timestamp: String,
    pub stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `metav1.MicroTime` as JSON: RFC 3339 in UTC with six fractional digits.
pub fn micro_time(t: jiff::Timestamp) -> String {
    let micros = t.subsec_microsecond();
    format!("{}.{:06}Z", t.strftime("%Y-%m-%dT%H:%M:%S"), micros.max(0))
}

/// The legacy one-line format of `--audit-log-format=legacy` (upstream `EventString`).
pub fn legacy_line(e: &Event) -> String {
    let (ns, uri_as, groups_as) = (
        e.object_ref
            .as_ref()
            .map(|o| o.namespace.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or("<none>"),
        e.impersonated_user
            .as_ref()
            .map(|u| u.username.as_str())
            .unwrap_or("<self>"),
        e.impersonated_user
            .as_ref()
            .map(|u| format!("{:?}", u.groups.join(",")))
            .unwrap_or_else(|| "<lookup>".into()),
    );
    let response = e
        .response_status
        .as_ref()
        .and_then(|s| s.get("code"))
        .map(|c| c.to_string())
        .unwrap_or_else(|| "<deferred>".into());
    format!(
        "{} AUDIT: id={:?} stage={:?} ip={:?} method={:?} user={:?} groups={:?} as={:?} asgroups={} user-agent={:?} namespace={:?} uri={:?} response=\"{}\"",
        e.stage_timestamp,
        e.audit_id,
        e.stage,
        e.source_ips.join(","),
        e.verb,
        e.user.username,
        e.user.groups.join(","),
        uri_as,
        groups_as,
        e.user_agent,
        ns,
        e.request_uri,
        response
    )
}

/// Drops `metadata.managedFields` from an object and from the items of a list.
pub fn strip_managed_fields(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        for i in items {
            if let Some(m) = i.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("managedFields");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_has_six_digits() {
        let t: jiff::Timestamp = "2026-01-02T03:04:05.0012345Z".parse().expect("timestamp");
        assert_eq!(micro_time(t), "2026-01-02T03:04:05.001234Z");
    }

    #[test]
    fn event_fields_in_upstream_order() {
        let e = Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            audit_id: "id".into(),
            stage: "ResponseComplete",
            request_uri: "/api".into(),
            verb: "get".into(),
            user: EventUser {
                username: "bob".into(),
                ..Default::default()
            },
            impersonated_user: None,
            source_ips: vec!["127.0.0.1".into()],
            user_agent: "ua".into(),
            object_ref: None,
            response_status: Some(serde_json::json!({"metadata": {}, "code": 200})),
            request_object: None,
            response_object: None,
            request_received_timestamp: "t0".into(),
            stage_timestamp: "t1".into(),
            annotations: BTreeMap::new(),
        };
        let s = serde_json::to_string(&e).expect("json");
        assert!(
            s.starts_with(r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"bob"},"sourceIPs":["127.0.0.1"]"#),
            "{s}"
        );
    }
}
