//! The shared backend suite against a real etcd (Debian's `etcd-server`, started here on
//! loopback ports in a temporary directory): once over plain HTTP, once over TLS with client
//! certificates (CA, server and client certificates generated with rcgen), as production
//! etcd runs. Each check gets a fresh store: its own key prefix in the one etcd.
//!
//! Skips (with a loud message) only when no `etcd` binary exists; `hack/test.sh` installs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferrokube_storage::Storage;
use ferrokube_storage::etcd::{EtcdOptions, EtcdStore, EtcdTls};
use ferrokube_storage::testing;

/// The etcd binary: `$FERROKUBE_ETCD_BIN`, else `etcd` on PATH, else `/usr/bin/etcd`.
fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERROKUBE_ETCD_BIN") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from("/usr/bin/etcd");
        p.is_file().then_some(p)
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// PEM files of a test PKI.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn must_write(path: &Path, data: &str) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// CA, a serving certificate for 127.0.0.1/localhost and a client certificate, by rcgen.
fn make_pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "etcd-test-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |cn: &str, server: bool| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        if server {
            params.subject_alt_names = vec![
                SanType::IpAddress([127, 0, 0, 1].into()),
                SanType::DnsName("localhost".try_into().expect("dns name")),
            ];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let cert = params.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key_pem) = leaf("etcd-server", true);
    let (client_pem, client_key_pem) = leaf("ferrokube-apiserver", false);
    let pki = Pki {
        ca: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    };
    must_write(&pki.ca, &ca_cert.pem());
    must_write(&pki.server_cert, &server_pem);
    must_write(&pki.server_key, &server_key_pem);
    must_write(&pki.client_cert, &client_pem);
    must_write(&pki.client_key, &client_key_pem);
    pki
}

/// A single-member etcd on loopback, killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
    tls: Option<EtcdTls>,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    fn start(bin: &Path, with_tls: bool) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client_port, peer_port) = (free_port(), free_port());
        let scheme = if with_tls { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(bin);
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.path().join("etcd.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        let mut tls = None;
        if with_tls {
            let pki = make_pki(dir.path());
            cmd.arg(format!("--cert-file={}", pki.server_cert.display()))
                .arg(format!("--key-file={}", pki.server_key.display()))
                .arg(format!("--trusted-ca-file={}", pki.ca.display()))
                .arg("--client-cert-auth");
            let read = |p: &Path| std::fs::read(p).expect("read pem");
            tls = Some(EtcdTls {
                ca_pem: Some(read(&pki.ca)),
                client_cert_pem: Some(read(&pki.client_cert)),
                client_key_pem: Some(read(&pki.client_key)),
            });
        }
        let child = cmd.spawn().expect("spawn etcd");
        Etcd {
            child,
            endpoint,
            tls,
            _dir: dir,
        }
    }

    fn options(&self, prefix: String) -> EtcdOptions {
        EtcdOptions {
            endpoints: vec![self.endpoint.clone()],
            tls: self.tls.clone(),
            prefix,
            compaction_interval: None,
            request_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(2),
        }
    }

    /// Connects, retrying while etcd starts.
    async fn must_connect(&self, prefix: String) -> Arc<EtcdStore> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match EtcdStore::connect(self.options(prefix.clone())).await {
                Ok(store) => return store,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("etcd at {} did not come up: {e}", self.endpoint),
            }
        }
    }
}

fn must_etcd() -> Option<PathBuf> {
    let bin = etcd_binary();
    if bin.is_none() {
        eprintln!(
            "\n\n!!!!! SKIPPED: no etcd binary (install Debian's etcd-server: \
             hack/install-tools.sh --etcd). The etcd backend was NOT tested. !!!!!\n"
        );
    }
    bin
}

