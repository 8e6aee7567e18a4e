//! Compact JWS (JWT) signing and verification with `ring` only (ES256 and RS256), the keys of
//! the service-account token issuer, and their JWKS form (upstream
//! `pkg/serviceaccount/jwt.go`, `openidmetadata.go`).
//!
//! Bounds: a token longer than [`MAX_TOKEN_BYTES`] is refused before any decoding; header and
//! claims are decoded only after the three-part shape is checked; nothing allocates from a
//! length the token states.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};
use sha2::Digest;

/// Longest bearer token any token authenticator looks at (upstream has no explicit cap; a
/// service-account token is ~1 KiB, HTTP header limits cut the rest).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a key or a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// The token is not three base64url parts of bounded size.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm or key this issuer does not have.
    #[error("no key matches the token's algorithm and key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// A key file holds nothing usable.
    #[error("{0}")]
    Key(String),
}

/// A private key that signs tokens.
pub enum SigningKey {
    Ec(signature::EcdsaKeyPair),
    Rsa(signature::RsaKeyPair),
}

/// A public key that verifies tokens.
#[derive(Clone, Debug)]
pub struct VerifyKey {
    /// `kid`: base64url(sha256(DER SubjectPublicKeyInfo)), as upstream.
    pub kid: String,
    /// `ES256` or `RS256`.
    pub alg: &'static str,
    /// The raw key ring verifies with (EC point, or DER RSAPublicKey).
    pub raw: Vec<u8>,
}

const EC_P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const RSA_ALG_ID: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// Reads one DER TLV: (tag, body, rest).
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 2 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn kid_of(spki_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(spki_der))
}

impl VerifyKey {
    fn ec(point: &[u8]) -> VerifyKey {
        let mut spki = EC_P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(point);
        VerifyKey {
            kid: kid_of(&spki),
            alg: "ES256",
            raw: point.to_vec(),
        }
    }

    fn rsa(rsa_public_der: &[u8]) -> VerifyKey {
        let mut bits = vec![0u8];
        bits.extend_from_slice(rsa_public_der);
        let mut body = RSA_ALG_ID.to_vec();
        body.extend(der_tlv(0x03, &bits));
        let spki = der_tlv(0x30, &body);
        VerifyKey {
            kid: kid_of(&spki),
            alg: "RS256",
            raw: rsa_public_der.to_vec(),
        }
    }

    /// From a DER SubjectPublicKeyInfo (EC P-256 or RSA).
    pub fn from_spki(der: &[u8]) -> Result<VerifyKey, JwtError> {
        if der.len() == EC_P256_SPKI_PREFIX.len() + 65 && der.starts_with(&EC_P256_SPKI_PREFIX) {
            return Ok(Self::ec(&der[EC_P256_SPKI_PREFIX.len()..]));
        }
        let bad = || JwtError::Key("unsupported public key (want EC P-256 or RSA)".into());
        let (_, spki, _) = der_read(der).ok_or_else(bad)?;
        let (_, alg, rest) = der_read(spki).ok_or_else(bad)?;
        if der_tlv(0x30, alg) != RSA_ALG_ID {
            return Err(bad());
        }
        let (tag, bits, _) = der_read(rest).ok_or_else(bad)?;
        if tag != 0x03 || bits.first() != Some(&0) {
            return Err(bad());
        }
        Ok(Self::rsa(&bits[1..]))
    }

    /// The JWK of this key (`use: sig`).
    pub fn jwk(&self) -> Value {
        match self.alg {
            "ES256" => json!({
                "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(self.raw.get(1..33).unwrap_or_default()),
                "y": URL_SAFE_NO_PAD.encode(self.raw.get(33..65).unwrap_or_default()),
            }),
            _ => {
                let (n, e) = der_read(&self.raw)
                    .and_then(|(_, seq, _)| {
                        let (_, n, rest) = der_read(seq)?;
                        let (_, e, _) = der_read(rest)?;
                        Some((n, e))
                    })
                    .unwrap_or_default();
                let strip = |b: &[u8]| {
                    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                    URL_SAFE_NO_PAD.encode(&b[i..])
                };
                json!({"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256", "n": strip(n), "e": strip(e)})
            }
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg {
            "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
            _ => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        signature::UnparsedPublicKey::new(alg, &self.raw)
            .verify(msg, sig)
            .is_ok()
    }
}

impl SigningKey {
    /// Generates a P-256 key; returns it with its PKCS#8 PEM (what `sa.key` holds).
    pub fn generate() -> Result<(SigningKey, String), JwtError> {
        let rng = SystemRandom::new();
        let doc = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .map_err(|_| JwtError::Key("generating a P-256 key failed".into()))?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok((Self::from_pem(&pem)?, pem))
    }

    /// From a PEM private key: PKCS#8 (EC P-256 or RSA) or PKCS#1 RSA.
    pub fn from_pem(pem: &str) -> Result<SigningKey, JwtError> {
        let rng = SystemRandom::new();
        for item in rustls_pemfile::read_all(&mut pem.as_bytes()) {
            match item.map_err(|e| JwtError::Key(format!("reading PEM: {e}")))? {
                rustls_pemfile::Item::Pkcs8Key(k) => {
                    let der = k.secret_pkcs8_der();
                    if let Ok(ec) = signature::EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        der,
                        &rng,
                    ) {
                        return Ok(SigningKey::Ec(ec));
                    }
                    return signature::RsaKeyPair::from_pkcs8(der)
                        .map(SigningKey::Rsa)
                        .map_err(|e| JwtError::Key(format!("PKCS#8 key: {e}")));
                }
                rustls_pemfile::Item::Pkcs1Key(k) => {
                    return signature::RsaKeyPair::from_der(k.secret_pkcs1_der())
                        .map(SigningKey::Rsa)
                        .map_err(|e| JwtError::Key(format!("RSA key: {e}")));
                }
                rustls_pemfile::Item::Sec1Key(_) => {
                    return Err(JwtError::Key(
                        "SEC1 EC keys are not supported: convert with `openssl pkcs8 -topk8 -nocrypt`"
                            .into(),
                    ));
                }
                _ => continue,
            }
        }
        Err(JwtError::Key("no private key found".into()))
    }

    /// The public half.
    pub fn verify_key(&self) -> VerifyKey {
        match self {
            SigningKey::Ec(k) => VerifyKey::ec(k.public_key().as_ref()),
            SigningKey::Rsa(k) => VerifyKey::rsa(k.public().as_ref()),
        }
    }

    /// Signs `claims` into a compact JWS.
    pub fn sign(&self, claims: &Value) -> Result<String, JwtError> {
        let vk = self.verify_key();
        let header = json!({"alg": vk.alg, "kid": vk.kid});
        let mut input = URL_SAFE_NO_PAD.encode(header.to_string());
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let rng = SystemRandom::new();
        let sig = match self {
            SigningKey::Ec(k) => k
                .sign(&rng, input.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| JwtError::Key("signing failed".into()))?,
            SigningKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| JwtError::Key("signing failed".into()))?;
                sig
            }
        };
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(input)
    }
}

