//! PATCH like upstream: `kubectl patch --type=json|merge|strategic`, the strategic merge patch
//! directives through the server, client-side `kubectl apply` three-way merges, `kubectl edit`
//! with a scripted editor, and the 404/422 answers kubectl prints.
//!
//! Expected results follow upstream's strategic merge patch
//! (`staging/src/k8s.io/apimachinery/pkg/util/strategicpatch/patch.go`, cases of `patch_test.go`)
//! with the merge keys of the built-in types (`x-kubernetes-patch-merge-key` in upstream's
//! OpenAPI: containers by `name`, ports by `containerPort`, env by `name`).

use std::os::unix::fs::PermissionsExt;

use ferrokube_conformance::TestServer;
use serde_json::Value;

use crate::util::json;

/// A Deployment with two containers; the first has one env var and two ports.
fn deployment(name: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    app: {name}
  finalizers: [example.com/a, example.com/b]
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {name}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: app
          image: nginx:1.27
          env:
            - name: A
              value: "1"
          ports:
            - containerPort: 80
            - containerPort: 443
        - name: sidecar
          image: busybox:1.36
"#
    )
}

fn create(server: &TestServer, name: &str) {
    server.must_kubectl_stdin(["create", "-f", "-"], &deployment(name));
}

fn get(server: &TestServer, name: &str) -> Value {
    json(&server.must_kubectl(["get", "deployment", name, "-o", "json"]))
}

fn patch(server: &TestServer, name: &str, kind: &str, body: &str) -> String {
    server.must_kubectl(["patch", "deployment", name, "--type", kind, "-p", body])
}

fn container_names(d: &Value) -> Vec<String> {
    d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn ports(d: &Value, container: usize) -> Vec<i64> {
    d["spec"]["template"]["spec"]["containers"][container]["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["containerPort"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kubectl_patch_json_merge_and_strategic() {
    let server = TestServer::start();
    create(&server, "web");

    // Strategic: containers merge by name, env by name — the new var joins, the other container
    // and the existing var stay.
    let out = patch(
        &server,
        "web",
        "strategic",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"B","value":"2"}]}]}}}}"#,
    );
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let d = get(&server, "web");
    assert_eq!(container_names(&d), ["app", "sidecar"]);
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    let mut names: Vec<&str> = env
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default();
    names.sort_unstable();
    assert_eq!(names, ["A", "B"], "{env}");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );

    // Strategic `$patch: delete` on a list item removes one container port (merge key
    // containerPort), keeping the other.
    patch(
        &server,
        "web",
        "strategic",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","ports":[{"containerPort":443,"$patch":"delete"}]}]}}}}"#,
    );
    assert_eq!(ports(&get(&server, "web"), 0), [80]);

    // JSON merge patch replaces the whole list.
    patch(
        &server,
        "web",
        "merge",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"busybox:1.36"}]}}}}"#,
    );
    assert_eq!(container_names(&get(&server, "web")), ["only"]);

    // JSON patch (RFC 6902) including `test`.
    patch(
        &server,
        "web",
        "json",
        r#"[{"op":"replace","path":"/spec/replicas","value":3},{"op":"test","path":"/spec/replicas","value":3}]"#,
    );
    assert_eq!(get(&server, "web")["spec"]["replicas"], 3);
    let err = server.must_kubectl_fail([
        "patch",
        "deployment",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":7},{"op":"test","path":"/spec/replicas","value":5}]"#,
    ]);
    assert!(err.contains("The request is invalid"), "{err}");
    assert_eq!(
        get(&server, "web")["spec"]["replicas"],
        3,
        "a failed test op applies nothing"
    );

    // The scale subresource takes a strategic merge patch of autoscaling/v1 Scale.
    server.must_kubectl([
        "patch",
        "deployment",
        "web",
        "--subresource=scale",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ]);
    assert_eq!(get(&server, "web")["spec"]["replicas"], 4);
}

/// One strategic merge patch case: the patch, a JSON pointer into the patched Deployment and the
/// value upstream's `StrategicMergePatch` gives there.
struct Case {
    what: &'static str,
    patch: &'static str,
    pointer: &'static str,
    want: &'static str,
}

