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
use keyhaven_core::{PepperSet, PepperVersion};
use keyhaven_store::{AuditEvent, Change, Conflict, IdempotentResponse, StoreError, Timestamp};
use sha2::{Digest, Sha256};

use crate::actor::Actor;
use crate::error::{Result, ServiceError};
use crate::service::Service;

const PURPOSE: &str = "idempotent-responses/v1";
const NONCE_LEN: usize = 12;
/// Longest idempotency key (1-255 visible ASCII characters).
pub const MAX_KEY_LEN: usize = 255;

/// Whether `key` is acceptable as an idempotency key.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// An answer as the front door rendered it: what a retry of the same request gets back.
#[derive(Clone)]
pub struct Rendered {
    pub status: u16,
    /// May hold a new key's plaintext: zeroed when dropped, never logged.
    pub body: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("status", &self.status)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// How an idempotent operation ended.
#[derive(Debug)]
pub enum Done {
    /// The change was made now; its rendering was stored with it.
    Fresh(Rendered),
    /// The same request was already answered: its stored answer.
    Replayed(Rendered),
}

/// Idempotency for one request: look for an earlier answer first, then store this
/// answer in the same transaction as the change. A request without a key is never
/// replayed.
#[derive(Debug)]
pub struct Idempotent<'a> {
    service: &'a Service,
    actor: &'a str,
    key: Option<String>,
    request_hash: [u8; 32],
}

impl<'a> Idempotent<'a> {
    /// `key` is the caller's idempotency key (already checked with [`valid_key`]);
    /// `request_hash` identifies "the same request" ([`request_hash`]).
    pub fn new(
        service: &'a Service,
        actor: &'a Actor,
        key: Option<String>,
        request_hash: [u8; 32],
    ) -> Self {
        Self {
            service,
            actor: actor.id(),
            key,
            request_hash,
        }
    }

    /// No idempotency: every call makes its change.
    pub fn none(service: &'a Service, actor: &'a Actor) -> Self {
        Self::new(service, actor, None, [0; 32])
    }

    /// The stored answer if this request was already answered; `IdempotencyMismatch`
    /// if the key was used for a different request.
    pub async fn replay(&self) -> Result<Option<Rendered>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let Some(stored) = self
            .service
            .store
            .idempotent_response(self.actor, key)
            .await?
        else {
            return Ok(None);
        };
        let ttl = time::Duration::hours(
            i64::try_from(self.service.config.idempotency_ttl_hours).unwrap_or(i64::MAX / 7200),
        );
        if stored.created_at + ttl < self.service.clock.now() {
            return Ok(None);
        }
        if stored.request_hash != self.request_hash {
            return Err(ServiceError::IdempotencyMismatch(
                "This Idempotency-Key was already used for a different request.",
            ));
        }
        let body = open(&self.service.peppers, &stored.sealed_response)?;
        Ok(Some(Rendered {
            status: stored.status,
            body: zeroize::Zeroizing::new(body),
        }))
    }

    /// The record to store with the change, when the request carried a key.
    pub fn record(&self, answer: &Rendered, now: Timestamp) -> Result<Option<IdempotentResponse>> {
        self.recorder(now).record(answer)
    }

    /// [`Self::record`] as an owned value, for a change whose answer is rendered inside
    /// its own transaction (on a task of its own).
    pub fn recorder(&self, now: Timestamp) -> Recorder {
        Recorder {
            service: self.service.clone(),
            actor: self.actor.to_owned(),
            key: self.key.clone(),
            request_hash: self.request_hash,
            now,
        }
    }

    /// Ends an operation whose change was attempted with `answer` stored beside it: a
    /// concurrent twin of this request that won the key is replayed.
    pub async fn finish(&self, result: Result<(), StoreError>, answer: Rendered) -> Result<Done> {
        match result {
            Ok(()) => Ok(Done::Fresh(answer)),
            Err(e) => self.recover(e).await,
        }
    }

    /// Ends an operation whose change failed with `e`: a concurrent twin of this request
    /// that won the key is replayed; any other error is the answer.
    pub async fn recover(&self, e: StoreError) -> Result<Done> {
        match e {
            StoreError::Conflict(Conflict::IdempotencyKeyTaken) => match self.replay().await? {
                Some(stored) => Ok(Done::Replayed(stored)),
                None => Err(StoreError::Conflict(Conflict::IdempotencyKeyTaken).into()),
            },
            e => Err(e.into()),
        }
    }

    /// Writes an audited change with `answer` stored beside it, then ends the operation
    /// as [`Self::finish`] does: the epilogue of an idempotent create.
    pub async fn commit(
        &self,
        answer: Rendered,
        event: &AuditEvent,
        now: Timestamp,
        write: impl AsyncFnOnce(Change<'_>) -> Result<(), StoreError>,
    ) -> Result<Done> {
        let saved = self.record(&answer, now)?;
        let change = Change {
            audit: event,
            idempotency: saved.as_ref(),
        };
        let result = write(change).await;
        self.finish(result, answer).await
    }
}

/// Makes the idempotency record of one request from its answer (see
/// [`Idempotent::recorder`]).
#[derive(Debug, Clone)]
pub struct Recorder {
    service: Service,
    actor: String,
    key: Option<String>,
    request_hash: [u8; 32],
    now: Timestamp,
}

impl Recorder {
    /// The record to store with the change, when the request carried a key.
    pub fn record(&self, answer: &Rendered) -> Result<Option<IdempotentResponse>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        Ok(Some(IdempotentResponse {
            actor: self.actor.clone(),
            idempotency_key: key.clone(),
            request_hash: self.request_hash,
            status: answer.status,
            sealed_response: seal(&self.service.peppers, &answer.body)?,
            created_at: self.now,
        }))
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
