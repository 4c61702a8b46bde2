//! Webhook endpoints, the outbox and the delivery log.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use anyhow::Context as _;
use sqlx::Row as _;

use super::audit::commit_change;
use super::rows::{DbRow, event_from, expect_one, json_text, page_of, scope_json};
use super::{Engine, dialect};
use crate::error::StoreError;
use crate::model::{Change, KeyspaceScope, Page, PageRequest, from_unix, to_unix};
use crate::webhook::{AfterAttempt, Attempt, Delivery, DeliveryStatus, DueDelivery, Webhook};

fn webhook_from(row: &DbRow) -> Result<Webhook, StoreError> {
    let types: String = row.try_get("event_types")?;
    Ok(Webhook {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: serde_json::from_str(&types).context("decoding event types")?,
        keyspace_id: row.try_get("keyspace_id")?,
        enabled: row.try_get("enabled")?,
        sealed_secret: row.try_get("sealed_secret")?,
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

fn delivery_from(row: &DbRow) -> Result<Delivery, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        status: DeliveryStatus::parse(&status).context("stored delivery status is unknown")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        last_status: row
            .try_get::<Option<i64>, _>("last_status")?
            .and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get("last_error")?,
        delivered_at_ms: row.try_get("delivered_at_ms")?,
        created_at: from_unix(row.try_get("created_at")?),
    })
}

pub(super) async fn create_webhook(
    store: &Engine,
    hook: &Webhook,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO webhooks (id, url, description, event_types, keyspace_id, enabled, \
         sealed_secret, from_event_seq, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT COALESCE(MAX(seq), 0) FROM events), $8, $9)",
    )
    .bind(&hook.id)
    .bind(&hook.url)
    .bind(&hook.description)
    .bind(json_text(&hook.event_types)?)
    .bind(&hook.keyspace_id)
    .bind(hook.enabled)
    .bind(&hook.sealed_secret)
    .bind(to_unix(hook.created_at))
    .bind(to_unix(hook.updated_at))
    .execute(&mut *tx)
    .await?;
    commit_change(tx, change).await
}

pub(super) async fn webhook(store: &Engine, id: &str) -> Result<Option<Webhook>, StoreError> {
    sqlx::query("SELECT * FROM webhooks WHERE id = $1")
        .bind(id)
        .fetch_optional(store.reads())
        .await?
        .as_ref()
        .map(webhook_from)
        .transpose()
}

pub(super) async fn list_webhooks(
    store: &Engine,
    visible: KeyspaceScope<'_>,
    page: PageRequest,
) -> Result<Page<Webhook>, StoreError> {
    let sql = format!(
        "SELECT * FROM webhooks WHERE ($1 IS NULL OR keyspace_id IN {visible}) \
         AND ($2 IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
        visible = dialect::json_list("$1"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope_json(visible)?)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(store.reads())
        .await?;
    page_of(&rows, page.limit, webhook_from)
}

pub(super) async fn update_webhook(
    store: &Engine,
    hook: &Webhook,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE webhooks SET url = $1, description = $2, event_types = $3, enabled = $4, \
         updated_at = $5 WHERE id = $6",
    )
    .bind(&hook.url)
    .bind(&hook.description)
    .bind(json_text(&hook.event_types)?)
    .bind(hook.enabled)
    .bind(to_unix(hook.updated_at))
    .bind(&hook.id)
    .execute(&mut *tx)
    .await?;
    expect_one(done.rows_affected())?;
    commit_change(tx, change).await
}

pub(super) async fn delete_webhook(
    store: &Engine,
    id: &str,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "DELETE FROM webhook_attempts WHERE delivery_id IN \
         (SELECT id FROM webhook_deliveries WHERE webhook_id = $1)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    expect_one(done.rows_affected())?;
    commit_change(tx, change).await
}

