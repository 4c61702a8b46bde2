//! Root keys as an actor manages them: listed, created (no broader than the creator),
//! revoked and rotated with a grace period. A revoked root key is refused on its next
//! call on this node and, through the change feed, on the others within
//! `cache_coherence_ms`.

use keyhaven_core::{GeneratedKey, KeyId};
use keyhaven_store::{
    Change, KeyFilter, KeyForVerify, KeyRecord, Page, PageRequest, ROOT_KEYSPACE_ID,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::{RootKeyError, create_record, mint};
use crate::actor::{Actor, ROOT_SCOPES, validate_root_scopes};
use crate::error::{Result, ServiceError};
use crate::keys::{MAX_GRACE_SECONDS, to_completion};
use crate::service::Service;
use crate::validate::{self, rfc3339};
use crate::{Scope, audit};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRootKey {
    /// Scopes, each one the creating root key holds itself (`*` only from a `*` key).
    #[schema(min_items = 1, max_items = 32)]
    pub scopes: Vec<String>,
    /// Limit the key to these keyspaces (1-100 ids).
    #[schema(min_items = 1, max_items = 100)]
    pub keyspace_ids: Option<Vec<String>>,
    /// 1-200 characters without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// RFC 3339, in the future: the key stops working then.
    pub expires_at: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRootKey {
    /// How long the old key keeps working (default 0: it stops now), at most a year.
    #[schema(maximum = 31622400)]
    pub grace_period_seconds: Option<u64>,
}

fn unrestricted(actor: &Actor) -> Result<()> {
    if actor.is_restricted() || actor.owner().is_some() {
        return Err(ServiceError::MissingScope(
            "root_keys (unrestricted root key)",
        ));
    }
    Ok(())
}

/// Refuses root-key scopes `actor` could not use itself: a root key grants only scopes
/// it holds (`*` only from `*`, `keys:reveal` only from `keys:reveal` or `*`); an
/// operator never grants `*` or `keys:reveal`.
pub fn check_grantable(actor: &Actor, scopes: &[String]) -> Result<()> {
    validate_root_scopes(scopes).map_err(ServiceError::invalid)?;
    match scopes.iter().find(|s| !actor.grants(s)) {
        Some(s) => Err(ServiceError::MissingScope(
            ROOT_SCOPES
                .iter()
                .find(|known| *known == s)
                .copied()
                .unwrap_or("*"),
        )),
        None => Ok(()),
    }
}

/// Root keys, newest first.
pub async fn list(service: &Service, actor: &Actor, page: PageRequest) -> Result<Page<KeyRecord>> {
    unrestricted(actor)?;
    let filter = KeyFilter {
        root_keys: true,
        ..Default::default()
    };
    Ok(service.store.list_keys(&filter, page).await?)
}

/// One root key, or `NotFound`.
pub async fn find(service: &Service, actor: &Actor, key_id: &str) -> Result<KeyForVerify> {
    unrestricted(actor)?;
    if KeyId::parse(key_id).is_none() {
        return Err(ServiceError::NotFound);
    }
    match service.store.key_for_verify(key_id).await? {
        Some(k) if k.key.keyspace_id == ROOT_KEYSPACE_ID => Ok(k),
        _ => Err(ServiceError::NotFound),
    }
}

/// Creates a root key no broader than `actor` (audited `root_key.create`). Returns the
/// key, to be shown once, and its record.
pub async fn create_as(
    service: &Service,
    actor: &Actor,
    input: CreateRootKey,
) -> Result<(GeneratedKey, KeyRecord)> {
    unrestricted(actor)?;
    check_grantable(actor, &input.scopes)?;
    if let Some(name) = &input.name {
        validate::name("name", name)?;
    }
    if input
        .keyspace_ids
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 100)
    {
        return Err(ServiceError::invalid("keyspace_ids must hold 1 to 100 ids"));
    }
    let now = service.clock.now();
    let expires_at = input
        .expires_at
        .as_deref()
        .map(|t| validate::time("expires_at", t))
        .transpose()?;
    if expires_at.is_some_and(|t| t <= now) {
        return Err(ServiceError::invalid("expires_at must be in the future"));
    }
    // The deployment's maximum root key age caps the expiry (and is enforced anyway).
    let by_age = service.config.root_key_max_age().map(|age| now + age);
    let expires_at = match (expires_at, by_age) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    create_record(
        service.store.as_ref(),
        &service.peppers,
        input.scopes,
        input.keyspace_ids,
        input.name,
        expires_at,
        (actor.id(), actor.client_ip()),
    )
    .await
    .map_err(|e| match e {
        RootKeyError::Invalid(detail) => ServiceError::invalid(detail),
        RootKeyError::Unexpected(e) => ServiceError::Unexpected(e),
    })
}

/// Revokes a root key (audited `root_key.revoke`); the cache forgets it even if the
/// caller is cut off.
pub async fn revoke(
    service: &Service,
    actor: &Actor,
    key_id: &str,
    reason: Option<String>,
) -> Result<()> {
    actor.require(Scope::RootKeysWrite)?;
    if let Some(reason) = &reason {
        validate::name("reason", reason)?;
    }
    find(service, actor, key_id).await?;
    let now = service.clock.now();
    let event = audit::event(
        actor,
        "root_key.revoke",
        ("root_key", key_id),
        None,
        audit::created(&[("reason", json!(reason))]),
        now,
    )?;
    let store = service.store.clone();
    let id = key_id.to_owned();
    to_completion(service, vec![key_id.to_owned()], async move {
        store
            .revoke_key(&id, now, reason.as_deref(), Change::audited(&event))
            .await
    })
    .await?;
    Ok(())
}

/// Replaces a root key by a new one with the same scopes, keyspaces and name; the old
/// one works until the grace period ends (audited `root_key.rotate`). Returns the new
/// key, to be shown once, and its record.
pub async fn rotate(
    service: &Service,
    actor: &Actor,
    key_id: &str,
    input: RotateRootKey,
) -> Result<(GeneratedKey, KeyRecord)> {
    actor.require(Scope::RootKeysWrite)?;
    let old = find(service, actor, key_id).await?.key;
    check_grantable(actor, &old.scopes)?;
    let grace = input.grace_period_seconds.unwrap_or(0);
    if grace > MAX_GRACE_SECONDS {
        return Err(ServiceError::invalid(format!(
            "grace_period_seconds must be at most {MAX_GRACE_SECONDS}"
        )));
    }
    let now = service.clock.now();
    let grace_until = now + time::Duration::seconds(i64::try_from(grace).unwrap_or(0));
    let (generated, verifier) = mint(&service.peppers)?;
    let successor = KeyRecord {
        key_id: generated.key_id().as_str().to_owned(),
        last4: generated.last4().to_owned(),
        verifier,
        // The deployment's maximum root key age, from the successor's creation.
        expires_at: service.config.root_key_max_age().map(|age| now + age),
        revoked_at: None,
        revoked_reason: None,
        rotation: None,
        rotated_from: Some(old.key_id.clone()),
        last_used_at: None,
        created_at: now,
        updated_at: now,
        ..old.clone()
    };
    let event = audit::event(
        actor,
        "root_key.rotate",
        ("root_key", key_id),
        None,
        audit::created(&[
            ("successor_key_id", json!(successor.key_id)),
            ("grace_until", json!(rfc3339(grace_until))),
        ]),
        now,
    )?;
    let (store, id, record) = (service.store.clone(), key_id.to_owned(), successor.clone());
    let ids = vec![id.clone(), successor.key_id.clone()];
    to_completion(service, ids, async move {
        store
            .rotate_key(&id, &record, grace_until, Change::audited(&event))
            .await
    })
    .await?;
    Ok((generated, successor))
}
