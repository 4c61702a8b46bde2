//! GitHub's secret scanning public keys, and the check of a batch's signature: the keys
//! come from a file in the format of GitHub's
//! `https://api.github.com/meta/public_keys/secret_scanning`
//! (`leaks_github_public_keys_file`, read again whenever it changes) and optionally from
//! that URL (`leaks_github_public_keys_url`, fetched at most once a minute when an
//! unknown key id arrives, and hourly otherwise). Used by [`crate::leaks::github`];
//! kept apart from it because the [`Service`](crate::Service) holds the loaded keys.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use tokio::sync::Mutex;

/// How often a configured key URL is fetched at most for an unknown key id.
const REFETCH_AFTER_MISS: Duration = Duration::from_secs(60);
/// How long keys fetched from the URL are trusted before they are fetched again.
const URL_KEYS_TTL: Duration = Duration::from_secs(3_600);

/// Why a batch was refused (answered 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no GitHub public keys are configured (leaks_github_public_keys_file or _url)")]
    NotConfigured,
    #[error(
        "send the Github-Public-Key-Identifier and Github-Public-Key-Signature headers of \
         GitHub's secret scanning partner protocol"
    )]
    Unsigned,
    #[error("the public key this batch names is not (or no longer) one of GitHub's keys")]
    UnknownKey,
    #[error("the signature does not match the body and the named public key")]
    BadSignature,
    #[error("this signed batch was delivered before")]
    Replayed,
}

/// GitHub's public keys by identifier.
pub type PublicKeys = HashMap<String, VerifyingKey>;

/// GitHub's `public_keys` document.
#[derive(Debug, Deserialize)]
struct KeysDocument {
    public_keys: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
}

/// Parses a `public_keys` document; a key that is not a P-256 public key in PEM makes
/// the whole document unusable (a half-read file would silently drop a key).
pub fn parse_public_keys(document: &[u8]) -> anyhow::Result<PublicKeys> {
    let doc: KeysDocument = serde_json::from_slice(document)
        .map_err(|e| anyhow::anyhow!("not a GitHub public_keys document: {e}"))?;
    doc.public_keys
        .into_iter()
        .map(|entry| {
            let key = VerifyingKey::from_public_key_pem(entry.key.trim()).map_err(|e| {
                anyhow::anyhow!(
                    "key {} is not a P-256 public key in PEM: {e}",
                    entry.key_identifier
                )
            })?;
            Ok((entry.key_identifier, key))
        })
        .collect()
}

/// Checks GitHub's signature of `body`: the key named `key_id` must be in `keys` and the
/// base64 DER `signature` must verify over the raw bytes.
pub fn check_signature(
    keys: &PublicKeys,
    key_id: &str,
    signature: &str,
    body: &[u8],
) -> Result<(), Refusal> {
    let key = keys.get(key_id).ok_or(Refusal::UnknownKey)?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| Refusal::BadSignature)?;
    let signature = Signature::from_der(&der).map_err(|_| Refusal::BadSignature)?;
    // Either form of `s` is a valid ECDSA signature; GitHub does not promise low-S.
    let signature = signature.normalize_s();
    key.verify(body, &signature)
        .map_err(|_| Refusal::BadSignature)
}

/// The configured public keys, re-read when the file changes.
#[derive(Debug)]
pub struct GithubKeys {
    file: Option<PathBuf>,
    url: Option<String>,
    state: Mutex<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    /// The file's modification time and length when it was read.
    stamp: Option<(SystemTime, u64)>,
    from_file: Arc<PublicKeys>,
    from_url: Arc<PublicKeys>,
    fetched_at: Option<Instant>,
}

