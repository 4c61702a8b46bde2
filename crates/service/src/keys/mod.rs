//! Operations on keys: create (the only time the plaintext exists outside the caller),
//! update, revoke, rotate, delete, reveal, import, and the reads. Keys in keyspaces the
//! actor may not see, and root keys themselves, are `NotFound` here exactly like keys
//! that do not exist.
//!
//! Every change is written with its audit event in one transaction, and the verify
//! cache is invalidated before the operation returns ([`to_completion`]).

mod change;

use std::future::Future;

use keyhaven_core::KeyId;
use keyhaven_store::{KeyForVerify, StoreError};

pub use self::change::{RevokeKey, delete, revoke};
use crate::actor::Actor;
use crate::error::{Result, ServiceError};
use crate::service::Service;

/// A key the actor may see, with its keyspace, or `NotFound`.
pub async fn find(service: &Service, actor: &Actor, key_id: &str) -> Result<KeyForVerify> {
    if KeyId::parse(key_id).is_none() {
        return Err(ServiceError::NotFound);
    }
    match service.store.key_for_verify(key_id).await? {
        Some(k) if actor.sees_keyspace(&k.key.keyspace_id) => Ok(k),
        _ => Err(ServiceError::NotFound),
    }
}

/// Runs a key mutation and then invalidates `key_ids` in the verify cache on a task of
/// its own, so both finish even if the caller is cut off (timeout, client gone) while
/// the database commits: otherwise a committed revoke could stay cached as VALID.
pub(crate) async fn to_completion(
    service: &Service,
    key_ids: Vec<String>,
    mutation: impl Future<Output = Result<(), StoreError>> + Send + 'static,
) -> Result<(), StoreError> {
    let service = service.clone();
    tokio::spawn(async move {
        let result = mutation.await;
        for id in &key_ids {
            service.cache.invalidate(id);
        }
        result
    })
    .await
    .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("a key mutation task failed: {e}")))?
}
