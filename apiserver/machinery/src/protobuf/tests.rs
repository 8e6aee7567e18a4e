//! Decoding hand-encoded bodies, built with a tiny protobuf writer, compared with the JSON
//! upstream would send for the same object.

use serde_json::json;

use super::*;

/// A minimal protobuf writer for the fixtures.
#[derive(Default)]
struct Enc(Vec<u8>);

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Enc {
    fn new() -> Self {
        Self::default()
    }
    fn uint(mut self, tag: u32, v: u64) -> Self {
        varint(&mut self.0, u64::from(tag) << 3);
        varint(&mut self.0, v);
        self
    }
    fn bytes(mut self, tag: u32, b: &[u8]) -> Self {
        varint(&mut self.0, (u64::from(tag) << 3) | 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, tag: u32, s: &str) -> Self {
        self.bytes(tag, s.as_bytes())
    }
    fn msg(self, tag: u32, m: Enc) -> Self {
        self.bytes(tag, &m.0)
    }
    fn entry(self, tag: u32, k: &str, v: &str) -> Self {
        self.msg(tag, Enc::new().str(1, k).str(2, v))
    }
    fn entry_msg(self, tag: u32, k: &str, v: Enc) -> Self {
        self.msg(tag, Enc::new().str(1, k).msg(2, v))
    }
}

/// Wraps a typed message in the `k8s\0` + runtime.Unknown envelope, as kubectl does.
fn envelope(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
    let type_meta = Enc::new().str(1, api_version).str(2, kind);
    let unknown = Enc::new()
        .msg(1, type_meta)
        .msg(2, raw)
        .str(3, "")
        .str(4, "");
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&unknown.0);
    out
}

fn meta(name: &str) -> Enc {
    Enc::new().str(1, name)
}

#[test]
fn configmap_with_data_and_binary_data() {
    let cm = Enc::new()
        .msg(1, meta("a").str(3, "default").entry(11, "app", "x"))
        .entry(2, "x", "y")
        .entry(2, "empty", "")
        .msg(3, Enc::new().str(1, "bin").bytes(2, &[0, 1, 2, 255]));
    let got = decode_object(&envelope("v1", "ConfigMap", cm)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "default", "labels": {"app": "x"}},
            "data": {"x": "y", "empty": ""},
            "binaryData": {"bin": "AAEC/w=="}
        })
    );
    // apiVersion and kind come first, as in upstream JSON.
    let keys: Vec<_> = got.as_object().unwrap().keys().take(2).cloned().collect();
    assert_eq!(keys, ["apiVersion", "kind"]);
}

#[test]
fn deployment_with_template_ports_quantities_and_int_or_string() {
    // hostPort (2) is a Go value: the 0 Go writes is dropped.
    let port = Enc::new().uint(2, 0).uint(3, 80).str(4, "TCP");
    let resources = Enc::new()
        .entry_msg(1, "cpu", Enc::new().str(1, "500m"))
        .entry_msg(2, "memory", Enc::new().str(1, "64Mi"));
    let container = Enc::new()
        .str(1, "nginx")
        .str(2, "nginx")
        // What Go's encoder writes for unset non-pointer fields: dropped.
        .str(14, "")
        .uint(16, 0)
        .msg(6, port)
        .msg(8, resources);
    // kubectl's generators send a zero generation and a zero (empty) creationTimestamp in the
    // template's metadata: both are unset in Go, so absent in JSON.
    let template = Enc::new()
        .msg(
            1,
            Enc::new()
                .entry(11, "app", "d")
                .uint(7, 0)
                .msg(8, Enc::new()),
        )
        .msg(2, Enc::new().msg(2, container));
    let strategy = Enc::new().str(1, "RollingUpdate").msg(
        2,
        Enc::new()
            .msg(1, Enc::new().uint(1, 0).uint(2, 0))
            .msg(2, Enc::new().uint(1, 1).str(3, "25%")),
    );
    let spec = Enc::new()
        .uint(1, 3)
        .msg(2, Enc::new().entry(1, "app", "d"))
        .msg(3, template)
        .msg(4, strategy);
    let dep = Enc::new()
        .msg(1, meta("d").msg(8, Enc::new().uint(1, 1_704_164_645)))
        .msg(2, spec);
    let got = decode_object(&envelope("apps/v1", "Deployment", dep)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "creationTimestamp": "2024-01-02T03:04:05Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{
                        "name": "nginx", "image": "nginx",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}}
                    }]}
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}
                }
            }
        })
    );
}

#[test]
fn secret_bytes_are_base64() {
    let s = Enc::new()
        .msg(1, meta("s"))
        .msg(2, Enc::new().str(1, "password").bytes(2, b"hunter2"))
        .str(3, "Opaque");
    let got = decode_object(&envelope("v1", "Secret", s)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
               "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"})
    );
}

#[test]
fn self_subject_access_review_like_kubectl_auth_can_i() {
    let attrs = Enc::new()
        .str(1, "default")
        .str(2, "get")
        .str(3, "")
        .str(5, "pods");
    let ssar = Enc::new()
        .msg(1, Enc::new())
        .msg(2, Enc::new().msg(1, attrs))
        .msg(3, Enc::new());
    let got = decode_object(&envelope(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        ssar,
    ))
    .unwrap();
    // Empty strings are Go zero values (unset), as are false bools; nothing is invented for
    // the empty status.
    assert_eq!(
        got,
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {"resourceAttributes": {
                "namespace": "default", "verb": "get", "resource": "pods"
            }},
            "status": {}
        })
    );
}

