//! Real-world-shaped schemas: a trimmed cert-manager `Certificate` and a generated
//! Prometheus-operator-sized schema (0.5+ MB, 10+ levels, int-or-string, embedded resources,
//! preserve-unknown islands, map lists) with Gateway-API-style CEL rules.

use serde_json::{Value, json};

use super::tests::{messages, must_compile};

fn certificate() -> Value {
    let secret_ref = json!({"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "key": {"type": "string"}}});
    let usage_names: Vec<&str> = vec![
        "signing",
        "digital signature",
        "content commitment",
        "key encipherment",
        "key agreement",
        "data encipherment",
        "cert sign",
        "crl sign",
        "encipher only",
        "decipher only",
        "any",
        "server auth",
        "client auth",
        "code signing",
        "email protection",
        "s/mime",
        "ipsec end system",
        "ipsec tunnel",
        "ipsec user",
        "timestamping",
        "ocsp signing",
        "microsoft sgc",
        "netscape sgc",
    ];
    let usages = json!({"type": "array", "items": {"type": "string", "enum": usage_names}});
    let keystores = json!({"type": "object", "properties": {
                "jks": {"type": "object", "required": ["create"], "properties": {
                    "create": {"type": "boolean"}, "passwordSecretRef": secret_ref.clone()}},
                "pkcs12": {"type": "object", "required": ["create"], "properties": {
                    "create": {"type": "boolean"}, "passwordSecretRef": secret_ref,
                    "profile": {"type": "string", "enum": ["LegacyRC2", "LegacyDES", "Modern2023"]}}}}});
    json!({
      "type": "object",
      "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
          "type": "object",
          "required": ["issuerRef", "secretName"],
          "x-kubernetes-validations": [
            {"rule": "has(self.commonName) || has(self.dnsNames) || has(self.uris) || has(self.emailAddresses) || has(self.ipAddresses)",
             "message": "at least one of commonName, dnsNames, uris, emailAddresses or ipAddresses must be set"}
          ],
          "properties": {
            "commonName": {"type": "string", "maxLength": 64},
            "dnsNames": {"type": "array", "items": {"type": "string"}},
            "uris": {"type": "array", "items": {"type": "string"}},
            "emailAddresses": {"type": "array", "items": {"type": "string"}},
            "ipAddresses": {"type": "array", "items": {"type": "string"}},
            "duration": {"type": "string"},
            "renewBefore": {"type": "string"},
            "revisionHistoryLimit": {"type": "integer", "format": "int32"},
            "isCA": {"type": "boolean"},
            "secretName": {"type": "string"},
            "usages": usages,
            "issuerRef": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "kind": {"type": "string"}, "group": {"type": "string"}}},
            "privateKey": {"type": "object", "properties": {
                "algorithm": {"type": "string", "enum": ["RSA", "ECDSA", "Ed25519"]},
                "encoding": {"type": "string", "enum": ["PKCS1", "PKCS8"]},
                "rotationPolicy": {"type": "string", "enum": ["Never", "Always"]},
                "size": {"type": "integer"}}},
            "secretTemplate": {"type": "object", "properties": {
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "subject": {"type": "object", "properties": {
                "countries": {"type": "array", "items": {"type": "string"}},
                "organizations": {"type": "array", "items": {"type": "string"}},
                "serialNumber": {"type": "string"}}},
            "keystores": keystores
          }
        },
        "status": {"type": "object", "properties": {
          "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "required": ["status", "type"], "properties": {
              "lastTransitionTime": {"type": "string", "format": "date-time"},
              "message": {"type": "string"},
              "observedGeneration": {"type": "integer", "format": "int64"},
              "reason": {"type": "string"},
              "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
              "type": {"type": "string"}}}},
          "notAfter": {"type": "string", "format": "date-time"},
          "revision": {"type": "integer"}}}
      }
    })
}

#[test]
fn cert_manager_certificate() {
    let s = must_compile(certificate());
    let good = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c"},
        "spec": {"secretName": "tls", "dnsNames": ["a.example"], "issuerRef": {"name": "ca", "kind": "ClusterIssuer"},
                 "privateKey": {"algorithm": "ECDSA", "size": 256}, "usages": ["server auth"]},
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
    assert_eq!(messages(&s.validate(&good, None)), Vec::<String>::new());
    let mut bad = good.clone();
    bad["spec"] = json!({"secretName": "tls", "issuerRef": {}, "privateKey": {"algorithm": "DSA"}});
    assert_eq!(
        messages(&s.validate(&bad, None)),
        vec![
            "spec.issuerRef.name: Required value",
            "spec.privateKey.algorithm: Unsupported value: \"DSA\": supported values: \"RSA\", \"ECDSA\", \"Ed25519\"",
            "spec: Invalid value: \"object\": at least one of commonName, dnsNames, uris, emailAddresses or ipAddresses must be set",
        ]
    );
}