impl GithubKeys {
    pub fn new(file: Option<PathBuf>, url: Option<String>) -> Self {
        Self {
            file,
            url,
            state: Mutex::new(Loaded::default()),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.file.is_some() || self.url.is_some()
    }

    /// Reads the file (and fetches the URL) now, so `keyhaven serve` refuses to start
    /// on a missing or unusable file instead of failing GitHub's first batch. Returns how
    /// many keys are known.
    pub async fn load(&self) -> anyhow::Result<usize> {
        Ok(self.current("").await?.len())
    }

    /// The keys as of now: the file's (re-read if it changed), and the URL's (fetched
    /// when stale, or when `key_id` is unknown and the last fetch is a minute old).
    pub(crate) async fn current(&self, key_id: &str) -> anyhow::Result<PublicKeys> {
        let mut state = self.state.lock().await;
        if let Some(path) = &self.file {
            let meta = tokio::fs::metadata(path)
                .await
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let stamp = (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            );
            if state.stamp != Some(stamp) {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                let keys = parse_public_keys(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                tracing::info!(keys = keys.len(), file = %path.display(), "GitHub public keys loaded");
                state.from_file = Arc::new(keys);
                state.stamp = Some(stamp);
            }
        }
        if let Some(url) = &self.url {
            let age = state.fetched_at.map(|t| t.elapsed());
            let unknown =
                !state.from_file.contains_key(key_id) && !state.from_url.contains_key(key_id);
            let due = age.is_none_or(|a| a > URL_KEYS_TTL || (unknown && a > REFETCH_AFTER_MISS));
            if due {
                // Marked after the attempt (failed or not), so a fetch cut off by the
                // request's timeout is tried again by the next batch.
                match fetch(url).await {
                    Ok(keys) => state.from_url = Arc::new(keys),
                    Err(e) => tracing::warn!(error = %e, "fetching GitHub's public keys failed"),
                }
                state.fetched_at = Some(Instant::now());
            }
        }
        let mut keys = (*state.from_url).clone();
        keys.extend(state.from_file.iter().map(|(k, v)| (k.clone(), *v)));
        Ok(keys)
    }
}

async fn fetch(url: &str) -> anyhow::Result<PublicKeys> {
    // reqwest is built without a default crypto provider; ring is ours (see
    // `webhooks::delivery::client`).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .user_agent("keyhaven")
        .build()?;
    let response = client.get(url).send().await?.error_for_status()?;
    let body = response.bytes().await?;
    parse_public_keys(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in GitHub's documentation of the partner program (validation sample
    /// in Python): key id, PEM public key, payload and signature as published.
    const DOC_KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
    const DOC_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\n\
        kCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n\
        -----END PUBLIC KEY-----";
    const DOC_PAYLOAD: &[u8] = br#"[{"token":"some_token","type":"some_type","url":"some_url"}]"#;
    const DOC_SIGNATURE: &str = "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=";

    fn doc_keys() -> PublicKeys {
        let document = serde_json::json!({
            "public_keys": [{"key_identifier": DOC_KEY_ID, "key": DOC_PEM, "is_current": true}]
        });
        parse_public_keys(document.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_example_from_githubs_documentation_verifies() {
        assert_eq!(
            check_signature(&doc_keys(), DOC_KEY_ID, DOC_SIGNATURE, DOC_PAYLOAD),
            Ok(())
        );
    }

    #[test]
    fn a_changed_byte_another_key_id_or_a_broken_signature_is_refused() {
        let keys = doc_keys();
        let mut tampered = DOC_PAYLOAD.to_vec();
        tampered[12] ^= 1;
        assert_eq!(
            check_signature(&keys, DOC_KEY_ID, DOC_SIGNATURE, &tampered),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check_signature(&keys, "f9525bf0", DOC_SIGNATURE, DOC_PAYLOAD),
            Err(Refusal::UnknownKey)
        );
        for signature in [
            "",
            "not base64!",
            "MEUCIQ==",
            &DOC_SIGNATURE.replace('K', "L"),
        ] {
            assert_eq!(
                check_signature(&keys, DOC_KEY_ID, signature, DOC_PAYLOAD),
                Err(Refusal::BadSignature),
                "{signature}"
            );
        }
    }

    #[test]
    fn a_document_with_a_key_that_is_not_p256_pem_is_refused_whole() {
        let document = serde_json::json!({
            "public_keys": [
                {"key_identifier": DOC_KEY_ID, "key": DOC_PEM},
                {"key_identifier": "b", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}
            ]
        });
        let error = parse_public_keys(document.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("key b"), "{error}");
        assert!(parse_public_keys(b"[]").is_err());
    }
}
