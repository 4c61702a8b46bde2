//! GitHub's secret scanning partner protocol (`POST /v1/leaks/github`).
//!
//! GitHub sends a JSON array of `{token, type, url, source}` and signs the raw body:
//! `Github-Public-Key-Signature` is a base64 ASN.1 DER ECDSA P-256 SHA-256 signature,
//! made with the key named by `Github-Public-Key-Identifier`, one of GitHub's public
//! keys as configured ([`crate::github_keys`]).
//!
//! A batch is refused (nothing changes) when a header is missing, the key id is unknown
//! — including a key since removed from the file — the signature does not verify, or
//! the exact signed batch was delivered before (a replay). The answer is
//! `[{token_hash, token_type, label}]`: `token_hash` is the hex SHA-256 of the token, so
//! the secret never travels back.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;

use keyhaven_store::SeenBatch;

use super::{LeakLabel, Reported, Reporter, report, usable_url};
use crate::actor::Actor;
use crate::error::{Result, ServiceError};
pub use crate::github_keys::Refusal;
use crate::github_keys::{PublicKeys, check_signature};
use crate::service::Service;

/// Most tokens in one GitHub batch.
pub const MAX_GITHUB_TOKENS: usize = 20_000;

/// One match in a GitHub batch.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GithubMatch {
    /// The matched string (possibly a key).
    #[schema(value_type = String)]
    pub token: secrecy::SecretString,
    /// The secret type name registered with GitHub.
    #[serde(rename = "type")]
    pub token_type: String,
    /// Where GitHub found it.
    #[serde(default)]
    pub url: Option<String>,
    /// `content`, `commit`, `pull_request_description`, `npm`, …
    #[serde(default)]
    pub source: Option<String>,
}

/// The answer for one match, in GitHub's feedback format.
#[derive(Debug, Serialize, ToSchema)]
pub struct GithubVerdict {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: LeakLabel,
}

/// The signature headers of a GitHub request.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub key_id: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Before the body is read: whether the server takes GitHub batches at all, the
/// signature headers are there, and the key they name is one of GitHub's. Returns the
/// keys to check the signature with.
pub async fn signer(service: &Service, signed: Signed<'_>) -> Result<Result<PublicKeys, Refusal>> {
    let keys = &service.github_keys;
    if !keys.is_configured() {
        return Ok(Err(Refusal::NotConfigured));
    }
    let (Some(key_id), Some(_)) = (signed.key_id, signed.signature) else {
        return Ok(Err(Refusal::Unsigned));
    };
    let current = keys
        .current(key_id)
        .await
        .map_err(ServiceError::Unexpected)?;
    if !current.contains_key(key_id) {
        return Ok(Err(Refusal::UnknownKey));
    }
    Ok(Ok(current))
}

/// Handles one GitHub batch whose signer [`signer`] accepted: the signature over `body`,
/// replay, then [`report`] for every match. `Ok(Err(refusal))` is a refused batch
/// (nothing changed).
pub async fn handle(
    service: &Service,
    signed: Signed<'_>,
    keys: &PublicKeys,
    body: &[u8],
    client_ip: Option<std::net::IpAddr>,
) -> Result<Result<Vec<GithubVerdict>, Refusal>> {
    let (Some(key_id), Some(signature)) = (signed.key_id, signed.signature) else {
        return Ok(Err(Refusal::Unsigned));
    };
    if let Err(refusal) = check_signature(keys, key_id, signature, body) {
        return Ok(Err(refusal));
    }
    // The batch as signed content, not its signature: an ECDSA signature is random,
    // and `s` may be given in either form, so the same batch has many signatures.
    let digest: [u8; 32] = Sha256::new()
        .chain_update(key_id.as_bytes())
        .chain_update([0])
        .chain_update(body)
        .finalize()
        .into();
    if service.store.leak_batch_seen(&digest).await? {
        return Ok(Err(Refusal::Replayed));
    }
    // serde's message may quote the input (a token): say only where it went wrong.
    let matches: Vec<GithubMatch> = serde_json::from_slice(body).map_err(|e| {
        ServiceError::bad_request(
            "malformed_json",
            format!(
                "expected a JSON array of {{token, type, url, source}} (at line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    if matches.len() > MAX_GITHUB_TOKENS {
        return Err(ServiceError::invalid(format!(
            "at most {MAX_GITHUB_TOKENS} matches in one batch"
        )));
    }
    let items: Vec<Reported<'_>> = (matches.iter())
        .map(|m| Reported {
            token: secrecy::ExposeSecret::expose_secret(&m.token),
            url: m.url.as_deref().filter(|u| usable_url(u)),
        })
        .collect();
    let reporter = Reporter {
        source: "github",
        root_key_id: None,
    };
    let seen = SeenBatch {
        digest: &digest,
        at: service.clock.now(),
    };
    let actor = Actor::leak("github", client_ip);
    let outcomes = report(service, &actor, &items, reporter, Some(seen)).await?;
    Ok(Ok(matches
        .iter()
        .zip(items)
        .zip(outcomes)
        .map(|((m, item), outcome)| GithubVerdict {
            token_hash: hex::encode(Sha256::digest(item.token.as_bytes())),
            token_type: m.token_type.clone(),
            label: outcome.label,
        })
        .collect()))
}
