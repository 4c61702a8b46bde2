//! Plans: deployment-wide templates keys and owners name. A key's plan is resolved when
//! its record is read for verification (`keys.rs`), so every change here empties every
//! verify cache, on every node.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use anyhow::Context as _;
use sqlx::Row as _;

use super::audit::commit_change;
use super::rows::{
    BindQuota as _, DbRow, PLAN_REFILL, Tx, classify, classify_delete, expect_one, json_text,
    limits_from, names_text, plan_from, roles_from,
};
use super::{Engine, dialect, notify};
use crate::error::{Conflict, StoreError};
use crate::model::{Change, Grants, Invalidation, Limits, Plan, RateLimitDef, to_unix};

pub(super) async fn create_plan(
    store: &Engine,
    plan: &Plan,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO plans (description, ratelimits, quota_remaining, quota_refill_interval, \
         quota_refill_day, quota_refill_amount, quota_refilled_at, scopes, roles, permissions, \
         max_key_age_seconds, created_at, updated_at, name) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&plan.description)
    .bind(json_text(&plan.limits.ratelimits)?)
    .bind_quota(plan.limits.quota.as_ref())
    .bind(json_text(&plan.scopes)?)
    .bind(names_text(&plan.grants.roles)?)
    .bind(names_text(&plan.grants.permissions)?)
    .bind(plan.max_key_age)
    .bind(to_unix(plan.created_at))
    .bind(to_unix(plan.updated_at))
    .bind(&plan.name)
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(e, Conflict::PlanTaken))?;
    // Nothing names a plan before it exists (a foreign key): no cache holds it.
    commit_change(tx, change).await
}

pub(super) async fn plan(store: &Engine, name: &str) -> Result<Option<Plan>, StoreError> {
    let row = sqlx::query("SELECT * FROM plans WHERE name = $1")
        .bind(name)
        .fetch_optional(store.reads())
        .await?;
    row.as_ref().map(plan_from).transpose()
}

pub(super) async fn list_plans(store: &Engine) -> Result<Vec<Plan>, StoreError> {
    let rows = sqlx::query("SELECT * FROM plans ORDER BY name")
        .fetch_all(store.reads())
        .await?;
    rows.iter().map(plan_from).collect()
}

pub(super) async fn update_plan(
    store: &Engine,
    plan: &Plan,
    seed_quota: bool,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE plans SET description = $1, ratelimits = $2, quota_remaining = $3, \
         quota_refill_interval = $4, quota_refill_day = $5, quota_refill_amount = $6, \
         quota_refilled_at = $7, scopes = $8, roles = $9, permissions = $10, \
         max_key_age_seconds = $11, created_at = $12, updated_at = $13 WHERE name = $14",
    )
    .bind(&plan.description)
    .bind(json_text(&plan.limits.ratelimits)?)
    .bind_quota(plan.limits.quota.as_ref())
    .bind(json_text(&plan.scopes)?)
    .bind(names_text(&plan.grants.roles)?)
    .bind(names_text(&plan.grants.permissions)?)
    .bind(plan.max_key_age)
    .bind(to_unix(plan.created_at))
    .bind(to_unix(plan.updated_at))
    .bind(&plan.name)
    .execute(&mut *tx)
    .await?;
    expect_one(done.rows_affected())?;
    if let (true, Some(quota)) = (seed_quota, plan.limits.quota.as_ref()) {
        // Counters already there (the key's own, or one from the plan) are left alone.
        for table in ["keys", "owners"] {
            let sql = format!(
                "UPDATE {table} SET quota_remaining = $1, quota_refill_interval = '{PLAN_REFILL}', \
                 quota_refill_day = NULL, quota_refill_amount = NULL, quota_refilled_at = $2 \
                 WHERE plan = $3 AND quota_remaining IS NULL"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(i64::try_from(quota.remaining).unwrap_or(i64::MAX))
                .bind(to_unix(plan.updated_at))
                .bind(&plan.name)
                .execute(&mut *tx)
                .await?;
        }
    }
    invalidate_everything(&mut tx).await?;
    commit_change(tx, change).await
}

