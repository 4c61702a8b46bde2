//! Revealing a recoverable key's plaintext again: audited before it is returned.

use keyhaven_store::{Conflict, StoreError};
use secrecy::SecretString;
use serde_json::Map;

use super::find;
use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::recoverable;
use crate::service::Service;

/// A recoverable key's plaintext (a secret type: zeroed when dropped, never logged).
#[derive(Debug)]
pub struct Revealed {
    pub key_id: String,
    pub plaintext: SecretString,
}

/// Opens a recoverable key that is not revoked. The reveal is written to the audit log
/// first: a reveal that cannot be recorded does not happen.
#[tracing::instrument(skip_all)]
pub async fn reveal(service: &Service, actor: &Actor, key_id: &str) -> Result<Revealed> {
    let found = find(service, actor, key_id).await?;
    let key = &found.key;
    let Some(sealed) = &key.sealed_key else {
        return Err(ServiceError::conflict(
            "not_recoverable",
            "The key was not created recoverable; Keyhaven cannot show it again.",
        ));
    };
    if key.revoked_at.is_some() {
        return Err(StoreError::Conflict(Conflict::AlreadyRevoked).into());
    }
    let master = service.master_keys.as_ref().ok_or_else(|| {
        ServiceError::Unexpected(anyhow::anyhow!(
            "a recoverable key exists but no master key is loaded"
        ))
    })?;
    let plaintext = recoverable::open(master, &key.key_id, sealed)?;
    let event = audit::event(
        actor,
        "key.reveal",
        ("key", key_id),
        Some(&key.keyspace_id),
        Map::new(),
        service.clock.now(),
    )?;
    service.store.append_audit(&event).await?;
    Ok(Revealed {
        key_id: key.key_id.clone(),
        plaintext: SecretString::from(plaintext.as_str()),
    })
}
