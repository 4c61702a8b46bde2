//! Changing an existing key: revoke, delete.

use keyhaven_store::{Change, KeyForVerify};
use serde::Deserialize;
use serde_json::{Map, json};
use utoipa::ToSchema;

use super::{find, to_completion};
use crate::actor::Actor;
use crate::audit;
use crate::error::{Context as _, Result, ServiceError};
use crate::idempotency::{Done, Idempotent, Rendered};
use crate::service::Service;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {
    /// Why, for the audit log and the key's record: up to 500 characters without
    /// control characters.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// Revokes a key: it answers REVOKED from now on. `render` shapes the answer (the key
/// as revoked), which is stored with the change for `idem`'s replays.
#[tracing::instrument(skip_all)]
pub async fn revoke(
    service: &Service,
    actor: &Actor,
    key_id: &str,
    input: RevokeKey,
    idem: &Idempotent<'_>,
    render: impl FnOnce(&KeyForVerify) -> Result<Rendered>,
) -> Result<Done> {
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    let mut found = find(service, actor, key_id).await?;
    let reason = input.reason;
    if let Some(reason) = &reason
        && (reason.chars().count() > 500 || reason.chars().any(char::is_control))
    {
        return Err(ServiceError::invalid(
            "reason must be at most 500 characters without control characters",
        ));
    }
    let now = service.clock.now();
    let key = &mut found.key;
    key.revoked_at = Some(now);
    key.revoked_reason = reason.clone();
    key.updated_at = now;
    let answer = render(&found)?;
    let event = audit::event(
        actor,
        "key.revoke",
        ("key", key_id),
        Some(&found.key.keyspace_id),
        audit::created(&[("reason", json!(reason))]),
        now,
    )?;
    let saved = idem.record(&answer, now)?;
    let (store, id) = (service.store.clone(), key_id.to_owned());
    let result = to_completion(service, vec![id.clone()], async move {
        let change = Change {
            audit: &event,
            idempotency: saved.as_ref(),
        };
        store.revoke_key(&id, now, reason.as_deref(), change).await
    })
    .await;
    idem.finish(result, answer).await
}

/// Deletes a key (its usage and audit history stay).
#[tracing::instrument(skip_all)]
pub async fn delete(service: &Service, actor: &Actor, key_id: &str) -> Result<()> {
    let found = find(service, actor, key_id).await?;
    let event = audit::event(
        actor,
        "key.delete",
        ("key", key_id),
        Some(&found.key.keyspace_id),
        Map::new(),
        service.clock.now(),
    )?;
    let (store, id) = (service.store.clone(), key_id.to_owned());
    to_completion(service, vec![id.clone()], async move {
        store.delete_key(&id, Change::audited(&event)).await
    })
    .await
    .context("deleting a key")
}