/// Public keys from a PEM file: public keys, certificates' keys, or private keys' public halves
/// (upstream `--service-account-key-file` accepts all three).
pub fn verify_keys_from_pem(pem: &str) -> Result<Vec<VerifyKey>, JwtError> {
    let mut out = Vec::new();
    for item in rustls_pemfile::read_all(&mut pem.as_bytes()) {
        match item.map_err(|e| JwtError::Key(format!("reading PEM: {e}")))? {
            rustls_pemfile::Item::SubjectPublicKeyInfo(k) => {
                out.push(VerifyKey::from_spki(k.as_ref())?)
            }
            rustls_pemfile::Item::X509Certificate(c) => {
                let (_, cert) = x509_parser::parse_x509_certificate(c.as_ref())
                    .map_err(|e| JwtError::Key(format!("certificate: {e}")))?;
                out.push(VerifyKey::from_spki(cert.public_key().raw)?);
            }
            rustls_pemfile::Item::Pkcs8Key(_) | rustls_pemfile::Item::Pkcs1Key(_) => {}
            _ => {}
        }
    }
    if out.is_empty() {
        // A private key file: its public half.
        if let Ok(k) = SigningKey::from_pem(pem) {
            out.push(k.verify_key());
        }
    }
    if out.is_empty() {
        return Err(JwtError::Key("no public key found".into()));
    }
    Ok(out)
}

/// A token whose signature verified, with its decoded claims.
#[derive(Debug)]
pub struct Verified {
    pub claims: Value,
}

/// Cheap shape check: three non-empty base64url parts, bounded size, a JSON header.
/// Returns the decoded header when the token looks like a JWT at all.
pub fn peek_header(token: &str) -> Option<Value> {
    if token.len() > MAX_TOKEN_BYTES || token.bytes().filter(|b| *b == b'.').count() != 2 {
        return None;
    }
    let head = token.split('.').next()?;
    if head.is_empty() || head.len() > 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(head).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

/// Verifies the signature of `token` with one of `keys` (by `kid` when the header has one)
/// and decodes its claims.
pub fn verify(token: &str, keys: &[VerifyKey]) -> Result<Verified, JwtError> {
    let header = peek_header(token).ok_or(JwtError::Malformed)?;
    let (signed, sig_b64) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (_, claims_b64) = signed.split_once('.').ok_or(JwtError::Malformed)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| JwtError::Malformed)?;
    let mut candidates = keys
        .iter()
        .filter(|k| k.alg == alg && kid.is_none_or(|kid| kid.is_empty() || kid == k.kid))
        .peekable();
    if candidates.peek().is_none() {
        return Err(JwtError::UnknownKey);
    }
    if !candidates.any(|k| k.verify(signed.as_bytes(), &sig)) {
        return Err(JwtError::BadSignature);
    }
    let claims = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(Value::is_object)
        .ok_or(JwtError::Malformed)?;
    Ok(Verified { claims })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_round_trip_and_tamper() {
        let (k, pem) = SigningKey::generate().expect("key");
        let token = k.sign(&json!({"sub": "a"})).expect("sign");
        let keys = verify_keys_from_pem(&pem).expect("keys");
        assert_eq!(verify(&token, &keys).expect("verify").claims["sub"], "a");
        let mut bad = token.clone();
        bad.insert(bad.find('.').expect("dot") + 2, 'x');
        assert!(verify(&bad, &keys).is_err());
        let (other, _) = SigningKey::generate().expect("key");
        let forged = other.sign(&json!({"sub": "a"})).expect("sign");
        assert_eq!(verify(&forged, &keys).unwrap_err(), JwtError::UnknownKey);
        assert_eq!(keys[0].jwk()["kty"], "EC");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let (k, _) = SigningKey::generate().expect("key");
        let keys = vec![k.verify_key()];
        for t in [
            "",
            "a.b",
            "a.b.c.d",
            "!!!.b.c",
            "e30.e30.",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(verify(t, &keys).is_err(), "{t:.20}");
        }
        // alg none is never accepted.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#)
        );
        assert!(verify(&none, &keys).is_err());
    }
}