const CASES: &[Case] = &[
    Case {
        // patch_test.go "merge lists of maps": an unknown key is added; upstream's
        // mergeSortedSlice puts items the server does not have before the server-only ones.
        what: "add a container by merge key",
        patch: r#"{"spec":{"template":{"spec":{"containers":[{"name":"extra","image":"redis:7"}]}}}}"#,
        pointer: "/spec/template/spec/containers",
        want: r#"["extra","app","sidecar"]"#,
    },
    Case {
        // "delete all maps from merging list" (one item): `$patch: delete` in a list item.
        what: "$patch: delete of a container",
        patch: r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}}"#,
        pointer: "/spec/template/spec/containers",
        want: r#"["app"]"#,
    },
    Case {
        // "delete all items from merging list": `$patch: replace` as a list item.
        what: "$patch: replace of the container list",
        patch: r#"{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"redis:7"},{"$patch":"replace"}]}}}}"#,
        pointer: "/spec/template/spec/containers",
        want: r#"["only"]"#,
    },
    Case {
        // "$setElementOrder contains item that is not present in the list to be merged":
        // the order list decides the order.
        what: "$setElementOrder/containers",
        patch: r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"sidecar"},{"name":"app"}]}}}}"#,
        pointer: "/spec/template/spec/containers",
        want: r#"["sidecar","app"]"#,
    },
    Case {
        // "delete items in lists of scalars": the parallel deletion list.
        what: "$deleteFromPrimitiveList/finalizers",
        patch: r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/a"]}}"#,
        pointer: "/metadata/finalizers",
        want: r#"["example.com/b"]"#,
    },
    Case {
        // "unique scalars when merging lists": finalizers (patch strategy merge) are a union.
        what: "union of a primitive merge list",
        patch: r#"{"metadata":{"finalizers":["example.com/b","example.com/c"]}}"#,
        pointer: "/metadata/finalizers",
        want: r#"["example.com/a","example.com/b","example.com/c"]"#,
    },
    Case {
        // applyRetainKeysDirective: spec.strategy (patch strategy retainKeys) keeps only the
        // listed keys — what kubectl sends when switching to Recreate.
        what: "$retainKeys on spec.strategy",
        patch: r#"{"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}}"#,
        pointer: "/spec/strategy",
        want: r#"{"type":"Recreate"}"#,
    },
    Case {
        // "add key and delete all keys from map": `$patch: replace` in a map.
        what: "$patch: replace of the labels map",
        patch: r#"{"metadata":{"labels":{"$patch":"replace","only":"x"}}}"#,
        pointer: "/metadata/labels",
        want: r#"{"only":"x"}"#,
    },
    Case {
        // "delete field from nested map": null deletes a key of a free-form map.
        what: "null deletes a label",
        patch: r#"{"metadata":{"labels":{"app":null,"tier":"fe"}}}"#,
        pointer: "/metadata/labels",
        want: r#"{"tier":"fe"}"#,
    },
    Case {
        // Ports merge by containerPort (not a hand list: the schema's patch merge key).
        what: "ports merge by containerPort",
        patch: r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","ports":[{"containerPort":443,"name":"https"}]}]}}}}"#,
        pointer: "/spec/template/spec/containers/0/ports/1/name",
        want: r#""https""#,
    },
];

/// Container names when the pointer is the container list, else the value itself.
fn observed(d: &Value, pointer: &str) -> Value {
    let v = d.pointer(pointer).cloned().unwrap_or(Value::Null);
    if pointer.ends_with("/containers") {
        return Value::Array(container_names(d).into_iter().map(Value::String).collect());
    }
    v
}

#[test]
fn strategic_merge_patch_directives_table() {
    let server = TestServer::start();
    for (i, case) in CASES.iter().enumerate() {
        let name = format!("smp-{i}");
        create(&server, &name);
        patch(&server, &name, "strategic", case.patch);
        let got = observed(&get(&server, &name), case.pointer);
        let want: Value = json(case.want);
        assert_eq!(got, want, "{}: {}", case.what, case.patch);
    }
}

#[test]
fn strategic_merge_patch_errors() {
    let server = TestServer::start();
    create(&server, "bad");
    // (patch, what kubectl prints) — messages of upstream's mergepatch errors; the ones that
    // interpretStrategicMergePatchError does not map come back as a 500 without a reason.
    let cases = [
        (
            r#"{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}"#,
            "Error from server: map: map[image:x] does not contain declared merge key: name",
        ),
        (
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","$patch":"merge"}]}}}}"#,
            "Error from server: merging lists cannot yet be specified in the patch",
        ),
        (
            r#"{"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":{"maxSurge":2}}}}"#,
            "Error from server (BadRequest): invalid patch format of retainKeys",
        ),
        (
            r#"{"metadata":{"$deleteFromPrimitiveList":["x"]}}"#,
            "Error from server (BadRequest): invalid patch format of primitive list",
        ),
    ];
    for (body, want) in cases {
        let err = server.must_kubectl_fail(["patch", "deployment", "bad", "-p", body]);
        assert!(err.contains(want), "patch {body}\nwant {want}\ngot {err}");
    }
    // Nothing was written by the failed patches.
    assert_eq!(
        container_names(&get(&server, "bad")),
        ["app", "sidecar"],
        "failed patches must not change the object"
    );
}

