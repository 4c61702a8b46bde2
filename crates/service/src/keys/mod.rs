//! Operations on keys: create and rotate (the only times a plaintext exists outside the
//! caller), update, revoke, delete, reveal, import, and the reads. Keys in keyspaces the
//! actor may not see, and root keys themselves, are `NotFound` here exactly like keys
//! that do not exist.
//!
//! Every change is written with its audit event in one transaction, and the verify
//! cache is invalidated before the operation returns ([`to_completion`]).

mod batch;
mod change;
mod create;
mod import;
mod lookups;
mod read;
mod reveal;

use std::future::Future;

use keyhaven_core::KeyId;
use keyhaven_store::{KeyForVerify, KeyRecord, Store, StoreError, Timestamp};
use serde_json::{Value, json};

pub use self::batch::{MAX_CREATE_BATCH, create_batch};
pub use self::change::{RevokeKey, UpdateKey, delete, revoke, update};
pub use self::create::{CreateKey, MAX_GRACE_SECONDS, NewKey, RotateKey, create, rotate};
pub use self::import::{Admission, ImportRequest, MAX_IMPORT_BATCH, Written, import, write_batch};
pub use self::read::{
    ExpiringKeys, KeyList, KeySort, ListKeys, MAX_SEARCH, Prefixes, expiring, list, parse_state,
};
pub use self::reveal::{Revealed, reveal};
use crate::actor::Actor;
use crate::error::{Result, ServiceError};
use crate::ids;
use crate::service::Service;
use crate::validate::rfc3339;

/// A key the actor may see, with its keyspace, or `NotFound` (`GET /v1/keys/{id}`).
#[tracing::instrument(skip_all)]
pub async fn find(service: &Service, actor: &Actor, key_id: &str) -> Result<KeyForVerify> {
    if KeyId::parse(key_id).is_none() {
        return Err(ServiceError::NotFound);
    }
    match service.store.key_for_verify(key_id).await? {
        Some(k)
            if actor.sees_keyspace(&k.key.keyspace_id)
                && actor.sees_owner(k.key.owner_id.as_deref()) =>
        {
            Ok(k)
        }
        _ => Err(ServiceError::NotFound),
    }
}

/// Whether `owner_id` names an existing owner.
pub(crate) async fn owner_exists(store: &dyn Store, owner_id: &str) -> Result<bool> {
    Ok(ids::is_plausible("own", owner_id) && store.owner(owner_id).await?.is_some())
}

/// Refuses an `owner_id` that names no owner, or that an actor limited to keyspaces
/// sets (owners are deployment-wide).
async fn check_owner(store: &dyn Store, actor: &Actor, owner_id: Option<&str>) -> Result<()> {
    actor.require_unrestricted("owner_id")?;
    match owner_id {
        Some(id) if !owner_exists(store, id).await? => Err(ServiceError::invalid(
            "owner_id does not name an existing owner",
        )),
        _ => Ok(()),
    }
}

/// Where a key stands in its life, as the dashboard, the portal and `state=` filters
/// show it (the verify path decides the same way: revocation, then expiry, then
/// disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Active,
    /// Rotated, still verifying until its grace period ends.
    Rotating,
    Disabled,
    Expired,
    /// Revoked, or rotated with its grace period over.
    Revoked,
}

impl KeyState {
    pub fn of(key: &KeyRecord, max_key_age: Option<i64>, now: Timestamp) -> Self {
        let grace_over = key.rotation.as_ref().is_some_and(|r| r.grace_until <= now);
        let aged_out = max_key_age.is_some_and(|age| {
            key.created_at.unix_timestamp().saturating_add(age) <= now.unix_timestamp()
        });
        if key.revoked_at.is_some() || grace_over {
            Self::Revoked
        } else if key.expires_at.is_some_and(|t| t <= now) || aged_out {
            Self::Expired
        } else if !key.enabled {
            Self::Disabled
        } else if key.rotation.is_some() {
            Self::Rotating
        } else {
            Self::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Rotating => "rotating",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    /// Whether the key can still be changed in its life (rotated, revoked, enabled).
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Revoked)
    }
}

/// The fields a key's audit events record (created, or changed from → to).
fn audited_fields(k: &KeyRecord) -> [(&'static str, Value); 11] {
    [
        ("ratelimits", crate::audit::list_value(&k.limits.ratelimits)),
        ("name", json!(k.name)),
        ("owner_id", json!(k.owner_id)),
        ("scopes", json!(k.scopes)),
        ("meta", json!(k.meta)),
        ("expires_at", json!(k.expires_at.map(rfc3339))),
        ("enabled", json!(k.enabled)),
        (
            "ip_allowlist",
            crate::validate::ip_allowlist_audit(k.ip_allowlist.as_ref()),
        ),
        ("roles", crate::audit::list_value(&k.grants.roles)),
        (
            "permissions",
            crate::audit::list_value(&k.grants.permissions),
        ),
        ("plan", json!(k.grants.plan)),
    ]
}

/// Runs a key mutation and then invalidates `key_ids` in the verify cache on a task of
/// its own, so both finish even if the caller is cut off (timeout, client gone) while
/// the database commits: otherwise a committed revoke could stay cached as VALID.
pub(crate) async fn to_completion<T: Send + 'static>(
    service: &Service,
    key_ids: Vec<String>,
    mutation: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
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
