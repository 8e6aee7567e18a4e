//! Encryption at rest (`--encryption-provider-config`, upstream
//! `apiserver/pkg/server/options/encryptionconfig` and `storage/value/encrypt`): an
//! `apiserver.config.k8s.io/v1` `EncryptionConfiguration` names, per set of resources, an
//! ordered list of providers (`identity`, `aescbc`, `aesgcm`, `secretbox`). The first provider
//! writes; every provider reads what carries its prefix (`k8s:enc:aescbc:v1:<key name>:`, as
//! upstream, so a store dump looks the same). It wraps the storage backend once
//! ([`ferrokube_storage::transform::TransformingStorage`]), so the embedded store and etcd hold
//! the same ciphertext.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use anyhow::{Context, bail};
use base64::Engine;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use ferrokube_machinery::resources::ResourceInfo;
use ferrokube_storage::Storage;
use ferrokube_storage::transform::{Transformer, TransformerSelector, TransformingStorage};
use ring::rand::SecureRandom;
use serde::Deserialize;

/// The configuration file.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EncryptionConfiguration {
    api_version: String,
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceConfiguration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceConfiguration {
    resources: Vec<String>,
    providers: Vec<ProviderConfiguration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfiguration {
    aescbc: Option<KeysConfig>,
    aesgcm: Option<KeysConfig>,
    secretbox: Option<KeysConfig>,
    identity: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysConfig {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    name: String,
    secret: String,
}

/// The cipher of one key.
#[derive(Clone)]
enum Cipher {
    Cbc(Vec<u8>),
    Gcm(Vec<u8>),
    Secretbox([u8; 32]),
}

/// One key of a provider with its stored-value prefix.
#[derive(Clone)]
struct KeyTransformer {
    prefix: Vec<u8>,
    cipher: Cipher,
}

/// A provider: identity or keys.
#[derive(Clone)]
enum Provider {
    Identity,
    Keys(Vec<KeyTransformer>),
}

/// What a set of resources is stored with (upstream's prefix transformer).
pub struct ProviderList {
    providers: Vec<Provider>,
}

const ENC_PREFIX: &[u8] = b"k8s:enc:";

fn random(n: usize) -> Result<Vec<u8>, String> {
    let mut v = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut v)
        .map_err(|_| "no randomness".to_string())?;
    Ok(v)
}

fn cbc_encrypt(key: &[u8], iv: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |_| "invalid key length".to_string();
    Ok(match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(bad)?
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, iv)
            .map_err(bad)?
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
        _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(bad)?
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
    })
}

fn cbc_decrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |_| "invalid key length".to_string();
    let unpad = |_| "invalid PKCS7 data (empty or not padded)".to_string();
    if data.is_empty() || !data.len().is_multiple_of(16) {
        return Err("the stored data is not a multiple of the block size".into());
    }
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(bad)?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(unpad),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
            .map_err(bad)?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(unpad),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(bad)?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(unpad),
    }
}

type Aes192Gcm = aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

fn gcm(key: &[u8], nonce: &[u8], payload: Payload<'_, '_>, seal: bool) -> Result<Vec<u8>, String> {
    let nonce = aes_gcm::Nonce::from_slice(nonce);
    let r = match key.len() {
        16 => {
            let c = aes_gcm::Aes128Gcm::new_from_slice(key).map_err(|e| e.to_string())?;
            if seal {
                c.encrypt(nonce, payload)
            } else {
                c.decrypt(nonce, payload)
            }
        }
        24 => {
            let c = Aes192Gcm::new_from_slice(key).map_err(|e| e.to_string())?;
            if seal {
                c.encrypt(nonce, payload)
            } else {
                c.decrypt(nonce, payload)
            }
        }
        _ => {
            let c = aes_gcm::Aes256Gcm::new_from_slice(key).map_err(|e| e.to_string())?;
            if seal {
                c.encrypt(nonce, payload)
            } else {
                c.decrypt(nonce, payload)
            }
        }
    };
    r.map_err(|_| "cipher: message authentication failed".to_string())
}

