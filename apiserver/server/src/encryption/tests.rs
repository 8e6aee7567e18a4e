use super::*;
use ferrokube_machinery::resources::builtin_resources;

fn b64(n: usize, fill: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode(vec![fill; n])
}

fn config(providers: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
    )
}

fn selector(text: &str) -> Selector {
    parse(text, builtin_resources(), |i| {
        format!(
            "/registry/{}/",
            crate::registry::strategies::storage_segment(i)
        )
    })
    .expect("configuration parses")
}

const KEY: &str = "/registry/secrets/default/s1";
const PLAIN: &[u8] = br#"{"kind":"Secret","data":{"password":"c2VjcmV0"}}"#;

#[test]
fn every_provider_round_trips_with_upstreams_prefix() {
    for (kind, len, prefix) in [
        ("aescbc", 32, "k8s:enc:aescbc:v1:k1:"),
        ("aescbc", 16, "k8s:enc:aescbc:v1:k1:"),
        ("aesgcm", 24, "k8s:enc:aesgcm:v1:k1:"),
        ("secretbox", 32, "k8s:enc:secretbox:v1:k1:"),
    ] {
        let sel = selector(&config(&format!(
            "  - {kind}:\n      keys:\n      - name: k1\n        secret: {}\n  - identity: {{}}\n",
            b64(len, 7)
        )));
        let t = sel.select(KEY).expect("secrets are selected");
        let stored = t.seal_for_storage(KEY, PLAIN).expect("seal");
        assert!(stored.starts_with(prefix.as_bytes()), "{kind}");
        assert!(
            !stored.windows(8).any(|w| w == b"c2VjcmV0"),
            "{kind}: plaintext visible"
        );
        assert_eq!(t.open_stored(KEY, &stored).expect("open"), PLAIN, "{kind}");
        // Two writes of the same value differ (random IV/nonce).
        assert_ne!(
            stored,
            t.seal_for_storage(KEY, PLAIN).expect("seal"),
            "{kind}"
        );
        // Identity is listed: plain values still read.
        assert_eq!(t.open_stored(KEY, PLAIN).expect("plain"), PLAIN);
        // Tampering is detected (AEAD) or garbles (CBC) but never panics.
        let mut bad = stored.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        if kind != "aescbc" {
            assert!(t.open_stored(KEY, &bad).is_err(), "{kind}");
        }
        let _ = t.open_stored(KEY, &stored[..prefix.len() + 3]);
    }
    // Other resources are not transformed.
    let sel = selector(&config(&format!(
        "  - aescbc:\n      keys:\n      - name: k1\n        secret: {}\n",
        b64(32, 1)
    )));
    assert!(sel.select("/registry/configmaps/default/c").is_none());
}

#[test]
fn aesgcm_binds_the_key() {
    let sel = selector(&config(&format!(
        "  - aesgcm:\n      keys:\n      - name: k1\n        secret: {}\n",
        b64(32, 3)
    )));
    let t = sel.select(KEY).expect("selected");
    let stored = t.seal_for_storage(KEY, PLAIN).expect("seal");
    assert!(
        t.open_stored("/registry/secrets/default/other", &stored)
            .is_err()
    );
}

#[test]
fn rotation_reads_old_key_writes_new() {
    let old = selector(&config(&format!(
        "  - aescbc:\n      keys:\n      - name: old\n        secret: {}\n",
        b64(32, 1)
    )));
    let stored_old = old
        .select(KEY)
        .expect("sel")
        .seal_for_storage(KEY, PLAIN)
        .expect("seal");
    let both = selector(&config(&format!(
        "  - aescbc:\n      keys:\n      - name: new\n        secret: {}\n      - name: old\n        secret: {}\n",
        b64(32, 2),
        b64(32, 1)
    )));
    let t = both.select(KEY).expect("sel");
    assert_eq!(
        t.open_stored(KEY, &stored_old).expect("old key reads"),
        PLAIN
    );
    assert!(
        t.seal_for_storage(KEY, PLAIN)
            .expect("seal")
            .starts_with(b"k8s:enc:aescbc:v1:new:")
    );
    // Without identity a plain value is refused; identity does not read ciphertext.
    assert_eq!(
        t.open_stored(KEY, PLAIN).expect_err("no identity"),
        "no matching prefix found"
    );
    let ident = selector(&config("  - identity: {}\n"));
    assert!(
        ident
            .select(KEY)
            .expect("sel")
            .open_stored(KEY, &stored_old)
            .is_err()
    );
}

#[test]
fn wildcards_select_groups() {
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*.apps']\n  providers:\n  - identity: {{}}\n- resources: ['*.*']\n  providers:\n  - secretbox:\n      keys:\n      - name: k\n        secret: {}\n",
        b64(32, 9)
    );
    let sel = selector(&text);
    let apps = sel.select("/registry/deployments/a/d").expect("apps");
    assert_eq!(apps.seal_for_storage("k", b"x").expect("id"), b"x");
    let any = sel
        .select("/registry/widgets.example.com/a/w")
        .expect("all");
    assert!(
        any.seal_for_storage("k", b"x")
            .expect("sb")
            .starts_with(b"k8s:enc:secretbox:v1:k:")
    );
}

#[test]
fn bad_configurations_are_refused() {
    for (text, want) in [
        (
            config(&format!(
                "  - aescbc:\n      keys:\n      - name: k\n        secret: {}\n",
                b64(20, 1)
            )),
            "expected one of [16 24 32]",
        ),
        (
            config(&format!(
                "  - secretbox:\n      keys:\n      - name: k\n        secret: {}\n",
                b64(16, 1)
            )),
            "expected 32",
        ),
        (
            config("  - aescbc:\n      keys:\n      - name: k\n        secret: '!!!'\n"),
            "base64",
        ),
        (config("  - aescbc:\n      keys: []\n"), "at least one key"),
        (config("  - kms: {name: x}\n"), "KMS"),
        (
            config("  - identity: {}\n    aescbc: {keys: []}\n"),
            "more than one provider",
        ),
        (
            "apiVersion: v1\nkind: EncryptionConfiguration\nresources: []\n".to_string(),
            "no kind",
        ),
    ] {
        let err = match parse(&text, builtin_resources(), |_| String::new()) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(want), "{text}: {err}");
    }
}
