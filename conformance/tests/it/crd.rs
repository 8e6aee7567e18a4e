//! CustomResourceDefinitions served (issue 10): conditions, discovery, printer columns,
//! short names and categories, selectable fields, `/status` and `/scale`, two versions with
//! `conversion: None`, watch, explain, the cleanup finalizer, namespace deletion, restarts,
//! and a Helm chart shipping a CRD — all with stock kubectl v1.35 and helm v4.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;

use crate::util::{Table, json};

/// A CRD with two versions (v1 stored), status + scale, printer columns, short names,
/// categories and a selectable field.
pub const WIDGETS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all, gadgets]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    selectableFields:
    - jsonPath: .spec.color
    additionalPrinterColumns:
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    - name: Size
      type: integer
      priority: 1
      jsonPath: .spec.size
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is a thing with a color.
        properties:
          spec:
            type: object
            description: The desired widget.
            properties:
              color:
                type: string
                description: The color of the widget.
              replicas:
                type: integer
              size:
                type: integer
          status:
            type: object
            properties:
              replicas:
                type: integer
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

fn widget(name: &str, color: &str, replicas: i64) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  color: {color}\n  replicas: {replicas}\n  size: 7\n"
    )
}

fn install_widgets(server: &TestServer) {
    server.must_kubectl_stdin(["apply", "-f", "-"], WIDGETS);
    server.must_kubectl([
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]);
}

/// Retries `f` for up to 30 s (discovery caches and controllers settle asynchronously).
fn eventually(what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn crd_is_established_and_served_with_its_names_columns_and_subresources() {
    let server = TestServer::start();
    install_widgets(&server);
    let crd = json(&server.must_kubectl(["get", "crd", "widgets.example.com", "-o", "json"]));
    let conds = crd["status"]["conditions"].as_array().expect("conditions");
    let cond = |t: &str| {
        conds
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(cond("NamesAccepted")["status"], "True", "{crd:#}");
    assert_eq!(cond("NamesAccepted")["reason"], "NoConflicts");
    assert_eq!(cond("Established")["status"], "True");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["storedVersions"][0], "v1");

    let res = server.must_kubectl(["api-resources", "--api-group=example.com"]);
    assert!(
        res.contains("widgets") && res.contains("wd") && res.contains("Widget"),
        "{res}"
    );

    server.must_kubectl_stdin(["apply", "-f", "-"], &widget("w1", "red", 2));
    server.must_kubectl_stdin(["apply", "-f", "-"], &widget("w2", "blue", 1));
    let t = Table::parse(&server.must_kubectl(["get", "widgets"]));
    assert_eq!(t.names(), ["w1", "w2"]);
    assert_eq!(t.cell("w1", "REPLICAS"), "2");
    assert_eq!(t.cell("w1", "COLOR"), "red");
    assert!(
        t.cell("w1", "AGE").ends_with('s'),
        "age: {}",
        t.cell("w1", "AGE")
    );
    let wide = Table::parse(&server.must_kubectl(["get", "wd", "-o", "wide"]));
    assert_eq!(
        wide.cell("w2", "SIZE"),
        "7",
        "priority-1 columns show with -o wide"
    );
    let by_category = server.must_kubectl(["get", "gadgets"]);
    assert!(by_category.contains("w1"), "{by_category}");
    let all = server.must_kubectl(["get", "all"]);
    assert!(all.contains("widget.example.com/w1"), "{all}");
    let red = server.must_kubectl([
        "get",
        "widgets",
        "--field-selector=spec.color=red",
        "-o",
        "name",
    ]);
    assert_eq!(red.trim(), "widget.example.com/w1");
    let err = server.must_kubectl_fail(["get", "widgets", "--field-selector=spec.size=7"]);
    assert!(
        err.contains("field label not supported: spec.size"),
        "{err}"
    );

    // Scale through /scale.
    server.must_kubectl(["scale", "widget/w1", "--replicas=5"]);
    let w1 = json(&server.must_kubectl(["get", "widget", "w1", "-o", "json"]));
    assert_eq!(w1["spec"]["replicas"], 5);
    assert_eq!(
        w1["metadata"]["generation"], 2,
        "a spec change bumps the generation"
    );

    // Status only through /status.
    server.must_kubectl([
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":9}}"#,
    ]);
    let w1 = json(&server.must_kubectl(["get", "widget", "w1", "-o", "json"]));
    assert!(
        w1["status"]["replicas"].is_null(),
        "the main resource ignores status: {w1:#}"
    );
    server.must_kubectl([
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":4}}"#,
    ]);
    let w1 = json(&server.must_kubectl(["get", "widget", "w1", "-o", "json"]));
    assert_eq!(w1["status"]["replicas"], 4);
    assert_eq!(
        w1["metadata"]["generation"], 2,
        "status writes keep the generation"
    );
    let scale = json(&server.must_kubectl([
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
    ]));
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["replicas"], 4);

    // Strategic merge patch is not for custom resources (415), JSON patch is.
    let err = server.must_kubectl_fail([
        "patch",
        "widget",
        "w1",
        "--type=strategic",
        "-p",
        r#"{"spec":{"color":"green"}}"#,
    ]);
    assert!(
        err.contains("the body of the request was in an unknown format"),
        "{err}"
    );
    server.must_kubectl([
        "patch",
        "widget",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/color","value":"green"}]"#,
    ]);

    // Both versions read the same object (conversion: None rewrites apiVersion).
    let beta =
        json(&server.must_kubectl(["get", "widgets.v1beta1.example.com", "w1", "-o", "json"]));
    assert_eq!(beta["apiVersion"], "example.com/v1beta1");
    assert_eq!(beta["spec"]["color"], "green");
    let v1 = json(&server.must_kubectl(["get", "widgets.v1.example.com", "w1", "-o", "json"]));
    assert_eq!(v1["apiVersion"], "example.com/v1");
}

