//! Leaked keys: each first report acts on its key and writes its audit event (and the
//! `key.leaked` event) in one transaction for the whole batch; repeats write nothing.
//! Signed batches are remembered to refuse replays.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use super::audit::write_change;
use super::{Engine, notify};
use crate::error::StoreError;
use crate::leak::{LeakAction, LeakWrite, SeenBatch};
use crate::model::{Change, Invalidation, Timestamp, to_unix};

pub(super) async fn record_leaks(
    store: &Engine,
    leaks: &[LeakWrite],
    batch: Option<SeenBatch<'_>>,
) -> Result<Vec<bool>, StoreError> {
    let mut tx = store.begin().await?;
    let mut recorded = Vec::with_capacity(leaks.len());
    let mut events = Vec::new();
    for leak in leaks {
        let done = sqlx::query(
            "INSERT INTO key_leaks (key_id, source, url, action, reported_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&leak.key_id)
        .bind(&leak.source)
        .bind(&leak.url)
        .bind(leak.action.as_str())
        .bind(to_unix(leak.at))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            recorded.push(false);
            continue;
        }
        match leak.action {
            LeakAction::Revoked => {
                sqlx::query(
                    "UPDATE keys SET revoked_at = $1, revoked_reason = $2, updated_at = $1 \
                     WHERE key_id = $3 AND revoked_at IS NULL",
                )
                .bind(to_unix(leak.at))
                .bind(&leak.reason)
                .bind(&leak.key_id)
                .execute(&mut *tx)
                .await?;
            }
            LeakAction::Disabled => {
                sqlx::query("UPDATE keys SET enabled = $1, updated_at = $2 WHERE key_id = $3")
                    .bind(false)
                    .bind(to_unix(leak.at))
                    .bind(&leak.key_id)
                    .execute(&mut *tx)
                    .await?;
            }
            LeakAction::Notified | LeakAction::Unchanged => {}
        }
        notify(&mut tx, Invalidation::Key(leak.key_id.clone())).await?;
        events.push((
            leak.audit.action.as_str(),
            write_change(&mut tx, Change::audited(&leak.audit)).await?,
        ));
        recorded.push(true);
    }
    if let Some(batch) = batch {
        sqlx::query(
            "INSERT INTO leak_batches (digest, seen_at) VALUES ($1, $2) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(batch.digest.as_slice())
        .bind(to_unix(batch.at))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    for (action, event) in events {
        crate::counters::audit_written(action);
        if let Some(kind) = event {
            crate::counters::events_written(kind, 1);
        }
    }
    Ok(recorded)
}

pub(super) async fn leak_batch_seen(store: &Engine, digest: &[u8; 32]) -> Result<bool, StoreError> {
    let seen: Option<i64> =
        sqlx::query_scalar("SELECT seen_at FROM leak_batches WHERE digest = $1")
            .bind(digest.as_slice())
            .fetch_optional(store.reads())
            .await?;
    Ok(seen.is_some())
}

pub(super) async fn purge_leak_batches(
    store: &Engine,
    before: Timestamp,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM leak_batches WHERE seen_at < $1")
        .bind(to_unix(before))
        .execute(store.writes())
        .await?;
    Ok(done.rows_affected())
}