#[test]
fn patch_missing_object_and_invalid_result() {
    let server = TestServer::start();
    for kind in ["strategic", "merge", "json"] {
        let body = if kind == "json" { "[]" } else { "{}" };
        let err =
            server.must_kubectl_fail(["patch", "deployment", "nope", "--type", kind, "-p", body]);
        assert!(
            err.contains(r#"Error from server (NotFound): deployments.apps "nope" not found"#),
            "{kind}: {err}"
        );
    }
    create(&server, "web");
    let err = server.must_kubectl_fail([
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"metadata":{"labels":{"bad key!":"x"}}}"#,
    ]);
    assert!(
        err.contains(
            r#"The Deployment "web" is invalid: metadata.labels: Invalid value: "bad key!""#
        ),
        "{err}"
    );
}

/// A Deployment manifest for apply: labels and container ports as given, no replicas.
fn applied(labels: &[(&str, &str)], ports: &[u16]) -> String {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    let ports: String = ports
        .iter()
        .map(|p| format!("            - containerPort: {p}\n"))
        .collect();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: site\n  labels:\n{labels}\
         spec:\n  selector:\n    matchLabels:\n      app: site\n  template:\n    metadata:\n      \
         labels:\n        app: site\n    spec:\n      containers:\n        - name: web\n          \
         image: nginx:1.27\n          ports:\n{ports}"
    )
}

#[test]
fn client_side_apply_three_way_merge() {
    let server = TestServer::start();
    let first = applied(&[("app", "site"), ("tier", "frontend")], &[80, 8080]);
    let out = server.must_kubectl_stdin(["apply", "-f", "-"], &first);
    assert_eq!(out.trim(), "deployment.apps/site created");

    // Other actors change the live object.
    server.must_kubectl(["annotate", "deployment", "site", "owner=team-b"]);
    server.must_kubectl(["label", "deployment", "site", "env=prod"]);
    server.must_kubectl(["scale", "deployment", "site", "--replicas=3"]);

    // The edited manifest drops one label and one port.
    let second = applied(&[("app", "site")], &[80]);
    let out = server.must_kubectl_stdin(["apply", "-f", "-"], &second);
    assert_eq!(out.trim(), "deployment.apps/site configured");

    let d = get(&server, "site");
    let labels = &d["metadata"]["labels"];
    assert!(
        labels.get("tier").is_none(),
        "removed label stays: {labels}"
    );
    assert_eq!(labels["app"], "site");
    assert_eq!(labels["env"], "prod", "another actor's label was lost");
    assert_eq!(
        d["metadata"]["annotations"]["owner"], "team-b",
        "another actor's annotation was lost"
    );
    assert_eq!(ports(&d, 0), [80], "removed port stays");
    assert_eq!(
        d["spec"]["replicas"], 3,
        "replicas set by kubectl scale was lost"
    );

    // The last-applied annotation now holds the second manifest.
    let last: Value = json(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap_or("{}"),
    );
    assert!(last["metadata"]["labels"].get("tier").is_none(), "{last}");

    // Applying it once more changes nothing.
    let out = server.must_kubectl_stdin(["apply", "-f", "-"], &second);
    assert_eq!(out.trim(), "deployment.apps/site unchanged");

    // Switching to Recreate: spec.strategy has patch strategy retainKeys, so kubectl sends
    // `$retainKeys: [type]` and the server clears the defaulted rollingUpdate.
    let live = get(&server, "site");
    assert_eq!(live["spec"]["strategy"]["type"], "RollingUpdate", "{live}");
    let third = second.replace(
        "spec:\n  selector:",
        "spec:\n  strategy:\n    type: Recreate\n  selector:",
    );
    let out = server.must_kubectl_stdin(["apply", "-f", "-"], &third);
    assert_eq!(out.trim(), "deployment.apps/site configured");
    let d = get(&server, "site");
    assert_eq!(
        d["spec"]["strategy"],
        serde_json::json!({"type": "Recreate"}),
        "$retainKeys must clear rollingUpdate"
    );
}

#[test]
fn kubectl_edit_with_scripted_editor() {
    let server = TestServer::start();
    create(&server, "web");
    let script = server.data_dir().join("editor.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsed -i -e 's/image: nginx:1.27/image: nginx:1.28/' -e 's/replicas: 1/replicas: 2/' \"$1\"\n",
    )
    .expect("write editor script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("chmod editor script");
    let output = server
        .kubectl_command(["edit", "deployment", "web"])
        .env("KUBE_EDITOR", &script)
        .env_remove("EDITOR")
        .output()
        .expect("run kubectl edit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl edit failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stdout.trim(), "deployment.apps/web edited", "{stderr}");
    let d = get(&server, "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(container_names(&d), ["app", "sidecar"]);
}