#[test]
fn crd_watch_delete_and_recreate() {
    let server = TestServer::start();
    install_widgets(&server);
    server.must_kubectl_stdin(["apply", "-f", "-"], &widget("w1", "red", 1));
    let mut child = server.spawn_kubectl(["get", "widgets", "-w", "--output-watch-events"]);
    let (tx, rx) = mpsc::channel::<String>();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut seen = Vec::new();
    let mut expect = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !seen.iter().any(|l: &String| l.contains(want)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => panic!("watch never printed {want:?}: {seen:?}"),
            }
        }
    };
    expect("ADDED");
    server.must_kubectl_stdin(["apply", "-f", "-"], &widget("w2", "blue", 1));
    expect("w2");
    server.must_kubectl(["delete", "widget", "w2"]);
    expect("DELETED");
    let _ = child.kill();
    let _ = child.wait();

    // Deleting the CRD deletes its custom resources first, then stops serving it.
    server.must_kubectl(["delete", "crd", "widgets.example.com", "--timeout=60s"]);
    eventually("the CRD is gone", || {
        let out = server.kubectl(["get", "crd", "widgets.example.com"]);
        if out.status.success() {
            Err("still there".into())
        } else {
            Ok(())
        }
    });
    let raw = server.kubectl([
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets",
    ]);
    assert!(!raw.status.success(), "no longer served");
    install_widgets(&server);
    eventually("re-created CRD serves again, empty", || {
        let out = server.kubectl(["get", "widgets", "-o", "name"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{text} {}", String::from_utf8_lossy(&out.stderr)))
        }
    });
}