async fn run_suite(with_tls: bool) {
    let Some(bin) = must_etcd() else { return };
    let etcd = Etcd::start(&bin, with_tls);
    // Wait until it answers once, then hand out one prefix per check.
    drop(etcd.must_connect("/ready".into()).await);
    let n = AtomicUsize::new(0);
    testing::run_all(|| async {
        let prefix = format!("/suite-{}", n.fetch_add(1, Ordering::Relaxed));
        etcd.must_connect(prefix).await as Arc<dyn Storage>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_passes_the_shared_suite() {
    run_suite(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_with_tls_client_certificates_passes_the_shared_suite() {
    run_suite(true).await;
}

/// Without the client certificate, the TLS etcd refuses us: the certificates are really used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_tls_without_client_certificate_is_refused() {
    let Some(bin) = must_etcd() else { return };
    let etcd = Etcd::start(&bin, true);
    drop(etcd.must_connect("/ready".into()).await);
    let mut opts = etcd.options("/x".into());
    if let Some(tls) = opts.tls.as_mut() {
        tls.client_cert_pem = None;
        tls.client_key_pem = None;
    }
    opts.request_timeout = Duration::from_secs(3);
    match EtcdStore::connect(opts).await {
        Ok(_) => panic!("connected to a client-cert-auth etcd without a client certificate"),
        Err(e) => eprintln!("refused as expected: {e}"),
    }
}

/// A stopped etcd makes requests fail with `Unavailable` within the deadline; a restarted one
/// is used again by the same store without reconnecting by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_fails_cleanly_and_recovers() {
    use ferrokube_storage::StorageError;
    let Some(bin) = must_etcd() else { return };
    let mut etcd = Etcd::start(&bin, false);
    let mut opts = etcd.options("/outage".into());
    opts.request_timeout = Duration::from_secs(2);
    drop(etcd.must_connect("/ready".into()).await);
    let store = EtcdStore::connect(opts).await.expect("connect");
    testing::must_create(&*store, "/a", "1").await;
    // Stop (SIGSTOP keeps the port bound, like a hung member) and check the deadline.
    let pid = etcd.child.id().to_string();
    let stop = Command::new("kill").args(["-STOP", &pid]).status();
    assert!(stop.map(|s| s.success()).unwrap_or(false), "kill -STOP");
    let started = Instant::now();
    match store.get("/a").await {
        Err(StorageError::Unavailable(msg)) => eprintln!("unavailable as expected: {msg}"),
        other => panic!("expected Unavailable from a stopped etcd, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let cont = Command::new("kill").args(["-CONT", &pid]).status();
    assert!(cont.map(|s| s.success()).unwrap_or(false), "kill -CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.get("/a").await {
            Ok(Some(kv)) => {
                assert_eq!(&kv.value[..], b"1");
                break;
            }
            other if Instant::now() < deadline => {
                eprintln!("waiting for etcd to answer again: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("etcd did not answer after SIGCONT: {other:?}"),
        }
    }
    etcd.child.kill().ok();
}

/// `migrate` copies every key of an embedded store into etcd with values intact and every new
/// revision above the source's (resourceVersions never go backwards), and refuses a
/// non-empty target.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_from_embedded_keeps_revisions_monotonic() {
    use ferrokube_storage::embedded::{EmbeddedOptions, EmbeddedStore};
    use ferrokube_storage::etcd::migrate::migrate;
    use ferrokube_storage::{ListRequest, StorageError};
    let Some(bin) = must_etcd() else { return };
    let etcd = Etcd::start(&bin, false);
    let target = etcd.must_connect("/migrated".into()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            compaction_interval: None,
            ..EmbeddedOptions::fast()
        },
    )
    .await
    .expect("open embedded");
    // Enough writes that the source revision is far ahead of the fresh etcd's.
    for i in 0..300 {
        let key = format!("/registry/configmaps/default/cm-{}", i % 120);
        match source.get(&key).await.expect("get") {
            Some(kv) => {
                testing::must_update(&*source, &key, &format!("v{i}"), kv.mod_revision).await;
            }
            None => {
                testing::must_create(&*source, &key, &format!("v{i}")).await;
            }
        }
    }
    source
        .delete("/registry/configmaps/default/cm-7", None)
        .await
        .expect("delete");
    let all = |store: Arc<dyn Storage>| async move {
        store
            .list(ListRequest {
                prefix: "/registry/".into(),
                ..ListRequest::default()
            })
            .await
            .expect("list")
    };
    let before = all(source.clone()).await;
    let report = migrate(&*source, &target, "/registry/")
        .await
        .expect("migrate");
    assert_eq!(report.source_revision, before.revision);
    assert_eq!(report.keys, 119);
    assert!(
        report.lowest_new_revision > report.source_revision,
        "{report:?}"
    );
    let after = all(target.clone()).await;
    let pairs: Vec<(&str, &[u8])> = before
        .items
        .iter()
        .map(|kv| (&*kv.key, &kv.value[..]))
        .collect();
    let copied: Vec<(&str, &[u8])> = after
        .items
        .iter()
        .map(|kv| (&*kv.key, &kv.value[..]))
        .collect();
    assert_eq!(copied, pairs, "every key and value copied");
    assert!(
        after
            .items
            .iter()
            .all(|kv| kv.mod_revision > before.revision)
    );
    match migrate(&*source, &target, "/registry/").await {
        Err(StorageError::AlreadyExists { .. }) => {}
        other => panic!("a second migration into a non-empty prefix must be refused: {other:?}"),
    }
    source.close().await;
}
