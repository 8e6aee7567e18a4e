//! Crash safety: a child process creates keys as fast as it can and prints each acknowledged
//! one; the parent SIGKILLs it mid-burst, reopens the store and checks that every acknowledged
//! key is there, that revisions continue, and that the store accepts writes.
//!
//! This file has its own `main` (`harness = false`): run with the env var
//! `FERROKUBE_CRASH_CHILD=<dir>` it is the child, otherwise the parent test.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrokube_storage::Storage;
use ferrokube_storage::embedded::{EmbeddedOptions, EmbeddedStore};

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

/// Creates keys from 16 concurrent tasks forever, printing `key rev` after each ack.
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
                if tx.send(format!("{} {}", kv.key, kv.mod_revision)).is_err() {
                    return;
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
    let mut acked: Vec<(String, i64)> = Vec::new();
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
        let max_acked = acked.iter().map(|(_, r)| *r).max().unwrap_or(0);
        assert!(
            current >= max_acked,
            "revision went back: {current} < {max_acked}"
        );
        for (key, rev) in &acked {
            let kv =
                store.get(key).await.expect("get").unwrap_or_else(|| {
                    panic!("acknowledged key {key} (rev {rev}) lost after SIGKILL")
                });
            assert_eq!(kv.mod_revision, *rev, "{key}");
        }
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

fn parse(line: &str) -> (String, i64) {
    let (key, rev) = line.split_once(' ').expect("`key rev` line");
    (key.to_owned(), rev.parse().expect("revision"))
}
