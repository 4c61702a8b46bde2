//! Credits: a quota counter set, raised or lowered through the API in one transaction
//! that holds the row, with its audit event and idempotent answer.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use serde_json::json;

use super::audit::commit_change;
use sqlx::Row as _;

use super::plans::apply_plan_quota;
use super::rows::{limits_from, plan_from};
use super::{Engine, dialect, notify};
use crate::error::{Conflict, StoreError};
use crate::model::{
    AuditEvent, Change, CreditOp, CreditsChange, IdempotentResponse, Invalidation, Quota,
    QuotaTarget, Timestamp, to_unix,
};

pub(super) async fn change_credits(
    store: &Engine,
    target: &QuotaTarget,
    op: CreditOp,
    max: u64,
    now: Timestamp,
    audit: &AuditEvent,
    answer: &(dyn Fn(u64) -> Result<Option<IdempotentResponse>, StoreError> + Send + Sync),
) -> Result<CreditsChange, StoreError> {
    let (table, column, id, invalidation) = match target {
        QuotaTarget::Key(id) => ("keys", "key_id", id, Invalidation::Key(id.clone())),
        QuotaTarget::Owner(id) => ("owners", "id", id, Invalidation::Owner(id.clone())),
    };
    let mut tx = store.begin().await?;
    let sql = format!(
        "SELECT ratelimits, quota_remaining, quota_refill_interval, quota_refill_day, \
         quota_refill_amount, quota_refilled_at, plan FROM {table} WHERE {column} = $1{}",
        dialect::FOR_UPDATE
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut limits = limits_from(&row, "")?;
    // A counter from the plan refills by the plan's rule (and is gone with its quota).
    if limits.quota.is_some_and(|q| q.from_plan) {
        let plan: Option<String> = row.try_get("plan")?;
        // In this transaction: a second connection while the row is held could wait
        // on a pool this transaction helps exhaust.
        let plan = match plan {
            Some(name) => sqlx::query("SELECT * FROM plans WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(plan_from)
                .transpose()?,
            None => None,
        };
        apply_plan_quota(&mut limits, plan.as_ref().map(|p| &p.limits));
    }
    let stored: Quota = limits
        .quota
        .ok_or(StoreError::Conflict(Conflict::NoQuota))?;
    // A refill that is due counts first (no verification may have made it yet).
    let current = keyhaven_core::quota::current(stored.state(), stored.refill, to_unix(now));
    let stored = Quota {
        remaining: current.remaining,
        refilled_at: crate::model::from_unix(current.refilled_at),
        ..stored
    };
    let before = stored.remaining;
    let after = match op {
        CreditOp::Set(n) => n,
        CreditOp::Increment(n) => before.saturating_add(n),
        CreditOp::Decrement(n) => before
            .checked_sub(n)
            .ok_or(StoreError::Conflict(Conflict::InsufficientCredits))?,
    };
    if after > max {
        return Err(StoreError::Conflict(Conflict::CreditsOverflow));
    }
    let set_at = crate::model::quota_set_at(Some(&stored), now);
    let sql = format!(
        "UPDATE {table} SET quota_remaining = $1, quota_refilled_at = $2 WHERE {column} = $3"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(to_unix(set_at))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    notify(&mut tx, invalidation).await?;
    let mut audit = audit.clone();
    audit
        .changes
        .insert("remaining".into(), json!({"from": before, "to": after}));
    let idempotency = answer(after)?;
    commit_change(
        tx,
        Change {
            audit: &audit,
            idempotency: idempotency.as_ref(),
        },
    )
    .await?;
    Ok(CreditsChange {
        before,
        quota: Quota {
            remaining: after,
            refilled_at: set_at,
            ..stored
        },
    })
}