impl KeyTransformer {
    fn seal(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = self.prefix.clone();
        match &self.cipher {
            Cipher::Cbc(k) => {
                let iv = random(16)?;
                let ct = cbc_encrypt(k, &iv, plain)?;
                out.extend_from_slice(&iv);
                out.extend_from_slice(&ct);
            }
            Cipher::Gcm(k) => {
                let nonce = random(12)?;
                let ct = gcm(
                    k,
                    &nonce,
                    Payload {
                        msg: plain,
                        aad: key.as_bytes(),
                    },
                    true,
                )?;
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
            }
            Cipher::Secretbox(k) => {
                let nonce = random(24)?;
                let c = crypto_secretbox::XSalsa20Poly1305::new(k.into());
                let ct = c
                    .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), plain)
                    .map_err(|_| "secretbox: sealing failed".to_string())?;
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
            }
        }
        Ok(out)
    }

    /// The plain bytes of `body` (the stored value after this key's prefix).
    fn open(&self, key: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        match &self.cipher {
            Cipher::Cbc(k) => {
                if body.len() < 16 {
                    return Err("the stored data was shorter than the required size".into());
                }
                let (iv, data) = body.split_at(16);
                cbc_decrypt(k, iv, data)
            }
            Cipher::Gcm(k) => {
                if body.len() < 12 {
                    return Err("the stored data was shorter than the required size".into());
                }
                let (nonce, data) = body.split_at(12);
                gcm(
                    k,
                    nonce,
                    Payload {
                        msg: data,
                        aad: key.as_bytes(),
                    },
                    false,
                )
            }
            Cipher::Secretbox(k) => {
                if body.len() < 24 {
                    return Err("the stored data was shorter than the required size".into());
                }
                let (nonce, data) = body.split_at(24);
                crypto_secretbox::XSalsa20Poly1305::new(k.into())
                    .decrypt(crypto_secretbox::Nonce::from_slice(nonce), data)
                    .map_err(|_| "output array was not large enough for encryption".to_string())
            }
        }
    }
}

impl Transformer for ProviderList {
    fn seal_for_storage(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        match self.providers.first() {
            None | Some(Provider::Identity) => Ok(plain.to_vec()),
            Some(Provider::Keys(keys)) => match keys.first() {
                Some(k) => k.seal(key, plain),
                None => Err("no key to encrypt with".into()),
            },
        }
    }

    fn open_stored(&self, key: &str, stored: &[u8]) -> Result<Vec<u8>, String> {
        let mut identity = false;
        for p in &self.providers {
            match p {
                Provider::Identity => identity = true,
                Provider::Keys(keys) => {
                    for k in keys {
                        if let Some(body) = stored.strip_prefix(k.prefix.as_slice()) {
                            return k.open(key, body);
                        }
                    }
                }
            }
        }
        if identity {
            if stored.starts_with(ENC_PREFIX) {
                return Err("identity transformer tried to read encrypted data".into());
            }
            return Ok(stored.to_vec());
        }
        Err("no matching prefix found".into())
    }
}

/// A resource selector of one configuration entry.
#[derive(Debug, PartialEq)]
enum ResourceMatch {
    /// `secrets`, `deployments.apps`.
    Exact(String, String),
    /// `*.apps`, `*.` (the core group).
    Group(String),
    /// `*.*`.
    All,
}

fn parse_resource(s: &str) -> anyhow::Result<ResourceMatch> {
    if s == "*.*" {
        return Ok(ResourceMatch::All);
    }
    let (res, group) = s.split_once('.').unwrap_or((s, ""));
    if res == "*" {
        return Ok(ResourceMatch::Group(group.into()));
    }
    if res.is_empty() || res.contains('*') || group.contains('*') {
        bail!(
            "resources: Invalid value: {s:?}: resource name must be a plural, `*.group` or `*.*`"
        );
    }
    Ok(ResourceMatch::Exact(group.into(), res.into()))
}

/// Selects the provider list of a storage key.
pub struct Selector {
    /// Key prefixes of the built-in resources with their entry (first match in the file).
    prefixes: Vec<(String, usize)>,
    /// The `*.*` entry: every other key.
    all: Option<usize>,
    lists: Vec<ProviderList>,
}

impl TransformerSelector for Selector {
    fn select(&self, key: &str) -> Option<&dyn Transformer> {
        let idx = self
            .prefixes
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .map(|(_, i)| *i)
            .or(self.all)?;
        self.lists.get(idx).map(|l| l as &dyn Transformer)
    }
}

