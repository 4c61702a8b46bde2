//! The verify path, shared by `POST /v1/keys/verify` and root-key authentication:
//! parse + checksum (no storage) → record cache → MAC → constant-time compare → policy.
//! Nothing beyond NOT_FOUND/MALFORMED is decided before the secret matched.
//!
//! A key that is not in Keyhaven's format may be an imported one ([`check_imported`]):
//! only when the deployment holds imported keys is it looked up, by the lookups its
//! shape allows (`keyhaven_core::compat::lookups`); otherwise it is MALFORMED without
//! touching storage.

use std::sync::Arc;

use keyhaven_core::compat::{self, ImportFormat};
use keyhaven_core::{KeyState, SecretStr, Verification, VerifyCode, policy};
use keyhaven_store::{KeyForVerify, Timestamp};

use crate::error::ServiceError;
use crate::service::Service;

/// Longest non-native key string that is looked up as a possible imported key.
const MAX_IMPORTED_KEY_LEN: usize = 512;

/// A verification's result: the code and, once the secret matched, the key.
#[derive(Debug, Clone)]
pub struct Checked {
    pub code: VerifyCode,
    pub key: Option<Arc<KeyForVerify>>,
    /// The id of a stored key that was presented with a wrong secret (for its usage
    /// counts and failed-verification alerts; the caller is told NOT_FOUND).
    pub wrong_secret_for: Option<String>,
}

impl Checked {
    fn rejected(code: VerifyCode) -> Self {
        Self {
            code,
            key: None,
            wrong_secret_for: None,
        }
    }
}

/// Checks `key` (the whole presented key) against the store. `visible` decides whether
/// the caller may learn about the key's keyspace at all; outside it the key is NOT_FOUND.
pub async fn check(
    state: &Service,
    key: &str,
    required_scopes: &[String],
    visible: impl FnOnce(&str) -> bool,
    now: Timestamp,
) -> Result<Checked, ServiceError> {
    let Ok(parsed) = keyhaven_core::parse(key) else {
        return check_imported(state, key, required_scopes, visible, now).await;
    };
    let record = state
        .cache
        .get(state.store.as_ref(), parsed.key_id())
        .await?;
    let stored = record.as_ref().map(|r| &r.key.verifier);
    let matched = state
        .peppers
        .verify(parsed.key_id(), parsed.secret(), stored)
        .map_err(|e| ServiceError::Unexpected(e.into()))?;
    let (record, rehash) = match (matched, record) {
        (Verification::Valid { rehash }, Some(record))
            if record.keyspace_prefix == parsed.prefix()
                && record.key.import.is_none()
                && visible(&record.key.keyspace_id) =>
        {
            (record, rehash)
        }
        (Verification::Invalid, Some(record)) if record.keyspace_prefix == parsed.prefix() => {
            return Ok(Checked {
                wrong_secret_for: Some(record.key.key_id.clone()),
                ..Checked::rejected(VerifyCode::NotFound)
            });
        }
        _ => return Ok(Checked::rejected(VerifyCode::NotFound)),
    };
    if rehash {
        spawn_rehash(state, &record, parsed.secret());
    }
    Ok(decide(record, required_scopes, now))
}

/// A non-native key: an imported key, or MALFORMED.
async fn check_imported(
    state: &Service,
    key: &str,
    required_scopes: &[String],
    visible: impl FnOnce(&str) -> bool,
    now: Timestamp,
) -> Result<Checked, ServiceError> {
    if !state.has_imported_keys() || key.is_empty() || key.len() > MAX_IMPORTED_KEY_LEN {
        return Ok(Checked::rejected(VerifyCode::Malformed));
    }
    let store = state.store.as_ref();
    for (format, lookup) in compat::lookups(key, &state.peppers) {
        let Some(key_id) = state.cache.import_lookup(store, &lookup).await? else {
            continue;
        };
        let Some(record) = state.cache.get(store, &key_id).await? else {
            continue;
        };
        let Some(import) = &record.key.import else {
            continue;
        };
        let secret = SecretStr::new(key);
        let (matched, upgrade, rehash) = match &import.digest {
            Some(digest) => {
                // The pepper the import was stored under; an unknown version never matches.
                let ok = ImportFormat::parse(&import.format) == Some(format)
                    && state
                        .peppers
                        .get(record.key.verifier.version())
                        .is_some_and(|pepper| format.matches(key, digest, pepper));
                (ok, ok, false)
            }
            None => match state
                .peppers
                .verify(&record.key.key_id, secret, Some(&record.key.verifier))
                .map_err(|e| ServiceError::Unexpected(e.into()))?
            {
                Verification::Valid { rehash } => (true, false, rehash),
                Verification::Invalid => (false, false, false),
            },
        };
        if !matched || !visible(&record.key.keyspace_id) {
            return Ok(Checked::rejected(VerifyCode::NotFound));
        }
        if upgrade {
            // First successful verify of an imported key: store the native verifier of the
            // whole key string and forget the old digest.
            let to = state.peppers.verifier(&record.key.key_id, secret);
            let key_id = record.key.key_id.clone();
            let state = state.clone();
            tokio::spawn(async move {
                match state.store.complete_import(&key_id, &to).await {
                    Ok(_) => state.cache.invalidate(&key_id),
                    Err(e) => {
                        tracing::warn!(key_id, error = %e, "upgrading an imported key failed")
                    }
                }
            });
        } else if rehash {
            spawn_rehash(state, &record, secret);
        }
        return Ok(decide(record, required_scopes, now));
    }
    Ok(Checked::rejected(VerifyCode::Malformed))
}

/// The secret matched under an older pepper: store it under the newest, once, off the
/// request's path. The new verifier is computed here, where the secret is.
fn spawn_rehash(state: &Service, record: &KeyForVerify, secret: SecretStr<'_>) {
    let to = state.peppers.verifier(&record.key.key_id, secret);
    let from = record.key.verifier.version().get();
    let key_id = record.key.key_id.clone();
    let state = state.clone();
    tokio::spawn(async move {
        match state.store.rehash_key(&key_id, from, &to).await {
            Ok(_) => state.cache.invalidate(&key_id),
            Err(e) => {
                tracing::warn!(key_id, error = %e, "re-hashing a key to the newest pepper failed")
            }
        }
    });
}

/// The policy decision for a key whose secret matched.
fn decide(record: Arc<KeyForVerify>, required_scopes: &[String], now: Timestamp) -> Checked {
    let key = &record.key;
    let code = policy::decide(
        KeyState {
            enabled: key.enabled,
            revoked: key.revoked_at.is_some(),
            expires_at: record.effective_expiry().map(|t| t.unix_timestamp()),
            grace_until: key
                .rotation
                .as_ref()
                .map(|r| r.grace_until.unix_timestamp()),
            scopes: &key.scopes,
        },
        required_scopes,
        now.unix_timestamp(),
    );
    Checked {
        code,
        key: Some(record),
        wrong_secret_for: None,
    }
}
