//! Changing an existing key: update (PATCH), revoke, delete.

use keyhaven_store::{Change, KeyForVerify, QuotaTarget, QuotaWrite};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::{audited_fields, check_owner, find, to_completion};
use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::idempotency::{Done, Idempotent, Rendered};
use crate::limits::spec::{QuotaBody, RateLimitBody, patch_limits, quota_audit};
use crate::patch::double_option;
use crate::service::Service;
use crate::validate;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// 1-200 characters without control characters; `null` clears the name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub owner_id: Option<Option<String>>,
    /// Replaces the scopes: up to 64, each 1-100 characters of `[A-Za-z0-9_:.*/-]`.
    #[schema(max_items = 64)]
    pub scopes: Option<Vec<String>>,
    pub meta: Option<Map<String, Value>>,
    /// RFC 3339, or `null` for no expiry.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    pub enabled: Option<bool>,
    /// Replaces the key's own rate limits (`[]` removes them); at most 16.
    #[schema(max_items = 16)]
    pub ratelimits: Option<Vec<RateLimitBody>>,
    /// Sets the quota (its counter to `remaining`: a top-up); `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<QuotaBody>)]
    pub quota: Option<Option<QuotaBody>>,
    /// Replaces the IP allowlist of the key (`[]` removes it); at most 100 entries.
    #[schema(max_items = 100)]
    pub ip_allowlist: Option<Vec<String>>,
    /// Replaces the roles (`[]` removes them); at most 64.
    #[schema(max_items = 64)]
    pub roles: Option<Vec<String>>,
    /// Replaces the direct permissions (`[]` removes them); at most 64.
    #[schema(max_items = 64)]
    pub permissions: Option<Vec<String>>,
    /// Moves the key to another plan (`null`: none). A quota counter taken from the old
    /// plan is replaced by one from the new plan; a quota of its own stays.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub plan: Option<Option<String>>,
}

impl UpdateKey {
    /// Whether the change touches nothing but the name.
    pub fn only_renames(&self) -> bool {
        self.owner_id.is_none()
            && self.scopes.is_none()
            && self.meta.is_none()
            && self.expires_at.is_none()
            && self.enabled.is_none()
            && self.ratelimits.is_none()
            && self.quota.is_none()
            && self.ip_allowlist.is_none()
            && self.roles.is_none()
            && self.permissions.is_none()
            && self.plan.is_none()
    }
}

/// Changes the fields `input` names (a PATCH: absent fields stay as they are). A new
/// quota replaces the stored one together with the uses counted so far
/// (`limits.quotas.replace`). Returns the key as updated.
#[tracing::instrument(skip_all)]
pub async fn update(
    service: &Service,
    actor: &Actor,
    key_id: &str,
    input: UpdateKey,
) -> Result<KeyForVerify> {
    let mut found = find(service, actor, key_id).await?;
    if actor.owner().is_some() && !input.only_renames() {
        return Err(ServiceError::invalid(
            "only a key's name can be changed here",
        ));
    }
    let before = found.key.clone();
    let after = &mut found.key;
    if let Some(name) = input.name {
        if let Some(name) = &name {
            validate::name("name", name)?;
        }
        after.name = name;
    }
    if let Some(owner_id) = input.owner_id {
        check_owner(service.store.as_ref(), actor, owner_id.as_deref()).await?;
        after.owner_id = owner_id;
    }
    if let Some(scopes) = input.scopes {
        validate::scopes(&scopes)?;
        after.scopes = scopes;
    }
    if let Some(meta) = input.meta {
        validate::meta(&meta)?;
        after.meta = meta;
    }
    if let Some(expires_at) = input.expires_at {
        after.expires_at = expires_at
            .as_deref()
            .map(|t| validate::time("expires_at", t))
            .transpose()?;
    }
    if let Some(enabled) = input.enabled {
        after.enabled = enabled;
    }
    if let Some(entries) = input.ip_allowlist {
        after.ip_allowlist = validate::ip_allowlist(&entries)?;
    }
    if let Some(roles) = input.roles {
        after.grants.roles = validate::grant_names("roles", roles)?;
        crate::roles::check_exist(service, &after.keyspace_id, &after.grants.roles).await?;
    }
    if let Some(permissions) = input.permissions {
        after.grants.permissions = validate::grant_names("permissions", permissions)?;
    }
    let now = service.clock.now();
    let quota_write = patch_limits(&mut after.limits, input.ratelimits, input.quota, now)?;
    let quota_write = crate::plans::patch(
        service,
        &mut after.grants,
        &mut after.limits,
        input.plan,
        quota_write,
        now,
    )
    .await?;
    after.updated_at = now;
    let mut changes: Vec<(&str, Value, Value)> = audited_fields(&before)
        .into_iter()
        .zip(audited_fields(after))
        .map(|((name, from), (_, to))| (name, from, to))
        .collect();
    if quota_write == QuotaWrite::Set {
        changes.push((
            "quota",
            quota_audit(before.limits.quota.as_ref()),
            quota_audit(after.limits.quota.as_ref()),
        ));
    }
    let event = audit::event(
        actor,
        "key.update",
        ("key", key_id),
        Some(&before.keyspace_id),
        audit::diff(&changes),
        now,
    )?;
    let (inner, after) = (service.clone(), after.clone());
    let result = to_completion(service, vec![key_id.to_owned()], async move {
        let store = inner.store.as_ref();
        let write = store.update_key(&after, quota_write, Change::audited(&event));
        if quota_write == QuotaWrite::Keep {
            return write.await;
        }
        let target = QuotaTarget::Key(after.key_id.clone());
        (inner.limits.quotas)
            .replace(store, &target, after.limits.quota.as_ref(), write)
            .await
    })
    .await;
    result?;
    Ok(found)
}

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
    validate::reason(reason.as_deref())?;
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
    if actor.owner().is_some() {
        return Err(ServiceError::MissingScope("keys:delete"));
    }
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
    .map_err(ServiceError::from)
}