pub(super) async fn delete_plan(
    store: &Engine,
    name: &str,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    // Locked, so the check below and the delete see the same plan (PostgreSQL).
    let sql = format!(
        "SELECT name FROM plans WHERE name = $1{}",
        dialect::FOR_UPDATE
    );
    let found: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound);
    }
    let in_use: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM keys WHERE plan = $1) \
         OR EXISTS (SELECT 1 FROM owners WHERE plan = $1)",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    if in_use {
        return Err(StoreError::Conflict(Conflict::PlanInUse));
    }
    // (A key or owner put on the plan since the check above makes this fail.)
    sqlx::query("DELETE FROM plans WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(|e| classify_delete(e, Conflict::PlanInUse))?;
    commit_change(tx, change).await
}

/// A plan reaches keys of every keyspace (directly or through owners): each keyspace's
/// keys leave every node's verify cache.
async fn invalidate_everything(tx: &mut Tx) -> Result<(), StoreError> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM keyspaces")
        .fetch_all(&mut **tx)
        .await?;
    for id in ids {
        notify(tx, Invalidation::Keyspace(id)).await?;
    }
    Ok(())
}

// What a key's plan (joined to its row when it is read for verification) gives it.

/// The columns of the plan joined as `alias`, named `<alias>_<column>`.
pub(super) fn plan_columns(alias: &str) -> String {
    [
        "name",
        "ratelimits",
        "quota_remaining",
        "quota_refill_interval",
        "quota_refill_day",
        "quota_refill_amount",
        "quota_refilled_at",
        "scopes",
        "roles",
        "permissions",
        "max_key_age_seconds",
    ]
    .map(|c| format!("{alias}.{c} AS {alias}_{c}"))
    .join(", ")
}

/// What the plan joined as `alias` gives, if the row names one that exists.
pub(super) struct PlanPart {
    pub(super) limits: Limits,
    pub(super) scopes: Vec<String>,
    pub(super) grants: Grants,
    pub(super) max_key_age: Option<i64>,
}

pub(super) fn plan_part(row: &DbRow, alias: &str) -> Result<Option<PlanPart>, StoreError> {
    let col = |c: &str| format!("{alias}_{c}");
    if row
        .try_get::<Option<String>, _>(col("name").as_str())?
        .is_none()
    {
        return Ok(None);
    }
    let scopes: Option<String> = row.try_get(col("scopes").as_str())?;
    let grants = roles_from(row, &format!("{alias}_"))?;
    Ok(Some(PlanPart {
        limits: limits_from(row, &format!("{alias}_"))?,
        scopes: match scopes {
            Some(text) => serde_json::from_str(&text).context("decoding a plan's scopes")?,
            None => Vec::new(),
        },
        grants,
        max_key_age: row.try_get(col("max_key_age_seconds").as_str())?,
    }))
}

/// The plan's rate limits whose names `own` does not set.
pub(super) fn plan_ratelimits(own: &Limits, plan: Option<&Limits>) -> Vec<RateLimitDef> {
    plan.map(|p| {
        (p.ratelimits.iter())
            .filter(|l| !own.ratelimits.iter().any(|o| o.name == l.name))
            .cloned()
            .collect()
    })
    .unwrap_or_default()
}

/// A quota counter taken from the plan takes the plan's refill, and ends when the plan
/// has no quota (any more).
pub(super) fn apply_plan_quota(own: &mut Limits, plan: Option<&Limits>) {
    if own.quota.is_some_and(|q| q.from_plan) {
        match plan.and_then(|p| p.quota.as_ref()) {
            Some(from) => {
                if let Some(q) = own.quota.as_mut() {
                    q.refill = from.refill;
                }
            }
            None => own.quota = None,
        }
    }
}

pub(super) fn shorter(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
