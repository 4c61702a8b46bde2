//! Roles: named sets of permissions per keyspace, created, read, listed, changed and
//! deleted. Every change empties the keyspace's keys from each node's verify cache
//! (their permissions are resolved from roles when a record is read).
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use super::audit::commit_change;
use super::rows::{classify, expect_one, json_text, role_from};
use super::{Engine, notify};
use crate::error::{Conflict, StoreError};
use crate::model::{Change, Invalidation, Role, to_unix};

pub(super) async fn create_role(
    store: &Engine,
    role: &Role,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO roles (keyspace_id, name, description, permissions, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&role.keyspace_id)
    .bind(&role.name)
    .bind(&role.description)
    .bind(json_text(&role.permissions)?)
    .bind(to_unix(role.created_at))
    .bind(to_unix(role.updated_at))
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(e, Conflict::RoleTaken))?;
    notify(&mut tx, Invalidation::Keyspace(role.keyspace_id.clone())).await?;
    commit_change(tx, change).await
}

pub(super) async fn role(
    store: &Engine,
    keyspace_id: &str,
    name: &str,
) -> Result<Option<Role>, StoreError> {
    let row = sqlx::query("SELECT * FROM roles WHERE keyspace_id = $1 AND name = $2")
        .bind(keyspace_id)
        .bind(name)
        .fetch_optional(store.reads())
        .await?;
    row.as_ref().map(role_from).transpose()
}

pub(super) async fn list_roles(store: &Engine, keyspace_id: &str) -> Result<Vec<Role>, StoreError> {
    let rows = sqlx::query("SELECT * FROM roles WHERE keyspace_id = $1 ORDER BY name")
        .bind(keyspace_id)
        .fetch_all(store.reads())
        .await?;
    rows.iter().map(role_from).collect()
}

pub(super) async fn update_role(
    store: &Engine,
    role: &Role,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE roles SET description = $1, permissions = $2, updated_at = $3 \
         WHERE keyspace_id = $4 AND name = $5",
    )
    .bind(&role.description)
    .bind(json_text(&role.permissions)?)
    .bind(to_unix(role.updated_at))
    .bind(&role.keyspace_id)
    .bind(&role.name)
    .execute(&mut *tx)
    .await?;
    expect_one(done.rows_affected())?;
    notify(&mut tx, Invalidation::Keyspace(role.keyspace_id.clone())).await?;
    commit_change(tx, change).await
}

pub(super) async fn delete_role(
    store: &Engine,
    keyspace_id: &str,
    name: &str,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query("DELETE FROM roles WHERE keyspace_id = $1 AND name = $2")
        .bind(keyspace_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    expect_one(done.rows_affected())?;
    notify(&mut tx, Invalidation::Keyspace(keyspace_id.to_owned())).await?;
    commit_change(tx, change).await
}