/// A pod-template-like subtree: containers (map list by name), int-or-string quantities,
/// probes, env, volumes with preserve-unknown islands.
fn pod_spec(depth: usize) -> Value {
    let quantity_map = json!({"type": "object", "additionalProperties": {
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$"}});
    let probe = json!({"type": "object", "properties": {
        "httpGet": {"type": "object", "required": ["port"], "properties": {
            "path": {"type": "string"}, "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "scheme": {"type": "string"}}},
        "periodSeconds": {"type": "integer", "format": "int32"},
        "failureThreshold": {"type": "integer", "format": "int32", "minimum": 1}}});
    let container = json!({"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "maxLength": 63},
        "image": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "env": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "value": {"type": "string"},
                "valueFrom": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
            "items": {"type": "object", "required": ["containerPort"], "properties": {
                "containerPort": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535},
                "protocol": {"type": "string", "default": "TCP", "enum": ["TCP", "UDP", "SCTP"]}}}},
        "resources": {"type": "object", "properties": {"limits": quantity_map.clone(), "requests": quantity_map}},
        "livenessProbe": probe.clone(), "readinessProbe": probe}});
    let mut spec = json!({"type": "object", "properties": {
        "containers": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": container.clone()},
        "initContainers": {"type": "array", "items": container},
        "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}, "x-kubernetes-map-type": "atomic"},
        "volumes": {"type": "array", "items": {"type": "object", "required": ["name"], "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"name": {"type": "string"}}}}
    }});
    if depth > 0 {
        spec["properties"]["nested"] = json!({"type": "object", "properties": {"template": {"type": "object",
            "properties": {"metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "spec": pod_spec(depth - 1)}}}});
    }
    spec
}

fn prometheus_like() -> Value {
    let mut props = serde_json::Map::new();
    for i in 0..40 {
        props.insert(format!("component{i}"), json!({"type": "object", "properties": {
            "replicas": {"type": "integer", "format": "int32", "minimum": 0},
            "podTemplate": pod_spec(3),
            "embedded": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
        }, "x-kubernetes-validations": [
            {"rule": "!has(self.replicas) || self.replicas <= 100", "message": "replicas must be at most 100"}
        ]}));
    }
    json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": props,
            "x-kubernetes-validations": [{"rule": "size(self) > 0", "message": "spec must not be empty"}]},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
}

#[test]
fn prometheus_sized_schema_compiles_and_validates() {
    let schema = prometheus_like();
    let size = serde_json::to_vec(&schema).map(|v| v.len()).unwrap_or(0);
    assert!(size > 500_000, "schema only {size} bytes");
    let t = std::time::Instant::now();
    let s = must_compile(schema);
    let compile = t.elapsed();
    let obj = json!({"apiVersion": "monitoring.example/v1", "kind": "Stack", "metadata": {"name": "s"},
        "spec": {"component3": {"replicas": 2, "embedded": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}},
            "podTemplate": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"cpu": "500m", "memory": 1024}},
                "ports": [{"containerPort": 80}],
                "livenessProbe": {"httpGet": {"port": "http"}}}],
              "nested": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "d"}]}}}}}}});
    let mut defaulted = obj.clone();
    s.apply_defaults(&mut defaulted);
    assert_eq!(
        defaulted["spec"]["component3"]["podTemplate"]["containers"][0]["ports"][0]["protocol"],
        "TCP"
    );
    let t = std::time::Instant::now();
    for _ in 0..100 {
        assert_eq!(
            messages(&s.validate(&defaulted, None)),
            Vec::<String>::new()
        );
    }
    let per_validation = t.elapsed() / 100;
    eprintln!(
        "prometheus-like schema: {size} bytes, compile {compile:?}, validate {per_validation:?}"
    );
    assert!(
        compile < std::time::Duration::from_secs(5),
        "compile took {compile:?}"
    );

    let mut bad = defaulted.clone();
    bad["spec"]["component3"]["replicas"] = json!(1000);
    bad["spec"]["component3"]["podTemplate"]["containers"][0]["resources"]["limits"]["cpu"] =
        json!("lots");
    bad["spec"]["component3"]["podTemplate"]["containers"][0]["ports"][0]["containerPort"] =
        json!(70000);
    let got = messages(&s.validate(&bad, None));
    assert_eq!(
        got,
        vec![
            "spec.component3.podTemplate.containers[0].resources.limits.cpu: Invalid value: \"lots\": spec.component3.podTemplate.containers[0].resources.limits.cpu in body should match '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$'",
            "spec.component3.podTemplate.containers[0].ports[0].containerPort: Invalid value: 70000: spec.component3.podTemplate.containers[0].ports[0].containerPort in body should be less than or equal to 65535",
            "spec.component3: Invalid value: \"object\": replicas must be at most 100",
        ]
    );
}

#[test]
fn fifty_properties_five_rules_validate_quickly() {
    let mut props = serde_json::Map::new();
    let mut spec = serde_json::Map::new();
    for i in 0..50 {
        props.insert(format!("f{i}"), json!({"type": "string", "maxLength": 64}));
        spec.insert(format!("f{i}"), json!(format!("value-{i}")));
    }
    let rules: Vec<Value> = (0..5)
        .map(|i| json!({"rule": format!("self.f{i}.startsWith('value') && self.f{}.size() < 60", i + 10)}))
        .collect();
    let s = must_compile(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props,
        "x-kubernetes-validations": rules}}}),
    );
    let obj = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "x"}, "spec": spec});
    let n = 2000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let mut o = obj.clone();
        s.prune(&mut o);
        s.apply_defaults(&mut o);
        assert!(s.validate(&o, None).is_empty());
    }
    let per = t.elapsed() / n;
    eprintln!("50 properties + 5 CEL rules: prune+default+validate {per:?} per object");
    assert!(per < std::time::Duration::from_millis(2), "{per:?}");
}
