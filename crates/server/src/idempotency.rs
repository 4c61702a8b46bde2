//! `Idempotency-Key` on POST: the first request's response is stored (sealed) in the same
//! transaction as its change; a retry with the same key and the same request gets the
//! same status and body back, a retry with another request gets 422. Stored responses
//! are kept for `idempotency_ttl` (default 24 h).
//!
//! Responses are sealed with AES-256-GCM under a key derived from the pepper, because a
//! key-creation response contains the new key and the database must never hold one in a
//! readable form. Sealed blob: pepper version (4 bytes, big-endian) ‖ nonce (12) ‖
//! ciphertext+tag.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::Context as _;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use keyhaven_core::{PepperSet, PepperVersion};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

const PURPOSE: &str = "idempotent-responses/v1";
const NONCE_LEN: usize = 12;
pub const HEADER: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 255;

/// The request's `Idempotency-Key` header, if any: 1–255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(Self(None));
        };
        let text = value
            .to_str()
            .ok()
            .filter(|t| !t.is_empty() && t.len() <= MAX_KEY_LEN)
            .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1-255 visible ASCII characters.",
                )
            })?;
        Ok(Self(Some(text.to_owned())))
    }
}

/// What identifies "the same request": method, path and the exact body bytes.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().into()
}

pub fn seal(peppers: &PepperSet, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
    seal_for(PURPOSE, peppers, plaintext)
}

pub fn open(peppers: &PepperSet, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
    open_for(PURPOSE, peppers, sealed)
}

/// Seals `plaintext` under a key derived from the newest pepper for `purpose` (each use
/// has its own key: a sealed value of one kind never opens as another).
pub fn seal_for(purpose: &str, peppers: &PepperSet, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
    let pepper = peppers.newest();
    let key = pepper.derive_key(purpose);
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).context("building the cipher")?;
    let mut nonce = [0u8; NONCE_LEN];
    keyhaven_core::random::fill(&mut nonce).context("reading the OS random source")?;
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), plaintext)
        .map_err(|_| anyhow::anyhow!("sealing a response failed"))?;
    let mut out = Vec::with_capacity(4 + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&pepper.version().get().to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens what [`seal_for`] sealed for the same `purpose`.
pub fn open_for(purpose: &str, peppers: &PepperSet, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (version, rest) = sealed
        .split_at_checked(4)
        .context("sealed response too short")?;
    let (nonce, ciphertext) = rest
        .split_at_checked(NONCE_LEN)
        .context("sealed response too short")?;
    let version = <[u8; 4]>::try_from(version).context("sealed response too short")?;
    let version = PepperVersion::new(u32::from_be_bytes(version))
        .context("sealed response names pepper version 0")?;
    let pepper = peppers
        .get(version)
        .with_context(|| format!("pepper version {version} is not configured"))?;
    let key = pepper.derive_key(purpose);
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).context("building the cipher")?;
    let nonce = <[u8; NONCE_LEN]>::try_from(nonce).context("sealed response too short")?;
    cipher
        .decrypt(&Nonce::from(nonce), ciphertext)
        .map_err(|_| anyhow::anyhow!("a stored response failed authentication"))
}

#[cfg(test)]
mod tests {
    use keyhaven_core::Pepper;

    use super::*;

    fn peppers(entries: &[(u32, u8)]) -> PepperSet {
        PepperSet::new(
            entries
                .iter()
                .map(|&(v, b)| Pepper::new(PepperVersion::new(v).unwrap(), &[b; 32]))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn sealed_responses_open_with_the_same_pepper_and_survive_rotation() {
        let old = peppers(&[(1, 7)]);
        let sealed = seal(&old, b"{\"key\":\"acme_x\"}").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"acme_x"));
        assert_eq!(open(&old, &sealed).unwrap(), b"{\"key\":\"acme_x\"}");
        let rotated = peppers(&[(1, 7), (2, 9)]);
        assert_eq!(open(&rotated, &sealed).unwrap(), b"{\"key\":\"acme_x\"}");
    }

    #[test]
    fn tampered_or_truncated_blobs_fail() {
        let p = peppers(&[(1, 7)]);
        let mut sealed = seal(&p, b"hello").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(open(&p, &sealed).is_err());
        assert!(open(&p, &sealed[..10]).is_err());
        assert!(open(&peppers(&[(1, 8)]), &seal(&p, b"x").unwrap()).is_err());
    }
}
