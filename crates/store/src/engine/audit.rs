//! The change every mutation commits with (its audit event, the lifecycle event it
//! causes, and its idempotent response, all in the mutation's transaction), and the
//! audit log and idempotent responses read back.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use anyhow::Context as _;
use serde_json::{Map, Value};
use sqlx::Row as _;

use super::rows::{Tx, audit_from, classify, json_text, page_of, scope_json};
use super::{Db, Engine, dialect};
use crate::error::{Conflict, StoreError};
use crate::model::{
    AuditEvent, AuditFilter, Change, IdempotentResponse, Page, PageRequest, Timestamp, from_unix,
    to_unix,
};

/// Writes the change's audit event (with the lifecycle event it causes, and the
/// idempotent response) and commits: all of it or none. Counts what was written once it
/// is committed.
pub(super) async fn commit_change(mut tx: Tx, change: Change<'_>) -> Result<(), StoreError> {
    let event = write_change(&mut tx, change).await?;
    tx.commit().await?;
    count_written(change.audit, event);
    Ok(())
}

/// Counts a committed change: its audit event, and the lifecycle event it caused.
pub(in super::super) fn count_written(audit: &AuditEvent, event: Option<&'static str>) {
    crate::counters::audit_written(&audit.action);
    if let Some(kind) = event {
        crate::counters::events_written(kind, 1);
    }
}

/// Stores one event; false when its `dedup` fact is already stored.
pub(super) async fn insert_event(
    tx: &mut Tx,
    kind: &str,
    key_id: Option<&str>,
    keyspace_id: Option<&str>,
    data: &Map<String, Value>,
    dedup: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let sql = format!(
        "INSERT INTO events (id, type, key_id, keyspace_id, payload, dedup, created_at) \
         VALUES ({}, $1, $2, $3, $4, $5, $6) ON CONFLICT (dedup) DO NOTHING",
        dialect::NEW_EVENT_ID
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(kind)
        .bind(key_id)
        .bind(keyspace_id)
        .bind(json_text(data)?)
        .bind(dedup)
        .bind(to_unix(at))
        .execute(&mut **tx)
        .await
        .context("writing the event")?;
    Ok(done.rows_affected() == 1)
}

/// Writes the audit event, the lifecycle event it causes (returning its type) and the
/// idempotent response, in `tx`.
pub(super) async fn write_change(
    tx: &mut Tx,
    change: Change<'_>,
) -> Result<Option<&'static str>, StoreError> {
    let a = change.audit;
    sqlx::query(
        "INSERT INTO audit_events (id, occurred_at, actor, action, target_type, target_id, \
         keyspace_id, changes, client_ip) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&a.id)
    .bind(to_unix(a.occurred_at))
    .bind(&a.actor)
    .bind(&a.action)
    .bind(&a.target_type)
    .bind(&a.target_id)
    .bind(&a.keyspace_id)
    .bind(json_text(&a.changes)?)
    .bind(&a.client_ip)
    .execute(&mut **tx)
    .await
    .context("writing the audit event")?;
    if let Some(idem) = change.idempotency {
        write_idempotency(tx, idem).await?;
    }
    let Some((kind, data)) = crate::activity::lifecycle_event(a) else {
        return Ok(None);
    };
    // The audit event's id is unique, so this fact is never a duplicate.
    let dedup = format!("{kind}:{}", a.id);
    insert_event(
        tx,
        kind,
        Some(&a.target_id),
        a.keyspace_id.as_deref(),
        &data,
        &dedup,
        a.occurred_at,
    )
    .await?;
    Ok(Some(kind))
}

/// Stores a request's answer under its idempotency key, in `tx`;
/// [`Conflict::IdempotencyKeyTaken`] when a concurrent twin stored one first.
pub(in super::super) async fn write_idempotency(
    tx: &mut Tx,
    idem: &IdempotentResponse,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO idempotency_keys (actor, idempotency_key, request_hash, status, \
         sealed_response, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&idem.actor)
    .bind(&idem.idempotency_key)
    .bind(idem.request_hash.as_slice())
    .bind(i64::from(idem.status))
    .bind(&idem.sealed_response)
    .bind(to_unix(idem.created_at))
    .execute(&mut **tx)
    .await
    .map_err(|e| classify(e, Conflict::IdempotencyKeyTaken))?;
    Ok(())
}

/// Audit events (and the lifecycle events they cause) for many changes at once, in
/// `tx`: multi-row inserts, for batches such as a leak report of thousands of keys.
/// Returns the lifecycle event types written, for the counters after the commit.
pub(in super::super) async fn write_audits(
    tx: &mut Tx,
    audits: &[&AuditEvent],
) -> Result<Vec<&'static str>, StoreError> {
    const ROWS: usize = 500;
    let mut kinds = Vec::new();
    for chunk in audits.chunks(ROWS) {
        let mut texts = Vec::with_capacity(chunk.len());
        for a in chunk {
            texts.push(json_text(&a.changes)?);
        }
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO audit_events (id, occurred_at, actor, action, target_type, \
             target_id, keyspace_id, changes, client_ip) ",
        );
        q.push_values(chunk.iter().zip(texts), |mut row, (a, changes)| {
            row.push_bind(a.id.clone())
                .push_bind(to_unix(a.occurred_at))
                .push_bind(a.actor.clone())
                .push_bind(a.action.clone())
                .push_bind(a.target_type.clone())
                .push_bind(a.target_id.clone())
                .push_bind(a.keyspace_id.clone())
                .push_bind(changes)
                .push_bind(a.client_ip.clone());
        });
        q.build()
            .execute(&mut **tx)
            .await
            .context("writing audit events")?;
        let mut events = Vec::new();
        for a in chunk {
            if let Some((kind, data)) = crate::activity::lifecycle_event(a) {
                events.push((kind, a, json_text(&data)?));
            }
        }
        if events.is_empty() {
            continue;
        }
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO events (id, type, key_id, keyspace_id, payload, dedup, created_at) ",
        );
        q.push_values(&events, |mut row, (kind, a, payload)| {
            row.push(dialect::NEW_EVENT_ID)
                .push_bind(*kind)
                .push_bind(a.target_id.clone())
                .push_bind(a.keyspace_id.clone())
                .push_bind(payload.clone())
                .push_bind(format!("{kind}:{}", a.id))
                .push_bind(to_unix(a.occurred_at));
        });
        q.push(" ON CONFLICT (dedup) DO NOTHING");
        q.build()
            .execute(&mut **tx)
            .await
            .context("writing events")?;
        kinds.extend(events.iter().map(|(kind, ..)| *kind));
    }
    Ok(kinds)
}

