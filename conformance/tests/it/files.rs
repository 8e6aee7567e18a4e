//! Files on disk: the data directory and everything secret in it are private from the first
//! byte, and generated certificates close to expiry are renewed on start (the CA kept).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use ferrokube_conformance::TestServer;

use crate::rawtls::sign_with_ca;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Seconds from now until the first certificate in `pem` expires.
fn expires_in(pem: &str) -> i64 {
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("X.509");
    cert.validity().not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp()
}

fn assert_private_files(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "data directory");
    assert_eq!(mode(&dir.join("pki")), 0o700, "pki directory");
    assert_eq!(mode(&dir.join("db")), 0o700, "db directory");
    assert_eq!(
        mode(&dir.join("db/ferrokube.redb")),
        0o600,
        "database (holds Secrets)"
    );
    assert_eq!(
        mode(&dir.join("admin.kubeconfig")),
        0o600,
        "admin.kubeconfig"
    );
    let mut keys = 0;
    for entry in std::fs::read_dir(dir.join("pki")).expect("pki dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(!name.ends_with(".tmp"), "left-over temporary file {name}");
        if name.ends_with(".key") {
            keys += 1;
            assert_eq!(mode(&path), 0o600, "{name}");
        }
    }
    assert!(keys >= 3, "CA, serving and admin keys at least: {keys}");
}

/// `stat` of the data directory, keys, kubeconfig and database: 0700 / 0600. The test harness
/// creates the data directory 0755 before the server starts: the server narrows it.
#[test]
fn data_directory_keys_kubeconfig_and_database_are_private() {
    let server = TestServer::start();
    assert_private_files(server.data_dir());
}

/// A serving and an admin certificate that expire within 30 days are issued again on start
/// (logged); the CA is kept, a certificate valid for long is kept, and the new admin
/// kubeconfig works.
#[test]
fn certificates_expiring_within_30_days_are_renewed_on_restart() {
    let mut server = TestServer::start();
    let dir = server.data_dir().to_owned();
    let pki = dir.join("pki");
    let ca = read(&pki.join("ca.crt"));
    let admin_before = read(&pki.join("admin.crt"));

    // A plain restart keeps a certificate valid for a year.
    server.restart();
    assert_eq!(
        read(&pki.join("admin.crt")),
        admin_before,
        "valid admin certificate kept"
    );

    let status = server.stop();
    assert!(status.success(), "{status}");
    let (admin_crt, admin_key) =
        sign_with_ca(&pki, "kubernetes-admin", &["system:masters"], 10, false);
    std::fs::write(pki.join("admin.crt"), &admin_crt).expect("writing admin.crt");
    std::fs::write(pki.join("admin.key"), &admin_key).expect("writing admin.key");
    let (serving_crt, serving_key) = sign_with_ca(&pki, "ferrokube-apiserver", &[], 10, true);
    std::fs::write(pki.join("serving.crt"), format!("{serving_crt}{ca}")).expect("serving.crt");
    std::fs::write(pki.join("serving.key"), &serving_key).expect("serving.key");
    assert!(expires_in(&admin_crt) < 11 * 86_400);

    server.start_again();
    let admin_after = read(&pki.join("admin.crt"));
    let serving_after = read(&pki.join("serving.crt"));
    assert_ne!(admin_after, admin_crt, "admin certificate renewed");
    assert_ne!(
        serving_after,
        format!("{serving_crt}{ca}"),
        "serving certificate renewed"
    );
    for (name, pem) in [("admin", &admin_after), ("serving", &serving_after)] {
        let left = expires_in(pem);
        assert!(left > 300 * 86_400, "{name}: {left} s left");
    }
    assert_eq!(read(&pki.join("ca.crt")), ca, "the CA is kept");
    let log = read(&server.log_path());
    assert!(
        log.matches("expires within 30 days").count() >= 2,
        "renewals are logged:\n{}",
        server.log_tail()
    );
    // The rewritten kubeconfig carries the new admin certificate and works.
    let out = server.must_kubectl(["get", "namespace", "default", "-o", "name"]);
    assert_eq!(out.trim(), "namespace/default");
    assert_private_files(&dir);
    std::thread::sleep(Duration::from_millis(10));
}
