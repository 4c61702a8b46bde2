//! Leaked keys: each first report acts on its key and writes its audit event (and the
//! `key.leaked` event) in one transaction for the whole batch; a repeat writes nothing
//! unless it must stop the key again (it was enabled again since).
//! Signed batches are remembered to refuse replays.
//!
//! A batch may name thousands of keys, so its writes are multi-row statements, and rows
//! are taken in key id order, so two batches naming the same keys in another order
//! cannot deadlock (PostgreSQL).
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use std::collections::{BTreeMap, HashSet};

use super::audit::write_audits;
use super::rows::json_text;
use super::{Db, Engine, dialect, notify};
use crate::error::StoreError;
use crate::leak::{LeakAction, LeakWrite, SeenBatch};
use crate::model::{Invalidation, Timestamp, to_unix};

/// Rows per multi-row statement.
const ROWS: usize = 500;

pub(super) async fn record_leaks(
    store: &Engine,
    leaks: &[LeakWrite],
    batch: Option<SeenBatch<'_>>,
) -> Result<Vec<bool>, StoreError> {
    let mut sorted: Vec<&LeakWrite> = leaks.iter().collect();
    // Stable: of a key named twice, its first write stays (and one statement may not
    // touch a row twice).
    sorted.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    sorted.dedup_by(|later, first| later.key_id == first.key_id);
    let mut tx = store.begin().await?;
    let mut inserted: HashSet<String> = HashSet::new();
    for chunk in sorted.chunks(ROWS) {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO key_leaks (key_id, source, url, action, reported_at) ",
        );
        q.push_values(chunk, |mut row, leak| {
            row.push_bind(leak.key_id.clone())
                .push_bind(leak.source.clone())
                .push_bind(leak.url.clone())
                .push_bind(leak.action.as_str())
                .push_bind(to_unix(leak.at));
        });
        // A key reported before is written again only to stop it again: it works once
        // more (re-enabled), and the caller found it must be revoked or disabled.
        q.push(
            " ON CONFLICT (key_id) DO UPDATE SET source = excluded.source, url = excluded.url, \
             action = excluded.action, reported_at = excluded.reported_at \
             WHERE excluded.action IN ('revoked', 'disabled') RETURNING key_id",
        );
        let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
        inserted.extend(ids);
    }
    // Each key once (its first write in the batch), in key id order.
    let mut claimed: HashSet<&str> = HashSet::new();
    let recorded: Vec<&LeakWrite> = (sorted.iter().copied())
        .filter(|l| inserted.contains(&l.key_id) && claimed.insert(&l.key_id))
        .collect();
    // Revocations and disablings, grouped by the values they set.
    let mut revokes: BTreeMap<(i64, String), Vec<String>> = BTreeMap::new();
    let mut disables: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for leak in &recorded {
        match leak.action {
            LeakAction::Revoked => (revokes.entry((to_unix(leak.at), leak.reason.clone())))
                .or_default()
                .push(leak.key_id.clone()),
            LeakAction::Disabled => disables
                .entry(to_unix(leak.at))
                .or_default()
                .push(leak.key_id.clone()),
            LeakAction::Notified | LeakAction::Unchanged => {}
        }
    }
    let revoke = format!(
        "UPDATE keys SET revoked_at = $1, revoked_reason = $2, updated_at = $1 \
         WHERE revoked_at IS NULL AND key_id IN {}",
        dialect::json_list("$3")
    );
    for ((at, reason), ids) in &revokes {
        for chunk in ids.chunks(ROWS) {
            sqlx::query(sqlx::AssertSqlSafe(revoke.as_str()))
                .bind(at)
                .bind(reason)
                .bind(json_text(chunk)?)
                .execute(&mut *tx)
                .await?;
        }
    }
    let disable = format!(
        "UPDATE keys SET enabled = $1, updated_at = $2 WHERE key_id IN {}",
        dialect::json_list("$3")
    );
    for (at, ids) in &disables {
        for chunk in ids.chunks(ROWS) {
            sqlx::query(sqlx::AssertSqlSafe(disable.as_str()))
                .bind(false)
                .bind(at)
                .bind(json_text(chunk)?)
                .execute(&mut *tx)
                .await?;
        }
    }
    let changed: Vec<String> = revokes
        .into_values()
        .chain(disables.into_values())
        .flatten()
        .collect();
    for id in changed {
        notify(&mut tx, Invalidation::Key(id)).await?;
    }
    let audits: Vec<_> = recorded.iter().map(|l| &l.audit).collect();
    let events = write_audits(&mut tx, &audits).await?;
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
    for leak in &recorded {
        crate::counters::audit_written(&leak.audit.action);
    }
    for kind in events {
        crate::counters::events_written(kind, 1);
    }
    // In the caller's order; a key named twice is recorded at its first place only.
    let mut answered: HashSet<&str> = HashSet::new();
    Ok(leaks
        .iter()
        .map(|l| claimed.contains(l.key_id.as_str()) && answered.insert(&l.key_id))
        .collect())
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
