//! The lifecycle event log, and the `key.expiring` warnings written into it.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use sqlx::Row as _;

use super::rows::{event_from, key_from, page_of, scope_json};
use super::{Engine, dialect};
use crate::activity::EventFilter;
use crate::error::StoreError;
use crate::model::{
    Event, ExpiringKey, KeyspaceScope, Page, PageRequest, Timestamp, from_unix, to_unix,
};

/// Live keys with their effective expiry inside the warning window at `$1` (now):
/// the earlier of expires_at and created_at + max_key_age_seconds.
fn expiring() -> String {
    let least = dialect::LEAST;
    format!(
        "SELECT * FROM (SELECT k.*, {least}( \
            COALESCE(k.expires_at, 9223372036854775807), \
            CASE WHEN ks.max_key_age_seconds IS NULL THEN 9223372036854775807 \
                 ELSE k.created_at + ks.max_key_age_seconds END) AS effective_expiry, \
            COALESCE(ks.expiry_warning_seconds, 604800) AS warning \
        FROM keys k JOIN keyspaces ks ON ks.id = k.keyspace_id \
        WHERE NOT ks.reserved AND k.revoked_at IS NULL AND k.rotated_to IS NULL) AS live \
        WHERE effective_expiry > $1 AND effective_expiry <= $1 + warning"
    )
}

pub(super) async fn expiring_keys(
    store: &Engine,
    visible: KeyspaceScope<'_>,
    keyspace_id: Option<&str>,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<ExpiringKey>, StoreError> {
    let sql = format!(
        "SELECT * FROM ({expiring}) AS expiring WHERE \
         ($2 IS NULL OR keyspace_id IN {visible}) \
         AND ($3 IS NULL OR keyspace_id = $3) ORDER BY effective_expiry, seq LIMIT $4",
        expiring = expiring(),
        visible = dialect::json_list("$2"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to_unix(now))
        .bind(scope_json(visible)?)
        .bind(keyspace_id)
        .bind(i64::from(limit))
        .fetch_all(store.reads())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ExpiringKey {
                key: key_from(row)?,
                expires: from_unix(row.try_get("effective_expiry")?),
            })
        })
        .collect()
}

pub(super) async fn record_expiring_events(
    store: &Engine,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let payload = dialect::json_object(&format!(
        "'key_id', key_id, 'keyspace_id', keyspace_id, 'expires_at', {}",
        dialect::rfc3339("effective_expiry")
    ));
    let sql = format!(
        "INSERT INTO events (id, type, key_id, keyspace_id, payload, dedup, created_at) \
         SELECT {id}, 'key.expiring', key_id, keyspace_id, {payload}, \
         'key.expiring:' || key_id || ':' || effective_expiry, $1 \
         FROM ({expiring}) AS expiring WHERE true ON CONFLICT (dedup) DO NOTHING",
        id = dialect::NEW_EVENT_ID,
        expiring = expiring(),
    );
    let mut tx = store.begin().await?;
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to_unix(now))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    crate::counters::events_written("key.expiring", done.rows_affected());
    Ok(done.rows_affected())
}

pub(super) async fn list_events(
    store: &Engine,
    filter: &EventFilter<'_>,
    page: PageRequest,
) -> Result<Page<Event>, StoreError> {
    let sql = format!(
        "SELECT * FROM events WHERE ($1 IS NULL OR type = $1) \
         AND ($2 IS NULL OR keyspace_id IN {visible}) \
         AND ($3 IS NULL OR key_id = $3) AND ($4 IS NULL OR keyspace_id = $4) \
         AND ($5 IS NULL OR created_at >= $5) AND ($6 IS NULL OR created_at < $6) \
         AND ($7 IS NULL OR seq < $7) ORDER BY seq DESC LIMIT $8",
        visible = dialect::json_list("$2"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(filter.kind)
        .bind(scope_json(filter.visible)?)
        .bind(filter.key_id)
        .bind(filter.keyspace_id)
        .bind(filter.since.map(to_unix))
        .bind(filter.until.map(to_unix))
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(store.reads())
        .await?;
    page_of(&rows, page.limit, event_from)
}