#[test]
fn conflicting_crd_names_are_refused_by_condition_and_survive_restart() {
    let mut server = TestServer::start();
    install_widgets(&server);
    let other = WIDGETS
        .replace("widgets.example.com", "gizmos.example.com")
        .replace("plural: widgets", "plural: gizmos")
        .replace("singular: widget", "singular: gizmo");
    server.must_kubectl_stdin(["apply", "-f", "-"], &other);
    eventually("NamesAccepted=False", || {
        let crd = json(&server.must_kubectl(["get", "crd", "gizmos.example.com", "-o", "json"]));
        let conds = crd["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let named = conds
            .iter()
            .find(|c| c["type"] == "NamesAccepted")
            .cloned()
            .unwrap_or_default();
        // Upstream checks plural, singular, short names, kind, list kind in that order and
        // reports the last conflict.
        if named["status"] == "False" && named["reason"] == "ListKindConflict" {
            assert_eq!(named["message"], "\"WidgetList\" is already in use");
            let est = conds
                .iter()
                .find(|c| c["type"] == "Established")
                .cloned()
                .unwrap_or_default();
            assert_eq!(est["status"], "False");
            Ok(())
        } else {
            Err(format!("{crd:#}"))
        }
    });
    server.must_kubectl_stdin(["apply", "-f", "-"], &widget("w1", "red", 1));
    server.restart();
    let t = Table::parse(&server.must_kubectl(["get", "widgets"]));
    assert_eq!(t.names(), ["w1"], "served again after a restart");
    let err = server.must_kubectl_fail(["get", "gizmos"]);
    assert!(
        err.contains("the server doesn't have a resource type \"gizmos\""),
        "{err}"
    );
}

#[test]
fn explain_and_openapi_show_the_crd_schema() {
    let server = TestServer::start();
    let before = server.must_kubectl(["get", "--raw", "/openapi/v3"]);
    install_widgets(&server);
    eventually("the v3 index lists the group-version", || {
        let idx = server.must_kubectl(["get", "--raw", "/openapi/v3"]);
        if idx.contains("apis/example.com/v1") && idx != before {
            Ok(())
        } else {
            Err(idx)
        }
    });
    let out = server.must_kubectl(["explain", "widgets.spec"]);
    assert!(out.contains("The desired widget."), "{out}");
    assert!(
        out.contains("color") && out.contains("The color of the widget."),
        "{out}"
    );
    let out = server.must_kubectl(["explain", "widgets", "--recursive"]);
    assert!(out.contains("A Widget is a thing with a color."), "{out}");
    assert!(out.contains("replicas"), "{out}");
    let v2 = server.must_kubectl(["get", "--raw", "/openapi/v2"]);
    assert!(v2.contains("com.example.v1.Widget"), "v2 lists the kind");

    server.must_kubectl(["delete", "crd", "widgets.example.com"]);
    eventually("the group-version leaves the v3 index", || {
        let idx = server.must_kubectl(["get", "--raw", "/openapi/v3"]);
        if idx.contains("apis/example.com/v1") {
            Err(idx)
        } else {
            Ok(())
        }
    });
}

#[test]
fn namespace_deletion_deletes_custom_resources() {
    let server = TestServer::start();
    install_widgets(&server);
    server.must_kubectl(["create", "namespace", "scratch"]);
    server.must_kubectl_stdin(
        ["apply", "-n", "scratch", "-f", "-"],
        &widget("w1", "red", 1),
    );
    server.must_kubectl(["delete", "namespace", "scratch", "--timeout=60s"]);
    let out = server.must_kubectl(["get", "widgets", "-A", "-o", "name"]);
    assert!(out.trim().is_empty(), "{out}");
}

#[test]
fn helm_chart_with_a_crd_installs_and_uninstalls() {
    let server = TestServer::start();
    let chart = server.data_dir().join("charts/widgets");
    std::fs::create_dir_all(chart.join("crds")).expect("crds dir");
    std::fs::create_dir_all(chart.join("templates")).expect("templates dir");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: widgets\nversion: 0.1.0\n",
    )
    .expect("Chart.yaml");
    std::fs::write(chart.join("crds/widgets.yaml"), WIDGETS).expect("crd");
    std::fs::write(
        chart.join("templates/widget.yaml"),
        widget("from-helm", "teal", 3),
    )
    .expect("template");
    let out = server.must_helm(["install".as_ref(), "wd".as_ref(), chart.as_os_str()]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let w = json(&server.must_kubectl(["get", "widget", "from-helm", "-o", "json"]));
    assert_eq!(w["spec"]["color"], "teal");
    let out = server.must_helm(["uninstall", "wd"]);
    assert!(out.contains("uninstalled"), "{out}");
    let err = server.must_kubectl_fail(["get", "widget", "from-helm"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

const GAUGES: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gauges.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gauges, kind: Gauge}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.level <= 5 || self.mode == 'manual'"
              message: high levels need manual mode
            properties:
              level: {type: integer, minimum: 0, maximum: 10}
              mode: {type: string, default: auto, enum: [auto, manual]}
"#;

fn gauge(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Gauge\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

#[test]
fn custom_resources_are_pruned_defaulted_and_validated_by_their_schema() {
    let server = TestServer::start();
    server.must_kubectl_stdin(["apply", "-f", "-"], GAUGES);
    server.must_kubectl([
        "wait",
        "--for=condition=Established",
        "crd/gauges.example.com",
    ]);

    server.must_kubectl_stdin(["apply", "-f", "-"], &gauge("g1", "  level: 3\n"));
    let g = json(&server.must_kubectl(["get", "gauge", "g1", "-o", "json"]));
    assert_eq!(g["spec"]["mode"], "auto", "default applied: {g:#}");

    let out = server.kubectl_stdin(["apply", "-f", "-"], &gauge("g2", "  level: 7\n"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a CEL rule refuses it");
    assert!(
        err.contains("The Gauge \"g2\" is invalid")
            && err.contains("spec: Invalid value")
            && err.contains("high levels need manual mode"),
        "{err}"
    );
    let out = server.kubectl_stdin(
        ["apply", "-f", "-"],
        &gauge("g3", "  level: 11\n  mode: manual\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "spec.level: Invalid value: 11: spec.level in body should be less than or equal to 10"
        ),
        "{err}"
    );

    let out = server.kubectl_stdin(
        ["apply", "--validate=strict", "-f", "-"],
        &gauge("g4", "  level: 1\n  extra: 1\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown field \"spec.extra\""),
        "{err}"
    );
    server.must_kubectl_stdin(
        ["apply", "--validate=false", "-f", "-"],
        &gauge("g4", "  level: 1\n  extra: 1\n"),
    );
    let g = json(&server.must_kubectl(["get", "gauge", "g4", "-o", "json"]));
    assert!(
        g["spec"].get("extra").is_none(),
        "unknown field pruned: {g:#}"
    );
}

/// A CRD of the size of the big real-world ones (~0.5 MB of schema, deep nesting,
/// int-or-string, preserve-unknown-fields islands) applies server-side and serves.
#[test]
fn big_crd_applies_server_side() {
    let server = TestServer::start();
    let mut props = String::new();
    for i in 0..600 {
        props.push_str(&format!(
            "                  field{i}:\n                    type: object\n                    description: {desc}\n                    properties:\n                      port: {{x-kubernetes-int-or-string: true, anyOf: [{{type: integer}}, {{type: string}}]}}\n                      extra: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n                      nested: {{type: object, properties: {{a: {{type: object, properties: {{b: {{type: object, properties: {{c: {{type: string}}}}}}}}}}}}}}\n",
            desc = "x".repeat(500)
        ));
    }
    let crd = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: bigs.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {{plural: bigs, kind: Big}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n              all:\n                type: object\n                properties:\n{props}"
    );
    assert!(crd.len() > 500_000, "{}", crd.len());
    server.must_kubectl_stdin(["apply", "--server-side", "-f", "-"], &crd);
    server.must_kubectl([
        "wait",
        "--for=condition=Established",
        "crd/bigs.example.com",
    ]);
    let cr = "apiVersion: example.com/v1\nkind: Big\nmetadata:\n  name: b1\nspec:\n  all:\n    field7:\n      port: http\n      extra: {anything: [1, 2]}\n      nested: {a: {b: {c: deep}}}\n";
    server.must_kubectl_stdin(["apply", "--server-side", "-f", "-"], cr);
    let b = json(&server.must_kubectl(["get", "big", "b1", "-o", "json"]));
    assert_eq!(b["spec"]["all"]["field7"]["nested"]["a"]["b"]["c"], "deep");
    assert_eq!(b["spec"]["all"]["field7"]["extra"]["anything"][1], 2);
    let bad = cr.replace("port: http", "port: {no: map}");
    let out = server.kubectl_stdin(["apply", "--server-side", "-f", "-"], &bad);
    assert!(!out.status.success(), "int-or-string refuses an object");
}
