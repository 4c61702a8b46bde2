//! The verify path, shared by `POST /v1/keys/verify` and root-key authentication:
//! parse + checksum (no storage) → record cache → MAC → constant-time compare → policy.
//! Nothing beyond NOT_FOUND/MALFORMED is decided before the secret matched.

use std::sync::Arc;

use keyhaven_core::{KeyState, Verification, VerifyCode, policy};
use keyhaven_store::{KeyForVerify, Timestamp};

use crate::error::ApiError;
use crate::state::AppState;

/// A verification's result: the code and, once the secret matched, the key.
#[derive(Debug, Clone)]
pub struct Checked {
    pub code: VerifyCode,
    pub key: Option<Arc<KeyForVerify>>,
}

impl Checked {
    fn rejected(code: VerifyCode) -> Self {
        Self { code, key: None }
    }
}

/// Checks `key` (the whole presented key) against the store. `visible` decides whether
/// the caller may learn about the key's keyspace at all; outside it the key is NOT_FOUND.
pub async fn check(
    state: &AppState,
    key: &str,
    required_scopes: &[String],
    visible: impl FnOnce(&str) -> bool,
    now: Timestamp,
) -> Result<Checked, ApiError> {
    let Ok(parsed) = keyhaven_core::parse(key) else {
        return Ok(Checked::rejected(VerifyCode::Malformed));
    };
    let record = state
        .cache
        .get(state.store.as_ref(), parsed.key_id())
        .await?;
    let stored = record.as_ref().map(|r| &r.key.verifier);
    let matched = state
        .peppers
        .verify(parsed.key_id(), parsed.secret(), stored)
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    let (record, rehash) = match (matched, record) {
        (Verification::Valid { rehash }, Some(record))
            if record.keyspace_prefix == parsed.prefix() && visible(&record.key.keyspace_id) =>
        {
            (record, rehash)
        }
        _ => return Ok(Checked::rejected(VerifyCode::NotFound)),
    };
    if rehash {
        // The secret matched under an older pepper: store it under the newest, once, off
        // the request's path. The new verifier is computed here, where the secret is.
        let to = state.peppers.verifier(parsed.key_id(), parsed.secret());
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
    let key = &record.key;
    let code = policy::decide(
        KeyState {
            enabled: key.enabled,
            revoked: key.revoked_at.is_some(),
            expires_at: key.expires_at.map(|t| t.unix_timestamp()),
            grace_until: key
                .rotation
                .as_ref()
                .map(|r| r.grace_until.unix_timestamp()),
            scopes: &key.scopes,
        },
        required_scopes,
        now.unix_timestamp(),
    );
    Ok(Checked {
        code,
        key: Some(record),
    })
}
