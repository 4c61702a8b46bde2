//! Roles: named sets of permissions in a keyspace. Keys name roles of their keyspace (and
//! owners name roles resolved in each of their keys' keyspaces); a verification asks for
//! permissions with a query (`keyhaven_core::permissions`). A role's permissions are
//! resolved when a key's record is read, so every change here empties the keyspace's
//! keys from each node's verify cache: an edit reaches every key within the
//! cache-coherence bound.
//!
//! A deleted role grants nothing; keys naming it keep the name (and hold its
//! permissions again only if a role of that name is created again).

use std::future::Future;

use keyhaven_store::{Change, Role, StoreError};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::idempotency::{Done, Idempotent, Rendered};
use crate::patch::double_option;
use crate::service::Service;
use crate::validate;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    /// Unique in the keyspace: 1-100 characters of `[A-Za-z0-9_.:-]` (it is a path
    /// segment of the role's own URL).
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Up to 500 characters without control characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Up to 64 permissions, each 1-100 characters of `[A-Za-z0-9_.:*/-]`.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub permissions: Vec<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    /// Replaces the permissions (every key with the role holds the new ones).
    #[schema(max_items = 64)]
    pub permissions: Option<Vec<String>>,
}

/// Most roles in one keyspace.
pub const MAX_ROLES: usize = 1_000;

/// Writes a change that may take permissions away (a role's, a plan's), then empties
/// this node's verify cache, on a task of its own: a caller cut off after the commit
/// must not leave the old answers cached here (other nodes hear of it through the
/// change feed).
pub(crate) async fn to_completion(
    service: &Service,
    write: impl Future<Output = Result<(), StoreError>> + Send + 'static,
) -> Result<()> {
    let service = service.clone();
    tokio::spawn(async move {
        let result = write.await;
        service.cache.invalidate_all();
        result
    })
    .await
    .map_err(|e| {
        StoreError::Unexpected(anyhow::anyhow!("a role or plan change task failed: {e}"))
    })??;
    Ok(())
}

fn target(role: &Role) -> String {
    format!("{}/{}", role.keyspace_id, role.name)
}

/// Refuses role names that are not roles of `keyspace_id` (a key may only name roles
/// of its own keyspace).
pub(crate) async fn check_exist(
    service: &Service,
    keyspace_id: &str,
    names: &[String],
) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let roles = service.store.list_roles(keyspace_id).await?;
    let known: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    check_among(&known, names)
}

/// Fails unless every one of `names` is among `known` (a keyspace's role names).
pub(crate) fn check_among(known: &[&str], names: &[String]) -> Result<()> {
    match names.iter().find(|n| !known.contains(&n.as_str())) {
        Some(unknown) => Err(ServiceError::invalid(format!(
            "roles: `{unknown}` is not a role of this keyspace"
        ))),
        None => Ok(()),
    }
}

/// The roles of a keyspace the actor may see.
pub async fn list(service: &Service, actor: &Actor, keyspace_id: &str) -> Result<Vec<Role>> {
    let ks = crate::keyspaces::find(service, actor, keyspace_id).await?;
    Ok(service.store.list_roles(&ks.id).await?)
}

/// One role, or `NotFound`.
pub async fn find(service: &Service, actor: &Actor, keyspace_id: &str, name: &str) -> Result<Role> {
    let ks = crate::keyspaces::find(service, actor, keyspace_id).await?;
    if !keyhaven_core::permissions::valid_name(name) {
        return Err(ServiceError::NotFound);
    }
    service
        .store
        .role(&ks.id, name)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// Creates a role in a keyspace. `render` shapes the answer, stored with the change for
/// `idem`'s replays.
#[tracing::instrument(skip_all)]
pub async fn create(
    service: &Service,
    actor: &Actor,
    keyspace_id: &str,
    input: CreateRole,
    idem: &Idempotent<'_>,
    render: impl FnOnce(&Role) -> Result<Rendered>,
) -> Result<Done> {
    let ks = crate::keyspaces::find(service, actor, keyspace_id).await?;
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    if !keyhaven_core::permissions::valid_name(&input.name) || input.name.contains(['/', '*']) {
        return Err(ServiceError::invalid(
            "name must be 1-100 characters of [A-Za-z0-9_.:-], and not AND or OR",
        ));
    }
    validate::description(input.description.as_deref())?;
    if service.store.list_roles(&ks.id).await?.len() >= MAX_ROLES {
        return Err(ServiceError::invalid(format!(
            "a keyspace holds at most {MAX_ROLES} roles"
        )));
    }
    let now = service.clock.now();
    let role = Role {
        keyspace_id: ks.id,
        name: input.name,
        description: input.description,
        permissions: validate::grant_names("permissions", input.permissions)?,
        created_at: now,
        updated_at: now,
    };
    let answer = render(&role)?;
    let event = audit::event(
        actor,
        "role.create",
        ("role", &target(&role)),
        Some(&role.keyspace_id),
        audit::created(&[
            ("name", json!(role.name)),
            ("description", json!(role.description)),
            ("permissions", audit::list_value(&role.permissions)),
        ]),
        now,
    )?;
    let done = idem
        .commit(answer, &event, now, async |change| {
            service.store.create_role(&role, change).await
        })
        .await;
    service.cache.invalidate_all();
    done
}

/// Changes a role's description or permissions; every key with the role holds the new
/// permissions from its next verification. Returns the role as stored.
#[tracing::instrument(skip_all)]
pub async fn update(
    service: &Service,
    actor: &Actor,
    keyspace_id: &str,
    name: &str,
    input: UpdateRole,
) -> Result<Role> {
    let before = find(service, actor, keyspace_id, name).await?;
    let mut after = before.clone();
    if let Some(description) = input.description {
        validate::description(description.as_deref())?;
        after.description = description;
    }
    if let Some(permissions) = input.permissions {
        after.permissions = validate::grant_names("permissions", permissions)?;
    }
    let now = service.clock.now();
    after.updated_at = now;
    let event = audit::event(
        actor,
        "role.update",
        ("role", &target(&after)),
        Some(&after.keyspace_id),
        audit::diff(&[
            (
                "description",
                json!(before.description),
                json!(after.description),
            ),
            (
                "permissions",
                audit::list_value(&before.permissions),
                audit::list_value(&after.permissions),
            ),
        ]),
        now,
    )?;
    let (inner, stored) = (service.clone(), after.clone());
    to_completion(service, async move {
        let store = inner.store.as_ref();
        store.update_role(&stored, Change::audited(&event)).await
    })
    .await?;
    Ok(after)
}

/// Deletes a role: keys naming it no longer hold its permissions.
#[tracing::instrument(skip_all)]
pub async fn delete(service: &Service, actor: &Actor, keyspace_id: &str, name: &str) -> Result<()> {
    let role = find(service, actor, keyspace_id, name).await?;
    let event = audit::event(
        actor,
        "role.delete",
        ("role", &target(&role)),
        Some(&role.keyspace_id),
        audit::created(&[("permissions", audit::list_value(&role.permissions))]),
        service.clock.now(),
    )?;
    let inner = service.clone();
    to_completion(service, async move {
        let store = inner.store.as_ref();
        (store.delete_role(&role.keyspace_id, &role.name, Change::audited(&event))).await
    })
    .await
}