fn parse_keys(kind: &str, cfg: &KeysConfig) -> anyhow::Result<Provider> {
    if cfg.keys.is_empty() {
        bail!("{kind}.keys: Required value: keys must contain at least one key");
    }
    let mut out = Vec::new();
    for k in &cfg.keys {
        if k.name.is_empty() || k.name.contains(':') {
            bail!(
                "{kind}.keys.name: Invalid value: {:?}: key name must be non-empty and must not contain ':'",
                k.name
            );
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(k.secret.trim())
            .map_err(|_| anyhow::anyhow!("{kind}.keys.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded"))?;
        let cipher = match (kind, secret.len()) {
            ("aescbc", 16 | 24 | 32) => Cipher::Cbc(secret),
            ("aesgcm", 16 | 24 | 32) => Cipher::Gcm(secret),
            ("secretbox", 32) => {
                let mut a = [0u8; 32];
                a.copy_from_slice(&secret);
                Cipher::Secretbox(a)
            }
            ("secretbox", n) => bail!(
                "{kind}.keys.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {n}, expected 32"
            ),
            (_, n) => bail!(
                "{kind}.keys.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {n}, expected one of [16 24 32]"
            ),
        };
        out.push(KeyTransformer {
            prefix: format!("k8s:enc:{kind}:v1:{}:", k.name).into_bytes(),
            cipher,
        });
    }
    Ok(Provider::Keys(out))
}

/// Parses a configuration and builds the key selector for the built-in resources
/// (`prefix_of` gives a resource's key prefix).
pub fn parse(
    text: &str,
    builtins: &[ResourceInfo],
    prefix_of: impl Fn(&ResourceInfo) -> String,
) -> anyhow::Result<Selector> {
    let cfg: EncryptionConfiguration =
        serde_yaml::from_str(text).context("decoding the encryption configuration")?;
    if cfg.kind != "EncryptionConfiguration" || cfg.api_version != "apiserver.config.k8s.io/v1" {
        bail!(
            "no kind {:?} is registered for version {:?}: want apiserver.config.k8s.io/v1 EncryptionConfiguration",
            cfg.kind,
            cfg.api_version
        );
    }
    if cfg.resources.is_empty() {
        bail!(
            "resources: Required value: EncryptionConfiguration.Resources must contain at least one resource"
        );
    }
    let mut lists = Vec::new();
    let mut matches = Vec::new();
    for (i, rc) in cfg.resources.iter().enumerate() {
        if rc.providers.is_empty() {
            bail!("resources[{i}].providers: Required value: at least one provider is required");
        }
        let mut providers = Vec::new();
        for (j, p) in rc.providers.iter().enumerate() {
            let set = [
                p.aescbc.is_some(),
                p.aesgcm.is_some(),
                p.secretbox.is_some(),
                p.identity.is_some(),
                p.kms.is_some(),
            ];
            if set.iter().filter(|b| **b).count() != 1 {
                bail!(
                    "resources[{i}].providers[{j}]: Invalid value: more than one provider specified in a single element, should split into different list elements"
                );
            }
            providers.push(match p {
                ProviderConfiguration { aescbc: Some(k), .. } => parse_keys("aescbc", k)?,
                ProviderConfiguration { aesgcm: Some(k), .. } => parse_keys("aesgcm", k)?,
                ProviderConfiguration { secretbox: Some(k), .. } => parse_keys("secretbox", k)?,
                ProviderConfiguration { identity: Some(_), .. } => Provider::Identity,
                _ => bail!("resources[{i}].providers[{j}].kms: KMS providers are not supported by ferrokube"),
            });
        }
        for r in &rc.resources {
            matches.push((
                parse_resource(r).with_context(|| format!("resources[{i}]"))?,
                i,
            ));
        }
        lists.push(ProviderList { providers });
    }
    let mut prefixes = Vec::new();
    let mut all = None;
    for (m, i) in &matches {
        match m {
            ResourceMatch::All => {
                all.get_or_insert(*i);
            }
            ResourceMatch::Group(g) => {
                for b in builtins.iter().filter(|b| b.group == g.as_str()) {
                    prefixes.push((prefix_of(b), *i));
                }
            }
            ResourceMatch::Exact(g, r) => {
                for b in builtins
                    .iter()
                    .filter(|b| b.group == g.as_str() && b.plural == r.as_str())
                {
                    prefixes.push((prefix_of(b), *i));
                }
            }
        }
    }
    // First entry wins for a prefix; a longer prefix is checked before a shorter one.
    let mut seen = std::collections::HashSet::new();
    prefixes.retain(|(p, _)| seen.insert(p.clone()));
    prefixes.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
    Ok(Selector {
        prefixes,
        all,
        lists,
    })
}

/// Wraps the backend when `--encryption-provider-config` is given.
pub fn wrap(
    file: Option<&std::path::Path>,
    storage: Arc<dyn Storage>,
    builtins: &[ResourceInfo],
) -> anyhow::Result<Arc<dyn Storage>> {
    let Some(file) = file else {
        return Ok(storage);
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let selector = parse(&text, builtins, |info| {
        format!(
            "/registry/{}/",
            crate::registry::strategies::storage_segment(info)
        )
    })
    .with_context(|| {
        format!(
            "loading encryption provider configuration {}",
            file.display()
        )
    })?;
    tracing::info!(file = %file.display(), "encryption at rest enabled");
    Ok(Arc::new(TransformingStorage::new(
        storage,
        Arc::new(selector),
    )))
}

#[cfg(test)]
mod tests;
