//! `ferrokube snapshot save|restore`: an online snapshot of a server holding 10,000 objects,
//! taken while the server keeps serving writes, restored into a new data directory; a server
//! started on it shows every object with the same uid (kube-rs and kubectl).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use ferrokube_conformance::{ServerSpec, TestServer, ferrokube_bin, run_with_timeout};

const OBJECTS: usize = 10_000;

fn configmap(name: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".repeat(64))])),
        ..ConfigMap::default()
    }
}

async fn uids(api: &Api<ConfigMap>) -> BTreeMap<String, String> {
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => panic!("list configmaps: {e}"),
    };
    list.items
        .iter()
        .filter(|cm| {
            let n = cm.name_any();
            n.starts_with("cm-") || n.starts_with("during-")
        })
        .map(|cm| (cm.name_any(), cm.uid().unwrap_or_default()))
        .collect()
}

fn must_ferrokube(args: &[&str]) -> String {
    let mut cmd = Command::new(ferrokube_bin());
    cmd.args(args);
    let out = match run_with_timeout(cmd, None, Duration::from_secs(300)) {
        Ok(o) => o,
        Err(e) => panic!("ferrokube {args:?}: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "ferrokube {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_round_trips_ten_thousand_objects() {
    let server = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(server.kube_client().await, "default");
    let started = Instant::now();
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &configmap(format!("cm-{i:05}")))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .unwrap_or_else(|e| panic!("creating {OBJECTS} configmaps: {e}"));
    eprintln!("created {OBJECTS} configmaps in {:?}", started.elapsed());

    // Writes keep flowing while the snapshot is taken: the server keeps serving.
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut written = 0;
            for i in 0..200 {
                if api
                    .create(&PostParams::default(), &configmap(format!("during-{i:03}")))
                    .await
                    .is_ok()
                {
                    written += 1;
                }
            }
            written
        })
    };
    let file = std::env::temp_dir().join(format!(
        "ferrokube-snapshot-{}-{}.redb",
        std::process::id(),
        server.port()
    ));
    let file_s = file.display().to_string();
    let data_dir = server.data_dir().display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        must_ferrokube(&["snapshot", "save", &file_s, "--data-dir", &data_dir])
    })
    .await
    .expect("snapshot task");
    assert!(
        out.contains("online"),
        "the running server took the snapshot: {out}"
    );
    let written = writer.await.expect("writer");
    assert_eq!(written, 200, "every write during the snapshot succeeded");
    let before = uids(&api).await;
    assert_eq!(before.len(), OBJECTS + 200);

    let restored_dir = std::env::temp_dir().join(format!(
        "ferrokube-restored-{}-{}",
        std::process::id(),
        server.port()
    ));
    let out = must_ferrokube(&[
        "snapshot",
        "restore",
        &file.display().to_string(),
        "--data-dir",
        &restored_dir.display().to_string(),
    ]);
    eprintln!("{out}");
    let _ = std::fs::remove_file(&file);
    // Restoring over an existing store is refused.
    let mut again = Command::new(ferrokube_bin());
    again
        .args(["snapshot", "restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored_dir);
    let again = run_with_timeout(again, None, Duration::from_secs(60)).expect("run");
    assert!(
        !again.status.success(),
        "restore over an existing store must fail"
    );

    let restored = TestServer::start_with(ServerSpec {
        data_dir: Some(restored_dir),
        ..ServerSpec::default()
    });
    let restored_api: Api<ConfigMap> = Api::namespaced(restored.kube_client().await, "default");
    let after = uids(&restored_api).await;
    for i in 0..OBJECTS {
        let name = format!("cm-{i:05}");
        assert_eq!(
            after.get(&name),
            before.get(&name),
            "{name} has the same uid after restore"
        );
    }
    for (name, uid) in &after {
        assert_eq!(before.get(name), Some(uid), "{name} existed with this uid");
    }
    let during = after.keys().filter(|n| n.starts_with("during-")).count();
    eprintln!(
        "restored {} objects ({during} written during the snapshot)",
        after.len()
    );
    let names = restored.must_kubectl(["get", "configmaps", "-n", "default", "-o", "name"]);
    let cm_lines = names
        .lines()
        .filter(|l| l.starts_with("configmap/cm-"))
        .count();
    assert_eq!(cm_lines, OBJECTS, "kubectl sees every object");
}