pub(super) async fn append_audit(store: &Engine, event: &AuditEvent) -> Result<(), StoreError> {
    let tx = store.begin().await?;
    commit_change(tx, Change::audited(event)).await?;
    Ok(())
}

pub(super) async fn list_audit_events(
    store: &Engine,
    filter: &AuditFilter<'_>,
    page: PageRequest,
) -> Result<Page<AuditEvent>, StoreError> {
    let sql = format!(
        "SELECT * FROM audit_events WHERE \
         ($1 IS NULL OR keyspace_id IN {visible}) \
         AND ($2 IS NULL OR keyspace_id = $2) \
         AND ($3 IS NULL OR target_id = $3) \
         AND ($4 IS NULL OR action = $4) \
         AND ($5 IS NULL OR actor = $5) \
         AND ($6 IS NULL OR occurred_at >= $6) \
         AND ($7 IS NULL OR occurred_at < $7) \
         AND ($8 IS NULL OR seq < $8) ORDER BY seq DESC LIMIT $9",
        visible = dialect::json_list("$1"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope_json(filter.visible)?)
        .bind(filter.keyspace_id)
        .bind(filter.target_id)
        .bind(filter.action)
        .bind(filter.actor)
        .bind(filter.since.map(to_unix))
        .bind(filter.until.map(to_unix))
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(store.reads())
        .await?;
    page_of(&rows, page.limit, audit_from)
}

pub(super) async fn idempotent_response(
    store: &Engine,
    actor: &str,
    idempotency_key: &str,
) -> Result<Option<IdempotentResponse>, StoreError> {
    let row =
        sqlx::query("SELECT * FROM idempotency_keys WHERE actor = $1 AND idempotency_key = $2")
            .bind(actor)
            .bind(idempotency_key)
            .fetch_optional(store.reads())
            .await?;
    let Some(row) = row else { return Ok(None) };
    let hash: Vec<u8> = row.try_get("request_hash")?;
    let status: i64 = row.try_get("status")?;
    Ok(Some(IdempotentResponse {
        actor: row.try_get("actor")?,
        idempotency_key: row.try_get("idempotency_key")?,
        request_hash: hash
            .try_into()
            .map_err(|_| anyhow::anyhow!("stored request hash has the wrong length"))?,
        status: u16::try_from(status).context("stored status out of range")?,
        sealed_response: row.try_get("sealed_response")?,
        created_at: from_unix(row.try_get("created_at")?),
    }))
}

pub(super) async fn purge_idempotency(
    store: &Engine,
    before: Timestamp,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(to_unix(before))
        .execute(store.writes())
        .await?;
    Ok(done.rows_affected())
}
