//! Operations on owners: the deployment's customers that keys belong to. Owners are
//! deployment-wide (one customer can hold keys in several keyspaces) and `external_id`,
//! the id in the company's own database, is unique across the deployment.
//!
//! Because they are deployment-wide, an actor limited to some keyspaces may neither see
//! nor change owners (it could read or rename another tenant's customers): every
//! operation here answers it `MissingScope`.
//!
//! Verify answers carry an owner's external id and limits, so changes empty the verify
//! cache before they return.

use keyhaven_store::{Change, Grants, Limits, Owner, Page, PageRequest, QuotaTarget, QuotaWrite};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::idempotency::{Done, Idempotent, Rendered};
use crate::ids;
use crate::limits::spec::{
    QuotaBody, RateLimitBody, patch_limits, quota, quota_audit, rate_limits,
};
use crate::patch::double_option;
use crate::service::Service;
use crate::validate;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOwner {
    /// Your id for this customer: 1-255 characters without control characters, unique
    /// in the deployment.
    #[schema(min_length = 1, max_length = 255)]
    pub external_id: String,
    /// 1-200 characters without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Rate limits shared by all the owner's keys (they take precedence over keyspace
    /// defaults of the same name); at most 16.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub ratelimits: Vec<RateLimitBody>,
    /// Uses shared by all the owner's keys.
    pub quota: Option<QuotaBody>,
    /// Client addresses all the owner's keys may be used from: up to 100 IPv4/IPv6 networks in CIDR
    /// notation or single addresses (`203.0.113.0/24`, `2001:db8::/32`, `198.51.100.7`).
    /// A verification from elsewhere, or without `client_ip`, answers FORBIDDEN_IP.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub ip_allowlist: Vec<String>,
    /// Roles of every key of the owner (by name, resolved in each key's keyspace); their permissions are held as if
    /// given directly. At most 64.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub roles: Vec<String>,
    /// Permissions every key of the owner holds directly (`documents.read`); at most 64, each 1-100
    /// characters of `[A-Za-z0-9_.:*/-]`.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub permissions: Vec<String>,
    /// The plan the owner is on (`/v1/plans`): its rate limits and quota are shared by
    /// the owner's keys, its scopes, roles, permissions and maximum age apply to each,
    /// except where the owner (or key) sets its own.
    pub plan: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOwner {
    /// 1-255 characters without control characters, unique in the deployment.
    #[schema(min_length = 1, max_length = 255)]
    pub external_id: Option<String>,
    /// 1-200 characters without control characters; `null` clears the name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub name: Option<Option<String>>,
    pub meta: Option<Map<String, Value>>,
    /// Replaces the rate limits (`[]` removes them); at most 16.
    #[schema(max_items = 16)]
    pub ratelimits: Option<Vec<RateLimitBody>>,
    /// Sets the quota (its counter to `remaining`: a top-up); `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<QuotaBody>)]
    pub quota: Option<Option<QuotaBody>>,
    /// Replaces the IP allowlist of all the owner's keys (`[]` removes it); at most 100 entries.
    #[schema(max_items = 100)]
    pub ip_allowlist: Option<Vec<String>>,
    /// Replaces the roles (`[]` removes them); at most 64.
    #[schema(max_items = 64)]
    pub roles: Option<Vec<String>>,
    /// Replaces the direct permissions (`[]` removes them); at most 64.
    #[schema(max_items = 64)]
    pub permissions: Option<Vec<String>>,
    /// Moves the owner to another plan (`null`: none). A quota counter taken from the
    /// old plan is replaced by one from the new plan; a quota of its own stays.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub plan: Option<Option<String>>,
}

/// Refuses an actor limited to keyspaces (see the module docs).
pub fn require_unrestricted(actor: &Actor) -> Result<()> {
    if actor.is_restricted() {
        return Err(ServiceError::MissingScope(
            "owners:* (unrestricted root key)",
        ));
    }
    Ok(())
}

fn validate_external_id(value: &str) -> Result<()> {
    let len = value.chars().count();
    if len == 0 || len > 255 || value.chars().any(|c| c.is_control()) {
        return Err(ServiceError::invalid(
            "external_id must be 1-255 characters without control characters",
        ));
    }
    Ok(())
}

/// An owner, or `NotFound`.
pub async fn find(service: &Service, actor: &Actor, id: &str) -> Result<Owner> {
    require_unrestricted(actor)?;
    if !ids::is_plausible("own", id) {
        return Err(ServiceError::NotFound);
    }
    service.store.owner(id).await?.ok_or(ServiceError::NotFound)
}

/// The owner with this external id, if there is one.
#[tracing::instrument(skip_all)]
pub async fn by_external_id(
    service: &Service,
    actor: &Actor,
    external_id: &str,
) -> Result<Option<Owner>> {
    require_unrestricted(actor)?;
    service
        .store
        .owner_by_external_id(external_id)
        .await
        .map_err(ServiceError::from)
}

/// A page of owners.
#[tracing::instrument(skip_all)]
pub async fn list(service: &Service, actor: &Actor, page: PageRequest) -> Result<Page<Owner>> {
    require_unrestricted(actor)?;
    service
        .store
        .list_owners(page)
        .await
        .map_err(ServiceError::from)
}

/// Creates an owner. `render` shapes the answer, stored with the change for `idem`'s
/// replays.
#[tracing::instrument(skip_all)]
pub async fn create(
    service: &Service,
    actor: &Actor,
    input: CreateOwner,
    idem: &Idempotent<'_>,
    render: impl FnOnce(&Owner) -> Result<Rendered>,
) -> Result<Done> {
    require_unrestricted(actor)?;
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    validate_external_id(&input.external_id)?;
    if let Some(name) = &input.name {
        validate::name("name", name)?;
    }
    validate::meta(&input.meta)?;
    let ip_allowlist = validate::ip_allowlist(&input.ip_allowlist)?;
    let plan = match &input.plan {
        Some(name) => Some(crate::plans::check_exists(service, name).await?),
        None => None,
    };
    let grants = Grants {
        plan: input.plan,
        roles: validate::grant_names("roles", input.roles)?,
        permissions: validate::grant_names("permissions", input.permissions)?,
    };
    let now = service.clock.now();
    let owner = Owner {
        id: ids::new_id("own")?,
        external_id: input.external_id,
        name: input.name,
        meta: input.meta,
        limits: Limits {
            ratelimits: rate_limits(input.ratelimits)?,
            quota: match input.quota {
                Some(q) => Some(quota(q, now)?),
                None => crate::plans::joining_quota(plan.as_ref(), None, now),
            },
        },
        ip_allowlist,
        grants,
        created_at: now,
        updated_at: now,
    };
    let answer = render(&owner)?;
    let event = audit::event(
        actor,
        "owner.create",
        ("owner", &owner.id),
        None,
        audit::created(&[
            ("external_id", json!(owner.external_id)),
            ("name", json!(owner.name)),
            ("meta", json!(owner.meta)),
            ("quota", quota_audit(owner.limits.quota.as_ref())),
            ("ratelimits", audit::list_value(&owner.limits.ratelimits)),
            (
                "ip_allowlist",
                validate::ip_allowlist_audit(owner.ip_allowlist.as_ref()),
            ),
            ("roles", audit::list_value(&owner.grants.roles)),
            ("permissions", audit::list_value(&owner.grants.permissions)),
            ("plan", json!(owner.grants.plan)),
        ]),
        now,
    )?;
    idem.commit(answer, &event, now, async |change| {
        service.store.create_owner(&owner, change).await
    })
    .await
}

/// Updates an owner; a `quota` in the input replaces its quota and counter (a top-up).
/// Returns the owner as stored.
#[tracing::instrument(skip_all)]
pub async fn update(
    service: &Service,
    actor: &Actor,
    id: &str,
    input: UpdateOwner,
) -> Result<Owner> {
    let before = find(service, actor, id).await?;
    let mut after = before.clone();
    if let Some(external_id) = input.external_id {
        validate_external_id(&external_id)?;
        after.external_id = external_id;
    }
    if let Some(name) = input.name {
        if let Some(name) = &name {
            validate::name("name", name)?;
        }
        after.name = name;
    }
    if let Some(meta) = input.meta {
        validate::meta(&meta)?;
        after.meta = meta;
    }
    if let Some(entries) = input.ip_allowlist {
        after.ip_allowlist = validate::ip_allowlist(&entries)?;
    }
    if let Some(roles) = input.roles {
        after.grants.roles = validate::grant_names("roles", roles)?;
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
    let quota_change = |o: &Owner| match quota_write {
        QuotaWrite::Set => quota_audit(o.limits.quota.as_ref()),
        QuotaWrite::Keep => Value::Null,
    };
    let event = audit::event(
        actor,
        "owner.update",
        ("owner", id),
        None,
        audit::diff(&[
            (
                "external_id",
                json!(before.external_id),
                json!(after.external_id),
            ),
            ("name", json!(before.name), json!(after.name)),
            ("meta", json!(before.meta), json!(after.meta)),
            (
                "ratelimits",
                json!(before.limits.ratelimits),
                json!(after.limits.ratelimits),
            ),
            ("quota", quota_change(&before), quota_change(&after)),
            (
                "ip_allowlist",
                validate::ip_allowlist_audit(before.ip_allowlist.as_ref()),
                validate::ip_allowlist_audit(after.ip_allowlist.as_ref()),
            ),
            (
                "roles",
                audit::list_value(&before.grants.roles),
                audit::list_value(&after.grants.roles),
            ),
            (
                "permissions",
                audit::list_value(&before.grants.permissions),
                audit::list_value(&after.grants.permissions),
            ),
            ("plan", json!(before.grants.plan), json!(after.grants.plan)),
        ]),
        now,
    )?;
    write_update(service, after.clone(), quota_write, event).await?;
    Ok(after)
}

/// Writes an owner update (and its quota) on a task of its own, so a caller cut off
/// after the commit still updates this node's quota counter and cache (as key
/// mutations do).
async fn write_update(
    service: &Service,
    after: Owner,
    quota_write: QuotaWrite,
    event: keyhaven_store::AuditEvent,
) -> Result<(), keyhaven_store::StoreError> {
    let service = service.clone();
    tokio::spawn(async move {
        let store = service.store.as_ref();
        let write = store.update_owner(&after, quota_write, Change::audited(&event));
        let result = if quota_write == QuotaWrite::Set {
            let target = QuotaTarget::Owner(after.id.clone());
            (service.limits.quotas)
                .replace(store, &target, after.limits.quota.as_ref(), write)
                .await
        } else {
            write.await
        };
        // Verify answers carry the owner's external id and limits.
        service.cache.invalidate_all();
        result
    })
    .await
    .map_err(|e| {
        keyhaven_store::StoreError::Unexpected(anyhow::anyhow!("an owner update task failed: {e}"))
    })?
}

/// Deletes an owner without keys (`owner_has_keys` otherwise).
#[tracing::instrument(skip_all)]
pub async fn delete(service: &Service, actor: &Actor, id: &str) -> Result<()> {
    let owner = find(service, actor, id).await?;
    let event = audit::event(
        actor,
        "owner.delete",
        ("owner", id),
        None,
        audit::created(&[("external_id", json!(owner.external_id))]),
        service.clock.now(),
    )?;
    service
        .store
        .delete_owner(id, Change::audited(&event))
        .await?;
    service.cache.invalidate_all();
    Ok(())
}
