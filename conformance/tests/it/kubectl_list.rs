//! Listing with kubectl: chunking, label and field selectors, all namespaces, and `get -w`.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferrokube_conformance::TestServer;

use crate::util::{Table, header_line, names_of};

/// A multi-document manifest of ConfigMaps `prefix-0..n` with the given labels.
fn configmaps(prefix: &str, n: usize, labels: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {prefix}-{i}\n  labels: {labels}\ndata:\n  i: \"{i}\"\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn chunked_list_returns_every_object() {
    let server = TestServer::start();
    server.must_kubectl_stdin(
        ["apply", "-f", "-"],
        &configmaps("chunk", 7, "{batch: chunk}"),
    );
    // -v=6 logs each request, which shows that kubectl really paged.
    let out = server.kubectl([
        "get",
        "cm",
        "-l",
        "batch=chunk",
        "--chunk-size=2",
        "-o",
        "name",
        "-v=6",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let want: Vec<String> = (0..7).map(|i| format!("chunk-{i}")).collect();
    assert_eq!(names_of(&stdout), want, "stderr:\n{stderr}");
    assert!(stderr.contains("limit=2"), "no limit=2 request:\n{stderr}");
    assert!(
        stderr.contains("continue="),
        "no continue request:\n{stderr}"
    );
    // The table printer pages too.
    let table =
        Table::parse(&server.must_kubectl(["get", "cm", "-l", "batch=chunk", "--chunk-size=3"]));
    assert_eq!(table.rows.len(), 7, "{table:#?}");
}

#[test]
fn label_and_field_selectors() {
    let server = TestServer::start();
    let docs = [
        configmaps("sel-a", 1, "{app: x, tier: a}"),
        configmaps("sel-b", 1, "{app: x, tier: b}"),
        configmaps("sel-c", 1, "{app: 'y', tier: c}"),
        configmaps("sel-d", 1, "{app: 'y'}"),
    ]
    .join("---\n");
    server.must_kubectl_stdin(["apply", "-f", "-"], &docs);
    let get = |selector: &[&str]| {
        let mut args = vec!["get", "cm", "-o", "name"];
        args.extend_from_slice(selector);
        names_of(&server.must_kubectl(args))
    };
    assert_eq!(get(&["-l", "app=x"]), ["sel-a-0", "sel-b-0"]);
    assert_eq!(get(&["-l", "app!=x,app"]), ["sel-c-0", "sel-d-0"]);
    assert_eq!(get(&["-l", "tier in (a,c)"]), ["sel-a-0", "sel-c-0"]);
    assert_eq!(get(&["-l", "tier notin (a,c),app"]), ["sel-b-0", "sel-d-0"]);
    assert_eq!(get(&["-l", "app=y,!tier"]), ["sel-d-0"]);
    assert_eq!(
        get(&["--field-selector", "metadata.name=sel-b-0"]),
        ["sel-b-0"]
    );
    assert_eq!(
        get(&["-l", "app=x", "--field-selector", "metadata.name!=sel-a-0"]),
        ["sel-b-0"]
    );
    let none = server.kubectl(["get", "cm", "-l", "app=zzz"]);
    assert!(none.status.success());
    assert_eq!(
        String::from_utf8_lossy(&none.stderr).trim(),
        "No resources found in default namespace."
    );
    let err = server.must_kubectl_fail(["get", "cm", "--field-selector", "data.i=0"]);
    assert!(err.contains("field label not supported: data.i"), "{err}");
}

#[test]
fn all_namespaces_lists_across_namespaces() {
    let server = TestServer::start();
    server.must_kubectl(["create", "namespace", "other"]);
    server.must_kubectl(["create", "configmap", "everywhere", "--from-literal=a=b"]);
    server.must_kubectl([
        "create",
        "configmap",
        "everywhere",
        "-n",
        "other",
        "--from-literal=a=b",
    ]);
    let out = server.must_kubectl([
        "get",
        "cm",
        "-A",
        "--field-selector",
        "metadata.name=everywhere",
    ]);
    assert_eq!(header_line(&out), "NAMESPACE NAME DATA AGE", "{out}");
    let table = Table::parse(&out);
    let mut namespaces = table.names();
    namespaces.sort();
    assert_eq!(namespaces, ["default", "other"], "{out}");
    let only_other = server.must_kubectl(["get", "cm", "-n", "other", "-o", "name"]);
    assert!(
        only_other.lines().any(|l| l == "configmap/everywhere"),
        "{only_other}"
    );
}

#[test]
fn get_watch_prints_every_change() {
    let server = TestServer::start();
    server.must_kubectl(["create", "configmap", "watch-0", "--from-literal=a=1"]);
    let mut child = server.spawn_kubectl(["get", "cm", "-w", "--output-watch-events"]);
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
    let mut seen: Vec<String> = Vec::new();
    let expect = |event: &str, name: &str, data: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if seen.iter().any(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.len() >= 4 && cells[0] == event && cells[1] == name && cells[2] == data
            }) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "kubectl get -w never printed `{event} {name} {data}`; it printed:\n{}\nserver log:\n{}",
                    seen.join("\n"),
                    server.log_tail()
                ),
            }
        }
    };
    expect("ADDED", "watch-0", "1", &mut seen);
    server.must_kubectl(["create", "configmap", "watch-1", "--from-literal=a=1"]);
    expect("ADDED", "watch-1", "1", &mut seen);
    server.must_kubectl([
        "patch",
        "configmap",
        "watch-1",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ]);
    expect("MODIFIED", "watch-1", "2", &mut seen);
    server.must_kubectl(["delete", "configmap", "watch-1"]);
    expect("DELETED", "watch-1", "2", &mut seen);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        seen.first()
            .map(|h| h.split_whitespace().collect::<Vec<_>>().join(" ")),
        Some("EVENT NAME DATA AGE".to_string()),
        "{seen:#?}"
    );
}
