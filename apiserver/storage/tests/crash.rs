//! Crash safety: a child process creates, updates and deletes keys as fast as it can and
//! prints each acknowledged write; the parent SIGKILLs it mid-burst, reopens the store (which
//! replays its write-ahead log) and checks that every acknowledged write is there (and no
//! deleted key came back), that revisions continue, and that the store accepts writes.
//!
//! This file has its own `main` (`harness = false`): run with the env var
//! `FERROKUBE_CRASH_CHILD=<dir>` it is the child, otherwise the parent test.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrokube_storage::embedded::{DB_FILE_NAME, EmbeddedOptions, EmbeddedStore, snapshot};
use ferrokube_storage::{ListRequest, Storage};

const CHILD_ENV: &str = "FERROKUBE_CRASH_CHILD";

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        compaction_interval: None,
        ..EmbeddedOptions::default()
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => runtime.block_on(child(std::path::PathBuf::from(dir))),
        None => {
            runtime.block_on(parent());
            println!("test crash::acknowledged_writes_survive_sigkill ... ok");
        }
    }
}

/// Writes from 16 concurrent tasks forever, printing `put|del key rev` after each ack: each
/// key is created, then updated; every third one is then deleted.
async fn child(dir: std::path::PathBuf) {
    let store = EmbeddedStore::open(&dir, options())
        .await
        .expect("child open");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let pid = std::process::id();
    for task in 0..16 {
        let store: Arc<EmbeddedStore> = store.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/{pid}/{task:02}/{i:08}");
                let kv = store
                    .create(&key, Bytes::from(vec![b'x'; 200]))
                    .await
                    .expect("child create");
                if tx
                    .send(format!("put {} {}", kv.key, kv.mod_revision))
                    .is_err()
                {
                    return;
                }
                let kv = store
                    .update(&key, Bytes::from(vec![b'y'; 300]), kv.mod_revision)
                    .await
                    .expect("child update");
                if tx
                    .send(format!("put {} {}", kv.key, kv.mod_revision))
                    .is_err()
                {
                    return;
                }
                if i % 3 == 0 {
                    let gone = store
                        .delete(&key, Some(kv.mod_revision))
                        .await
                        .expect("child delete");
                    if tx.send(format!("del {key} {}", gone.mod_revision)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx); // the output ends when every task has stopped
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        // Printed only after the create was acknowledged (durable).
        writeln!(out, "{line}").expect("stdout");
        out.flush().expect("flush");
    }
}

async fn parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut acked: Vec<Ack> = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut reader = BufReader::new(stdout);
        let kill_after = 300 + round * 200;
        let started = Instant::now();
        for _ in 0..kill_after {
            let line = must_read_line(&mut reader).expect("child exited early");
            acked.push(parse(&line));
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "child too slow"
            );
        }
        // SIGKILL (std's `Child::kill` on Unix) mid-burst: the writer has batches in flight.
        child.kill().expect("kill -9 the child");
        // Complete lines the child printed before it died were acknowledged too.
        while let Some(line) = must_read_line(&mut reader) {
            acked.push(parse(&line));
        }
        let _ = child.wait();

        let max_acked = acked.iter().map(|a| a.rev).max().unwrap_or(0);
        if round == 0 {
            // An offline snapshot of the killed store holds every acknowledged write too (it
            // replays the write-ahead log first, as the next open would).
            let db_file = dir.path().join(DB_FILE_NAME);
            let snap = dir.path().join("after-kill.snapshot");
            let info = snapshot::save_offline(&db_file, &snap).expect("offline snapshot");
            assert!(
                info.revision >= max_acked,
                "offline snapshot at {} misses acknowledged writes up to {max_acked}",
                info.revision
            );
            std::fs::remove_file(&snap).expect("remove snapshot");
        }
        let started = Instant::now();
        let store = EmbeddedStore::open(dir.path(), options())
            .await
            .expect("reopen after kill");
        eprintln!(
            "round {round}: reopened after SIGKILL in {:?}, {} acknowledged keys so far",
            started.elapsed(),
            acked.len()
        );
        let current = store.current_revision().await.expect("rev");
        assert!(
            current >= max_acked,
            "revision went back: {current} < {max_acked}"
        );
        // The last acknowledged write of each key decides what must be there; a later write
        // that was in flight at the kill may have landed too (it was durable, not yet answered).
        let mut last: std::collections::BTreeMap<&str, &Ack> = Default::default();
        for a in &acked {
            last.insert(a.key.as_str(), a);
        }
        let (mut present, mut deleted) = (0, 0);
        for (key, a) in last {
            let got = store.get(key).await.expect("get");
            if a.deleted {
                assert!(
                    got.is_none(),
                    "{key} deleted at {} came back: {got:?}",
                    a.rev
                );
                deleted += 1;
                continue;
            }
            // Every third key is deleted after its update: that delete may have landed.
            let index: u64 = key
                .rsplit('/')
                .next()
                .and_then(|i| i.parse().ok())
                .expect("index");
            let deletable = index.is_multiple_of(3);
            match got {
                Some(kv) => {
                    assert!(
                        kv.mod_revision >= a.rev,
                        "{key}: acknowledged write at {} lost (found {})",
                        a.rev,
                        kv.mod_revision
                    );
                    // The acknowledged version is in the history too (replayed with its revision).
                    let at = store
                        .list(ListRequest {
                            prefix: key.to_owned(),
                            revision: a.rev,
                            limit: 1,
                            ..Default::default()
                        })
                        .await
                        .expect("list at revision");
                    assert_eq!(
                        at.items.first().map(|kv| kv.mod_revision),
                        Some(a.rev),
                        "{key} at {}",
                        a.rev
                    );
                    present += 1;
                }
                None => assert!(
                    deletable,
                    "acknowledged key {key} (rev {}) lost after SIGKILL",
                    a.rev
                ),
            }
        }
        eprintln!("round {round}: {present} keys present, {deleted} deleted as acknowledged");
        let kv = store
            .create(&format!("/after/{round}"), Bytes::from_static(b"ok"))
            .await
            .expect("write after crash");
        assert_eq!(kv.mod_revision, current + 1, "revisions continue");
        store.close().await;
    }
}

/// One complete (newline-terminated) line, or None at the end of the output.
fn must_read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(_) if line.ends_with('\n') => Some(line.trim_end().to_owned()),
        _ => None,
    }
}

/// One acknowledged write.
struct Ack {
    key: String,
    rev: i64,
    deleted: bool,
}

fn parse(line: &str) -> Ack {
    let mut parts = line.split(' ');
    let (Some(op), Some(key), Some(rev)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("`put|del key rev` line: {line}");
    };
    Ack {
        key: key.to_owned(),
        rev: rev.parse().expect("revision"),
        deleted: op == "del",
    }
}
