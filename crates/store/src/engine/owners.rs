//! Owners: created, read (by id or external id), listed, updated and deleted.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use super::audit::commit_change;
use super::rows::{
    BindQuota as _, classify, classify_delete, expect_one, id_exists, ip_allowlist_text, json_text,
    names_text, owner_from, page_of,
};
use super::{Engine, dialect, notify};
use crate::error::{Conflict, StoreError};
use crate::model::{Change, Invalidation, Owner, Page, PageRequest, QuotaWrite, to_unix};

pub(super) async fn create_owner(
    store: &Engine,
    owner: &Owner,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    // The write lock is held, so after this check a unique violation is the external id.
    if id_exists(
        &mut tx,
        "SELECT EXISTS (SELECT 1 FROM owners WHERE id = $1)",
        &owner.id,
    )
    .await?
    {
        return Err(StoreError::Conflict(Conflict::DuplicateId));
    }
    sqlx::query(
        "INSERT INTO owners (id, external_id, name, meta, created_at, updated_at, ratelimits, \
         quota_remaining, quota_refill_interval, quota_refill_day, quota_refill_amount, \
         quota_refilled_at, ip_allowlist, roles, permissions, plan) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&owner.id)
    .bind(&owner.external_id)
    .bind(&owner.name)
    .bind(json_text(&owner.meta)?)
    .bind(to_unix(owner.created_at))
    .bind(to_unix(owner.updated_at))
    .bind(json_text(&owner.limits.ratelimits)?)
    .bind_quota(owner.limits.quota.as_ref())
    .bind(ip_allowlist_text(owner.ip_allowlist.as_ref())?)
    .bind(names_text(&owner.grants.roles)?)
    .bind(names_text(&owner.grants.permissions)?)
    .bind(&owner.grants.plan)
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(e, Conflict::ExternalIdTaken))?;
    commit_change(tx, change).await?;
    Ok(())
}

pub(super) async fn owner(store: &Engine, id: &str) -> Result<Option<Owner>, StoreError> {
    let row = sqlx::query("SELECT * FROM owners WHERE id = $1")
        .bind(id)
        .fetch_optional(store.reads())
        .await?;
    row.as_ref().map(owner_from).transpose()
}

pub(super) async fn owner_by_external_id(
    store: &Engine,
    external_id: &str,
) -> Result<Option<Owner>, StoreError> {
    let row = sqlx::query("SELECT * FROM owners WHERE external_id = $1")
        .bind(external_id)
        .fetch_optional(store.reads())
        .await?;
    row.as_ref().map(owner_from).transpose()
}

pub(super) async fn list_owners(
    store: &Engine,
    page: PageRequest,
) -> Result<Page<Owner>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM owners WHERE ($1 IS NULL OR seq < $1) ORDER BY seq DESC LIMIT $2",
    )
    .bind(page.after)
    .bind(i64::from(page.limit) + 1)
    .fetch_all(store.reads())
    .await?;
    page_of(&rows, page.limit, owner_from)
}

pub(super) async fn update_owner(
    store: &Engine,
    owner: &Owner,
    quota: QuotaWrite,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE owners SET external_id = $1, name = $2, meta = $3, ratelimits = $4, \
         quota_remaining = CASE WHEN $5 THEN $6 ELSE quota_remaining END, \
         quota_refill_interval = CASE WHEN $5 THEN $7 ELSE quota_refill_interval END, \
         quota_refill_day = CASE WHEN $5 THEN $8 ELSE quota_refill_day END, \
         quota_refill_amount = CASE WHEN $5 THEN $9 ELSE quota_refill_amount END, \
         quota_refilled_at = CASE WHEN $5 THEN $10 ELSE quota_refilled_at END, \
         updated_at = $11, ip_allowlist = $13, roles = $14, permissions = $15, plan = $16 \
         WHERE id = $12",
    )
    .bind(&owner.external_id)
    .bind(&owner.name)
    .bind(json_text(&owner.meta)?)
    .bind(json_text(&owner.limits.ratelimits)?)
    .bind(quota == QuotaWrite::Set)
    .bind_quota(owner.limits.quota.as_ref())
    .bind(to_unix(owner.updated_at))
    .bind(&owner.id)
    .bind(ip_allowlist_text(owner.ip_allowlist.as_ref())?)
    .bind(names_text(&owner.grants.roles)?)
    .bind(names_text(&owner.grants.permissions)?)
    .bind(&owner.grants.plan)
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(e, Conflict::ExternalIdTaken))?;
    expect_one(done.rows_affected())?;
    notify(&mut tx, Invalidation::Owner(owner.id.clone())).await?;
    commit_change(tx, change).await?;
    Ok(())
}

pub(super) async fn delete_owner(
    store: &Engine,
    id: &str,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    // Locked, so no key can be given this owner until this commits (PostgreSQL).
    let sql = format!("SELECT id FROM owners WHERE id = $1{}", dialect::FOR_UPDATE);
    let found: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound);
    }
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keys WHERE owner_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if keys > 0 {
        return Err(StoreError::Conflict(Conflict::OwnerHasKeys));
    }
    let done = sqlx::query("DELETE FROM owners WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| classify_delete(e, Conflict::OwnerHasKeys))?;
    expect_one(done.rows_affected())?;
    notify(&mut tx, Invalidation::Owner(id.to_owned())).await?;
    commit_change(tx, change).await?;
    Ok(())
}