pub(super) async fn fan_out_events(
    store: &Engine,
    now_ms: i64,
    limit: u32,
) -> Result<u64, StoreError> {
    let mut tx = store.begin().await?;
    let sql = format!(
        "SELECT seq, id, type, keyspace_id FROM events WHERE NOT fanned_out \
         ORDER BY seq LIMIT $1{}",
        dialect::FOR_UPDATE_SKIP_LOCKED
    );
    let events: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
    if events.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let hooks: Vec<(Webhook, i64)> = sqlx::query("SELECT * FROM webhooks WHERE enabled")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| Ok((webhook_from(row)?, row.try_get("from_event_seq")?)))
        .collect::<Result<_, StoreError>>()?;
    let insert = format!(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, status, attempts, \
         next_attempt_ms, first_due_ms, created_at) \
         VALUES ({}, $1, $2, 'pending', 0, $3, $3, $4) \
         ON CONFLICT (webhook_id, event_id) DO NOTHING",
        dialect::random_id("dlv")
    );
    for (seq, event_id, kind, keyspace_id) in &events {
        for (hook, from_seq) in &hooks {
            if *seq > *from_seq && hook.wants(kind, keyspace_id.as_deref()) {
                sqlx::query(sqlx::AssertSqlSafe(insert.as_str()))
                    .bind(&hook.id)
                    .bind(event_id)
                    .bind(now_ms)
                    .bind(now_ms.div_euclid(1000))
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    let ids: Vec<&str> = events.iter().map(|(_, id, _, _)| id.as_str()).collect();
    let sql = format!(
        "UPDATE events SET fanned_out = TRUE WHERE id IN {}",
        dialect::json_list("$1")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(json_text(&ids)?)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(events.len() as u64)
}

pub(super) async fn claim_deliveries(
    store: &Engine,
    now_ms: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<DueDelivery>, StoreError> {
    let mut tx = store.begin().await?;
    let sql = format!(
        "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_ms <= $1 \
         AND locked_until_ms <= $1 AND webhook_id IN (SELECT id FROM webhooks WHERE enabled) \
         ORDER BY next_attempt_ms LIMIT $2{}",
        dialect::FOR_UPDATE_SKIP_LOCKED
    );
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
    if ids.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let ids = json_text(&ids)?;
    let sql = format!(
        "UPDATE webhook_deliveries SET locked_until_ms = $1 WHERE id IN {}",
        dialect::json_list("$2")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now_ms.saturating_add(lease_ms))
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    let sql = format!(
        "SELECT d.id AS delivery_id, d.webhook_id, d.attempts, d.first_due_ms, w.url, \
         w.sealed_secret, e.id, e.type, e.key_id, e.keyspace_id, e.payload, e.created_at \
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
         JOIN events e ON e.id = d.event_id WHERE d.id IN {} ORDER BY d.next_attempt_ms",
        dialect::json_list("$1")
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows.iter()
        .map(|row| {
            Ok(DueDelivery {
                id: row.try_get("delivery_id")?,
                webhook_id: row.try_get("webhook_id")?,
                url: row.try_get("url")?,
                sealed_secret: row.try_get("sealed_secret")?,
                event: event_from(row)?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                first_due_ms: row.try_get("first_due_ms")?,
            })
        })
        .collect()
}

pub(super) async fn record_attempt(
    store: &Engine,
    attempt: &Attempt,
    next: AfterAttempt,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, attempted_ms, status_code, error, \
         duration_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&attempt.delivery_id)
    .bind(i64::from(attempt.attempt))
    .bind(attempt.attempted_ms)
    .bind(attempt.status_code.map(i64::from))
    .bind(&attempt.error)
    .bind(attempt.duration_ms)
    .execute(&mut *tx)
    .await?;
    let (status, next_ms, delivered_at) = match next {
        AfterAttempt::Delivered => (DeliveryStatus::Delivered, None, Some(attempt.attempted_ms)),
        AfterAttempt::RetryAt(at) => (DeliveryStatus::Pending, Some(at), None),
        AfterAttempt::GiveUp => (DeliveryStatus::Failed, None, None),
    };
    // Only a pending delivery moves: if a worker whose lease ran out delivered it in the
    // meantime, it stays delivered.
    let sql = format!(
        "UPDATE webhook_deliveries SET status = $1, attempts = {greatest}(attempts, $2), \
         next_attempt_ms = COALESCE($3, next_attempt_ms), delivered_at_ms = $4, \
         last_status = $5, last_error = $6, locked_until_ms = 0 \
         WHERE id = $7 AND status = 'pending'",
        greatest = dialect::GREATEST
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(status.as_str())
        .bind(i64::from(attempt.attempt))
        .bind(next_ms)
        .bind(delivered_at)
        .bind(attempt.status_code.map(i64::from))
        .bind(&attempt.error)
        .bind(&attempt.delivery_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

const DELIVERY_COLUMNS: &str = "d.seq, d.id, d.webhook_id, d.event_id, e.type AS event_type, \
     d.status, d.attempts, d.next_attempt_ms, d.last_status, d.last_error, d.delivered_at_ms, \
     d.created_at";

pub(super) async fn list_deliveries(
    store: &Engine,
    webhook_id: &str,
    status: Option<DeliveryStatus>,
    page: PageRequest,
) -> Result<Page<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.webhook_id = $1 AND ($2 IS NULL OR d.status = $2) \
         AND ($3 IS NULL OR d.seq < $3) ORDER BY d.seq DESC LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(webhook_id)
        .bind(status.map(DeliveryStatus::as_str))
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(store.reads())
        .await?;
    page_of(&rows, page.limit, delivery_from)
}

pub(super) async fn delivery(
    store: &Engine,
    webhook_id: &str,
    delivery_id: &str,
) -> Result<Option<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.webhook_id = $1 AND d.id = $2"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(webhook_id)
        .bind(delivery_id)
        .fetch_optional(store.reads())
        .await?
        .as_ref()
        .map(delivery_from)
        .transpose()
}

pub(super) async fn delivery_attempts(
    store: &Engine,
    delivery_id: &str,
) -> Result<Vec<Attempt>, StoreError> {
    let rows = sqlx::query("SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY seq")
        .bind(delivery_id)
        .fetch_all(store.reads())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Attempt {
                delivery_id: row.try_get("delivery_id")?,
                attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(u32::MAX),
                attempted_ms: row.try_get("attempted_ms")?,
                status_code: row
                    .try_get::<Option<i64>, _>("status_code")?
                    .and_then(|s| u16::try_from(s).ok()),
                error: row.try_get("error")?,
                duration_ms: row.try_get("duration_ms")?,
            })
        })
        .collect()
}

pub(super) async fn resend_delivery(
    store: &Engine,
    webhook_id: &str,
    delivery_id: &str,
    now_ms: i64,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_ms = $3, \
         first_due_ms = $3, locked_until_ms = 0 WHERE webhook_id = $1 AND id = $2",
    )
    .bind(webhook_id)
    .bind(delivery_id)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    expect_one(done.rows_affected())?;
    commit_change(tx, change).await
}
