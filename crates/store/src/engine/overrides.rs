//! Overrides of standalone rate limits: set (insert or replace), listed per namespace,
//! deleted. Nodes cache a namespace's overrides for at most the cache-coherence bound
//! (see `keyhaven_service::ratelimits::overrides`), so nothing is published here.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use sqlx::Row as _;

use super::Engine;
use super::audit::commit_change;
use super::rows::{DbRow, expect_one};
use crate::error::StoreError;
use crate::model::{Change, RateLimitDef, RatelimitOverride, from_unix, to_unix};

fn override_from(row: &DbRow) -> Result<RatelimitOverride, StoreError> {
    let namespace: String = row.try_get("namespace")?;
    let number = |column: &str| -> Result<u64, StoreError> {
        Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
    };
    Ok(RatelimitOverride {
        identifier: row.try_get("identifier")?,
        limit: RateLimitDef {
            name: namespace.clone(),
            limit: number("calls")?,
            duration_ms: number("duration_ms")?,
            burst: row
                .try_get::<Option<i64>, _>("burst")?
                .map(|b| u64::try_from(b).unwrap_or(0)),
        },
        namespace,
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

pub(super) async fn set_ratelimit_override(
    store: &Engine,
    o: &RatelimitOverride,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO ratelimit_overrides \
         (namespace, identifier, calls, duration_ms, burst, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (namespace, identifier) DO UPDATE SET calls = excluded.calls, \
         duration_ms = excluded.duration_ms, burst = excluded.burst, \
         updated_at = excluded.updated_at",
    )
    .bind(&o.namespace)
    .bind(&o.identifier)
    .bind(as_i64(o.limit.limit))
    .bind(as_i64(o.limit.duration_ms))
    .bind(o.limit.burst.map(as_i64))
    .bind(to_unix(o.created_at))
    .bind(to_unix(o.updated_at))
    .execute(&mut *tx)
    .await?;
    commit_change(tx, change).await
}

pub(super) async fn ratelimit_overrides(
    store: &Engine,
    namespace: &str,
) -> Result<Vec<RatelimitOverride>, StoreError> {
    let rows =
        sqlx::query("SELECT * FROM ratelimit_overrides WHERE namespace = $1 ORDER BY identifier")
            .bind(namespace)
            .fetch_all(store.reads())
            .await?;
    rows.iter().map(override_from).collect()
}

pub(super) async fn delete_ratelimit_override(
    store: &Engine,
    namespace: &str,
    identifier: &str,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done =
        sqlx::query("DELETE FROM ratelimit_overrides WHERE namespace = $1 AND identifier = $2")
            .bind(namespace)
            .bind(identifier)
            .execute(&mut *tx)
            .await?;
    expect_one(done.rows_affected())?;
    commit_change(tx, change).await
}