#[test]
fn namespace_with_finalizers_and_embedded_structs() {
    let ns = Enc::new()
        .msg(1, meta("team-a"))
        .msg(2, Enc::new().str(1, "kubernetes"));
    let got = decode_object(&envelope("v1", "Namespace", ns)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"},
               "spec": {"finalizers": ["kubernetes"]}})
    );
    // A Volume's VolumeSource is a Go embedded struct: its fields are inlined.
    let vol = Enc::new().str(1, "cfg").msg(
        2,
        Enc::new().msg(19, Enc::new().msg(1, Enc::new().str(1, "cm"))),
    );
    let pod = Enc::new().msg(1, meta("p")).msg(2, Enc::new().msg(1, vol));
    let got = decode_object(&envelope("v1", "Pod", pod)).unwrap();
    assert_eq!(
        got["spec"]["volumes"],
        json!([{"name": "cfg", "configMap": {"name": "cm"}}])
    );
}

#[test]
fn raw_extension_and_micro_time_and_duration() {
    assert_eq!(
        rfc3339(1_704_164_645, 123_456_789, true).unwrap(),
        "2024-01-02T03:04:05.123456Z"
    );
    assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(300_000_000), "300ms");
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(-60_000_000_000), "-1m0s");
    // ControllerRevision.data is a RawExtension holding JSON.
    let cr = Enc::new()
        .msg(1, meta("r"))
        .msg(2, Enc::new().bytes(1, br#"{"spec":{"x":1}}"#))
        .uint(3, 2);
    let got = decode_object(&envelope("apps/v1", "ControllerRevision", cr)).unwrap();
    assert_eq!(got["data"], json!({"spec": {"x": 1}}));
    assert_eq!(got["revision"], json!(2));
}

#[test]
fn errors() {
    assert_eq!(decode_object(b"{}"), Err(ProtobufError::MissingMagic));
    let unknown = envelope("example.com/v1", "Widget", Enc::new());
    assert!(matches!(
        decode_object(&unknown),
        Err(ProtobufError::UnknownKind { .. })
    ));
    let mut cut = envelope("v1", "ConfigMap", Enc::new().msg(1, meta("a")));
    cut.pop();
    assert!(decode_object(&cut).is_err());
    assert!(is_protobuf_content_type(
        "application/vnd.kubernetes.protobuf"
    ));
    assert!(is_protobuf_content_type(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf_content_type("application/json"));
}

/// `levels` envelopes of a core/v1 List whose one item is a RawExtension holding the next
/// envelope (as protobuf), built in O(n) from the innermost length outwards.
pub(super) fn nested_list_body(levels: usize) -> Vec<u8> {
    fn vlen(mut v: usize) -> usize {
        let mut n = 1;
        while v >= 0x80 {
            v >>= 7;
            n += 1;
        }
        n
    }
    let type_meta = Enc::new().str(1, "v1").str(2, "List");
    let tm = Enc::new().msg(1, type_meta).0;
    let innermost = {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&tm);
        out
    };
    // Sizes of (raw extension content, list content, envelope) per level, innermost first.
    let mut sizes = Vec::with_capacity(levels);
    let mut c = innermost.len();
    for _ in 0..levels {
        let r = 1 + vlen(c) + c;
        let l = 1 + vlen(r) + r;
        sizes.push((c, r, l));
        c = MAGIC.len() + tm.len() + 1 + vlen(l) + l;
    }
    let mut out = Vec::with_capacity(c);
    for &(c, r, l) in sizes.iter().rev() {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&tm);
        out.push(0x12);
        varint(&mut out, l as u64);
        out.push(0x12);
        varint(&mut out, r as u64);
        out.push(0x0a);
        varint(&mut out, c as u64);
    }
    out.extend_from_slice(&innermost);
    out
}

#[test]
fn nested_lists_decode_up_to_the_depth_limit() {
    let got = decode_object(&nested_list_body(3)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "List", "items": [
                    {"apiVersion": "v1", "kind": "List"}]}]}]})
    );
}

#[test]
fn protobuf_nested_100k_deep_is_an_error_not_a_stack_overflow() {
    let body = nested_list_body(100_000);
    assert!(body.len() < 3 * 1024 * 1024, "{}", body.len());
    // Run on a small stack (like a tokio worker's 2 MiB) to prove the bound holds there.
    let r = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || decode_object(&body))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        r,
        Err(ProtobufError::TooDeep(crate::limits::MAX_PROTOBUF_DEPTH))
    );
    assert_eq!(
        ProtobufError::TooDeep(100).to_string(),
        "malformed protobuf message: nested more than 100 levels deep"
    );
}

#[test]
fn length_prefixes_past_the_end_are_refused_without_allocating() {
    // Unknown{typeMeta: <len 2^62>}: the prefix is checked against the body before any slice.
    let mut body = MAGIC.to_vec();
    body.push(0x0a);
    varint(&mut body, 1 << 62);
    assert_eq!(decode_object(&body), Err(ProtobufError::Truncated));
    let mut body = MAGIC.to_vec();
    body.push(0x12);
    varint(&mut body, u64::MAX);
    assert_eq!(decode_object(&body), Err(ProtobufError::Truncated));
}
