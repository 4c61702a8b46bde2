//! Keyspaces: created, read, listed, updated and deleted (the reserved root keyspace is
//! invisible to all of them).
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use super::audit::commit_change;
use super::rows::{
    branding_text, classify, classify_delete, expect_one, id_exists, ip_allowlist_text, json_text,
    keyspace_from, leak_policy_text, page_of, scope_json, threshold,
};
use super::{Engine, dialect, notify};
use crate::error::{Conflict, StoreError};
use crate::model::{Change, Invalidation, Keyspace, KeyspaceScope, Page, PageRequest, to_unix};

pub(super) async fn create_keyspace(
    store: &Engine,
    ks: &Keyspace,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    // The write lock is held, so after this check a unique violation is the prefix.
    if id_exists(
        &mut tx,
        "SELECT EXISTS (SELECT 1 FROM keyspaces WHERE id = $1)",
        &ks.id,
    )
    .await?
    {
        return Err(StoreError::Conflict(Conflict::DuplicateId));
    }
    sqlx::query(
        "INSERT INTO keyspaces (id, name, prefix, max_key_age_seconds, default_grace_seconds, \
         expiry_warning_seconds, ratelimits, created_at, updated_at, alert_spike_factor, \
         alert_spike_min_per_minute, alert_failed_per_minute, branding, leak_policy, \
         ip_allowlist, secret_bytes, token_max_ttl_seconds) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&ks.id)
    .bind(&ks.name)
    .bind(&ks.prefix)
    .bind(ks.policy.max_key_age)
    .bind(ks.policy.default_grace)
    .bind(ks.policy.expiry_warning)
    .bind(json_text(&ks.ratelimits)?)
    .bind(to_unix(ks.created_at))
    .bind(to_unix(ks.updated_at))
    .bind(ks.alerts.spike_factor.map(i64::from))
    .bind(threshold(ks.alerts.spike_min_per_minute))
    .bind(threshold(ks.alerts.failed_per_minute))
    .bind(branding_text(&ks.branding)?)
    .bind(leak_policy_text(ks.leak_policy))
    .bind(ip_allowlist_text(ks.ip_allowlist.as_ref())?)
    .bind(i64::from(ks.policy.secret_length.bytes()))
    .bind(ks.policy.token_max_ttl)
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(e, Conflict::PrefixTaken))?;
    commit_change(tx, change).await?;
    Ok(())
}

pub(super) async fn keyspace(store: &Engine, id: &str) -> Result<Option<Keyspace>, StoreError> {
    let row = sqlx::query("SELECT * FROM keyspaces WHERE id = $1 AND NOT reserved")
        .bind(id)
        .fetch_optional(store.reads())
        .await?;
    row.as_ref().map(keyspace_from).transpose()
}

pub(super) async fn list_keyspaces(
    store: &Engine,
    visible: KeyspaceScope<'_>,
    page: PageRequest,
) -> Result<Page<Keyspace>, StoreError> {
    let sql = format!(
        "SELECT * FROM keyspaces WHERE NOT reserved \
         AND ($1 IS NULL OR id IN {visible}) \
         AND ($2 IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
        visible = dialect::json_list("$1"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope_json(visible)?)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(store.reads())
        .await?;
    page_of(&rows, page.limit, keyspace_from)
}

pub(super) async fn update_keyspace(
    store: &Engine,
    ks: &Keyspace,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE keyspaces SET name = $1, max_key_age_seconds = $2, default_grace_seconds = $3, \
         expiry_warning_seconds = $4, ratelimits = $5, updated_at = $6, \
         alert_spike_factor = $8, alert_spike_min_per_minute = $9, \
         alert_failed_per_minute = $10, branding = $11, leak_policy = $12, ip_allowlist = $13, \
         secret_bytes = $14, token_max_ttl_seconds = $15 WHERE id = $7 AND NOT reserved",
    )
    .bind(&ks.name)
    .bind(ks.policy.max_key_age)
    .bind(ks.policy.default_grace)
    .bind(ks.policy.expiry_warning)
    .bind(json_text(&ks.ratelimits)?)
    .bind(to_unix(ks.updated_at))
    .bind(&ks.id)
    .bind(ks.alerts.spike_factor.map(i64::from))
    .bind(threshold(ks.alerts.spike_min_per_minute))
    .bind(threshold(ks.alerts.failed_per_minute))
    .bind(branding_text(&ks.branding)?)
    .bind(leak_policy_text(ks.leak_policy))
    .bind(ip_allowlist_text(ks.ip_allowlist.as_ref())?)
    .bind(i64::from(ks.policy.secret_length.bytes()))
    .bind(ks.policy.token_max_ttl)
    .execute(&mut *tx)
    .await?;
    expect_one(done.rows_affected())?;
    notify(&mut tx, Invalidation::Keyspace(ks.id.clone())).await?;
    commit_change(tx, change).await?;
    Ok(())
}

pub(super) async fn delete_keyspace(
    store: &Engine,
    id: &str,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    // The reserved keyspace is as absent here as everywhere else, root keys or not.
    // Locked, so no key can be created in it until this commits (PostgreSQL).
    let sql = format!(
        "SELECT reserved FROM keyspaces WHERE id = $1{}",
        dialect::FOR_UPDATE
    );
    let reserved: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if reserved != Some(false) {
        return Err(StoreError::NotFound);
    }
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keys WHERE keyspace_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if keys > 0 {
        return Err(StoreError::Conflict(Conflict::KeyspaceNotEmpty));
    }
    sqlx::query("DELETE FROM roles WHERE keyspace_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM keyspaces WHERE id = $1 AND NOT reserved")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| classify_delete(e, Conflict::KeyspaceNotEmpty))?;
    expect_one(done.rows_affected())?;
    notify(&mut tx, Invalidation::Keyspace(id.to_owned())).await?;
    commit_change(tx, change).await?;
    Ok(())
}
