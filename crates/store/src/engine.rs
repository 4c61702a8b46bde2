//! The SQL both engines run: row mapping, and `impl Store` written once.
//!
//! This file is compiled twice, as `sqlite::engine` and `postgres::engine` (each parent
//! includes it with `#[path]`). Through `super::` it finds its engine's `Db` (the sqlx
//! database), `Engine` (the store type, with `begin()`, `reads()` and `writes()`),
//! `dialect` (the few SQL spellings the engines disagree on) and `notify` (cross-node
//! cache invalidation, a no-op on SQLite). Everything else is the same text for both:
//! placeholders are `$N`, which SQLite and PostgreSQL both accept, so a query has one
//! definition; where the engines truly differ, the difference is a `dialect` item.

use std::collections::BTreeMap;

use anyhow::Context as _;
use async_trait::async_trait;
use keyhaven_core::{PepperVersion, Verifier};
use serde_json::{Map, Value};
use sqlx::{Row, Transaction};

use super::{Db, Engine, dialect, notify};
use crate::activity::*;
use crate::error::{Conflict, StoreError};
use crate::model::*;
use crate::store::Store;
use crate::webhook::*;

// The SQL of usage, alerts and webhooks, in files of their own (compiled as this one is).
#[path = "engine_activity.rs"]
mod activity;
#[path = "engine_webhooks.rs"]
mod webhooks;

type DbRow = <Db as sqlx::Database>::Row;
type Tx = Transaction<'static, Db>;

fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    Ok(serde_json::to_string(value).context("encoding a JSON column")?)
}

fn json_map(text: &str) -> Result<Map<String, Value>, StoreError> {
    Ok(serde_json::from_str(text).context("decoding a JSON column")?)
}

fn ratelimits_from(row: &DbRow, column: &str) -> Result<Vec<RateLimitDef>, StoreError> {
    let text: String = row.try_get(column)?;
    Ok(serde_json::from_str(&text).context("decoding rate limits")?)
}

/// The limits stored in a row's `ratelimits` and `quota_*` columns, each name after
/// `prefix` (empty for the row's own table, `o_` for the owner joined to a key).
fn limits_from(row: &DbRow, prefix: &str) -> Result<Limits, StoreError> {
    let col = |name: &str| format!("{prefix}{name}");
    let ratelimits = match row.try_get::<Option<String>, _>(col("ratelimits").as_str())? {
        Some(text) => serde_json::from_str(&text).context("decoding rate limits")?,
        None => Vec::new(),
    };
    let remaining: Option<i64> = row.try_get(col("quota_remaining").as_str())?;
    let quota = match remaining {
        None => None,
        Some(remaining) => {
            let interval: Option<String> = row.try_get(col("quota_refill_interval").as_str())?;
            let day: Option<i64> = row.try_get(col("quota_refill_day").as_str())?;
            let amount: Option<i64> = row.try_get(col("quota_refill_amount").as_str())?;
            let refill = match (interval, amount) {
                (Some(name), Some(amount)) => Some(keyhaven_core::quota::Refill {
                    interval: interval_from(&name, day.and_then(|d| u8::try_from(d).ok()))
                        .context("stored refill interval is unknown")?,
                    amount: u64::try_from(amount).unwrap_or(0),
                }),
                _ => None,
            };
            Some(Quota {
                remaining: u64::try_from(remaining).unwrap_or(0),
                refill,
                refilled_at: from_unix(
                    row.try_get::<Option<i64>, _>(col("quota_refilled_at").as_str())?
                        .unwrap_or(0),
                ),
            })
        }
    };
    Ok(Limits { ratelimits, quota })
}

/// The quota columns' values: remaining, refill interval, day, amount, refilled_at.
type QuotaColumns = (
    Option<i64>,
    Option<&'static str>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn quota_columns(quota: Option<&Quota>) -> QuotaColumns {
    let Some(q) = quota else {
        return (None, None, None, None, None);
    };
    let (interval, day, amount) = match q.refill {
        Some(r) => {
            let (name, day) = interval_name(r.interval);
            (
                Some(name),
                day.map(i64::from),
                Some(i64::try_from(r.amount).unwrap_or(i64::MAX)),
            )
        }
        None => (None, None, None),
    };
    (
        Some(i64::try_from(q.remaining).unwrap_or(i64::MAX)),
        interval,
        day,
        amount,
        Some(to_unix(q.refilled_at)),
    )
}

type DbQuery<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>;

trait BindQuota {
    /// Binds the five quota columns (remaining, refill interval, day, amount,
    /// refilled_at), in that order.
    fn bind_quota(self, quota: Option<&Quota>) -> Self;
}

impl BindQuota for DbQuery<'_> {
    fn bind_quota(self, quota: Option<&Quota>) -> Self {
        let q = quota_columns(quota);
        self.bind(q.0).bind(q.1).bind(q.2).bind(q.3).bind(q.4)
    }
}

fn keyspace_from(row: &DbRow) -> Result<Keyspace, StoreError> {
    Ok(Keyspace {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        policy: KeyspacePolicy {
            max_key_age: row.try_get("max_key_age_seconds")?,
            default_grace: row.try_get("default_grace_seconds")?,
            expiry_warning: row.try_get("expiry_warning_seconds")?,
        },
        ratelimits: ratelimits_from(row, "ratelimits")?,
        alerts: thresholds_from(row)?,
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

/// A keyspace's `alert_*` columns.
fn thresholds_from(row: &DbRow) -> Result<AlertThresholds, StoreError> {
    let column = |name: &str| row.try_get::<Option<i64>, _>(name);
    Ok(AlertThresholds {
        spike_factor: column("alert_spike_factor")?.and_then(|n| u32::try_from(n).ok()),
        spike_min_per_minute: column("alert_spike_min_per_minute")?
            .and_then(|n| u64::try_from(n).ok()),
        failed_per_minute: column("alert_failed_per_minute")?.and_then(|n| u64::try_from(n).ok()),
    })
}

/// A threshold as stored (the API bounds them far below `i64::MAX`).
fn threshold(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn event_from(row: &DbRow) -> Result<Event, StoreError> {
    Ok(Event {
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        key_id: row.try_get("key_id")?,
        keyspace_id: row.try_get("keyspace_id")?,
        payload: json_map(row.try_get("payload")?)?,
        created_at: from_unix(row.try_get("created_at")?),
    })
}

fn owner_from(row: &DbRow) -> Result<Owner, StoreError> {
    Ok(Owner {
        id: row.try_get("id")?,
        external_id: row.try_get("external_id")?,
        name: row.try_get("name")?,
        meta: json_map(row.try_get("meta")?)?,
        limits: limits_from(row, "")?,
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

fn key_from(row: &DbRow) -> Result<KeyRecord, StoreError> {
    let version: i64 = row.try_get("pepper_version")?;
    let version = u32::try_from(version)
        .ok()
        .and_then(PepperVersion::new)
        .context("stored pepper version out of range")?;
    let mac: Vec<u8> = row.try_get("verifier")?;
    let mac: [u8; 32] = mac
        .try_into()
        .map_err(|_| anyhow::anyhow!("stored verifier has the wrong length"))?;
    let allowed: Option<String> = row.try_get("allowed_keyspaces")?;
    let allowed = match allowed {
        Some(text) => Some(serde_json::from_str(&text).context("decoding allowed_keyspaces")?),
        None => None,
    };
    let scopes: String = row.try_get("scopes")?;
    Ok(KeyRecord {
        key_id: row.try_get("key_id")?,
        keyspace_id: row.try_get("keyspace_id")?,
        owner_id: row.try_get("owner_id")?,
        name: row.try_get("name")?,
        last4: row.try_get("last4")?,
        verifier: Verifier::from_parts(version, mac),
        scopes: serde_json::from_str(&scopes).context("decoding scopes")?,
        meta: json_map(row.try_get("meta")?)?,
        allowed_keyspaces: allowed,
        enabled: row.try_get("enabled")?,
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(from_unix),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(from_unix),
        revoked_reason: row.try_get("revoked_reason")?,
        rotation: match (
            row.try_get::<Option<String>, _>("rotated_to")?,
            row.try_get::<Option<i64>, _>("grace_until")?,
        ) {
            (Some(successor), Some(until)) => Some(Rotation {
                successor,
                grace_until: from_unix(until),
            }),
            _ => None,
        },
        rotated_from: row.try_get("rotated_from")?,
        sealed_key: row.try_get("sealed_key")?,
        import: match (
            row.try_get::<Option<String>, _>("import_format")?,
            row.try_get::<Option<String>, _>("import_lookup")?,
        ) {
            (Some(format), Some(lookup)) => Some(Import {
                format,
                lookup,
                digest: row.try_get("import_digest")?,
                public: row.try_get("import_public")?,
            }),
            _ => None,
        },
        limits: limits_from(row, "")?,
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(from_unix),
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

fn audit_from(row: &DbRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        occurred_at: from_unix(row.try_get("occurred_at")?),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target_type: row.try_get("target_type")?,
        target_id: row.try_get("target_id")?,
        keyspace_id: row.try_get("keyspace_id")?,
        changes: json_map(row.try_get("changes")?)?,
        client_ip: row.try_get("client_ip")?,
    })
}

fn page_of<T>(
    rows: &[DbRow],
    limit: u32,
    map: fn(&DbRow) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let limit = limit as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut last_seq = None;
    for row in rows.iter().take(limit) {
        items.push(map(row)?);
        last_seq = Some(row.try_get::<i64, _>("seq")?);
    }
    let next = if rows.len() > limit { last_seq } else { None };
    Ok(Page { items, next })
}

/// Maps constraint violations to the conflicts the API reports.
fn classify(e: sqlx::Error, unique: Conflict) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict(unique);
        }
        if db.is_foreign_key_violation() {
            return StoreError::Conflict(Conflict::MissingReference);
        }
    }
    e.into()
}

/// As [`classify`], for a delete some row still references: `referenced`.
fn classify_delete(e: sqlx::Error, referenced: Conflict) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return StoreError::Conflict(referenced);
    }
    e.into()
}

/// A `keyspace_id IN (...)` restriction as a JSON array (see `dialect::json_list`), or
/// `None` for all.
fn scope_json(visible: KeyspaceScope<'_>) -> Result<Option<String>, StoreError> {
    visible.map(json_text).transpose()
}

/// Writes the change's audit event (with the lifecycle event it causes, and the
/// idempotent response) and commits: all of it or none. Counts what was written once it
/// is committed.
async fn commit_change(mut tx: Tx, change: Change<'_>) -> Result<(), StoreError> {
    let event = write_change(&mut tx, change).await?;
    tx.commit().await?;
    crate::counters::audit_written(&change.audit.action);
    if let Some(kind) = event {
        crate::counters::events_written(kind, 1);
    }
    Ok(())
}

/// Stores one event; false when its `dedup` fact is already stored.
async fn insert_event(
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
async fn write_change(tx: &mut Tx, change: Change<'_>) -> Result<Option<&'static str>, StoreError> {
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

/// Inserts `key`; returns false (inserting nothing) when its import lookup is taken.
async fn insert_key(tx: &mut Tx, key: &KeyRecord) -> Result<bool, StoreError> {
    Ok(insert_keys(tx, std::slice::from_ref(key)).await?.len() == 1)
}

/// Rows per multi-row INSERT: 30 columns each stays under SQLite's 32,766 parameters.
const INSERT_CHUNK: usize = 500;

/// Inserts `keys` with multi-row statements (bulk imports would otherwise pay one
/// statement round trip per key); returns the key ids actually inserted (a key whose
/// import lookup is already stored is skipped).
async fn insert_keys(tx: &mut Tx, keys: &[KeyRecord]) -> Result<Vec<String>, StoreError> {
    let mut inserted = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(INSERT_CHUNK) {
        let mut texts = Vec::with_capacity(chunk.len());
        for key in chunk {
            texts.push((
                json_text(&key.scopes)?,
                json_text(&key.meta)?,
                key.allowed_keyspaces.as_ref().map(json_text).transpose()?,
                json_text(&key.limits.ratelimits)?,
            ));
        }
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO keys (key_id, keyspace_id, owner_id, name, last4, pepper_version, \
             verifier, scopes, meta, allowed_keyspaces, enabled, expires_at, revoked_at, \
             revoked_reason, rotated_to, grace_until, rotated_from, sealed_key, import_format, \
             import_lookup, import_digest, import_public, last_used_at, created_at, updated_at, \
             ratelimits, quota_remaining, quota_refill_interval, quota_refill_day, \
             quota_refill_amount, quota_refilled_at) ",
        );
        q.push_values(
            chunk.iter().zip(texts),
            |mut row, (key, (scopes, meta, allowed, ratelimits))| {
                let quota = quota_columns(key.limits.quota.as_ref());
                row.push_bind(key.key_id.clone())
                    .push_bind(key.keyspace_id.clone())
                    .push_bind(key.owner_id.clone())
                    .push_bind(key.name.clone())
                    .push_bind(key.last4.clone())
                    .push_bind(i64::from(key.verifier.version().get()))
                    .push_bind(key.verifier.mac().to_vec())
                    .push_bind(scopes)
                    .push_bind(meta)
                    .push_bind(allowed)
                    .push_bind(key.enabled)
                    .push_bind(key.expires_at.map(to_unix))
                    .push_bind(key.revoked_at.map(to_unix))
                    .push_bind(key.revoked_reason.clone())
                    .push_bind(key.rotation.as_ref().map(|r| r.successor.clone()))
                    .push_bind(key.rotation.as_ref().map(|r| to_unix(r.grace_until)))
                    .push_bind(key.rotated_from.clone())
                    .push_bind(key.sealed_key.clone())
                    .push_bind(key.import.as_ref().map(|i| i.format.clone()))
                    .push_bind(key.import.as_ref().map(|i| i.lookup.clone()))
                    .push_bind(key.import.as_ref().and_then(|i| i.digest.clone()))
                    .push_bind(key.import.as_ref().and_then(|i| i.public.clone()))
                    .push_bind(key.last_used_at.map(to_unix))
                    .push_bind(to_unix(key.created_at))
                    .push_bind(to_unix(key.updated_at))
                    .push_bind(ratelimits)
                    .push_bind(quota.0)
                    .push_bind(quota.1)
                    .push_bind(quota.2)
                    .push_bind(quota.3)
                    .push_bind(quota.4);
            },
        );
        q.push(
            " ON CONFLICT (import_lookup) WHERE import_lookup IS NOT NULL DO NOTHING \
             RETURNING key_id",
        );
        let ids: Vec<String> = q
            .build_query_scalar()
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| classify(e, Conflict::DuplicateId))?;
        inserted.extend(ids);
    }
    Ok(inserted)
}

/// Whether `sql` (a `SELECT EXISTS` with one `?` for the id) finds `id`.
async fn id_exists(tx: &mut Tx, sql: &'static str, id: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

fn expect_one(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

const KEY_COLUMNS: &str = "k.seq, k.key_id, k.keyspace_id, k.owner_id, k.name, k.last4, \
    k.pepper_version, k.verifier, k.scopes, k.meta, k.allowed_keyspaces, k.enabled, \
    k.expires_at, k.revoked_at, k.revoked_reason, k.rotated_to, k.grace_until, \
    k.rotated_from, k.sealed_key, k.import_format, k.import_lookup, k.import_digest, \
    k.import_public, k.last_used_at, k.created_at, k.updated_at, k.ratelimits, k.quota_remaining, \
    k.quota_refill_interval, k.quota_refill_day, k.quota_refill_amount, k.quota_refilled_at";

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

#[async_trait]
impl Store for Engine {
    async fn migrate(&self) -> Result<(), StoreError> {
        super::MIGRATOR
            .run(self.writes())
            .await
            .context("applying database migrations")?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.reads()).await?;
        Ok(())
    }

    async fn create_keyspace(&self, ks: &Keyspace, change: Change<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
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
             alert_spike_min_per_minute, alert_failed_per_minute) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(e, Conflict::PrefixTaken))?;
        commit_change(tx, change).await?;
        Ok(())
    }

    async fn keyspace(&self, id: &str) -> Result<Option<Keyspace>, StoreError> {
        let row = sqlx::query("SELECT * FROM keyspaces WHERE id = $1 AND NOT reserved")
            .bind(id)
            .fetch_optional(self.reads())
            .await?;
        row.as_ref().map(keyspace_from).transpose()
    }

    async fn list_keyspaces(
        &self,
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
            .fetch_all(self.reads())
            .await?;
        page_of(&rows, page.limit, keyspace_from)
    }

    async fn update_keyspace(&self, ks: &Keyspace, change: Change<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE keyspaces SET name = $1, max_key_age_seconds = $2, default_grace_seconds = $3, \
             expiry_warning_seconds = $4, ratelimits = $5, updated_at = $6, \
             alert_spike_factor = $8, alert_spike_min_per_minute = $9, \
             alert_failed_per_minute = $10 WHERE id = $7 AND NOT reserved",
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
        .execute(&mut *tx)
        .await?;
        expect_one(done.rows_affected())?;
        notify(&mut tx, Invalidation::Keyspace(ks.id.clone())).await?;
        commit_change(tx, change).await?;
        Ok(())
    }

    async fn delete_keyspace(&self, id: &str, change: Change<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
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

    async fn create_owner(&self, owner: &Owner, change: Change<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
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
             quota_refilled_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&owner.id)
        .bind(&owner.external_id)
        .bind(&owner.name)
        .bind(json_text(&owner.meta)?)
        .bind(to_unix(owner.created_at))
        .bind(to_unix(owner.updated_at))
        .bind(json_text(&owner.limits.ratelimits)?)
        .bind_quota(owner.limits.quota.as_ref())
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(e, Conflict::ExternalIdTaken))?;
        commit_change(tx, change).await?;
        Ok(())
    }

    async fn owner(&self, id: &str) -> Result<Option<Owner>, StoreError> {
        let row = sqlx::query("SELECT * FROM owners WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reads())
            .await?;
        row.as_ref().map(owner_from).transpose()
    }

    async fn owner_by_external_id(&self, external_id: &str) -> Result<Option<Owner>, StoreError> {
        let row = sqlx::query("SELECT * FROM owners WHERE external_id = $1")
            .bind(external_id)
            .fetch_optional(self.reads())
            .await?;
        row.as_ref().map(owner_from).transpose()
    }

    async fn list_owners(&self, page: PageRequest) -> Result<Page<Owner>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM owners WHERE ($1 IS NULL OR seq < $1) ORDER BY seq DESC LIMIT $2",
        )
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reads())
        .await?;
        page_of(&rows, page.limit, owner_from)
    }

    async fn update_owner(
        &self,
        owner: &Owner,
        quota: QuotaWrite,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE owners SET external_id = $1, name = $2, meta = $3, ratelimits = $4, \
             quota_remaining = CASE WHEN $5 THEN $6 ELSE quota_remaining END, \
             quota_refill_interval = CASE WHEN $5 THEN $7 ELSE quota_refill_interval END, \
             quota_refill_day = CASE WHEN $5 THEN $8 ELSE quota_refill_day END, \
             quota_refill_amount = CASE WHEN $5 THEN $9 ELSE quota_refill_amount END, \
             quota_refilled_at = CASE WHEN $5 THEN $10 ELSE quota_refilled_at END, \
             updated_at = $11 WHERE id = $12",
        )
        .bind(&owner.external_id)
        .bind(&owner.name)
        .bind(json_text(&owner.meta)?)
        .bind(json_text(&owner.limits.ratelimits)?)
        .bind(quota == QuotaWrite::Set)
        .bind_quota(owner.limits.quota.as_ref())
        .bind(to_unix(owner.updated_at))
        .bind(&owner.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(e, Conflict::ExternalIdTaken))?;
        expect_one(done.rows_affected())?;
        notify(&mut tx, Invalidation::Owner(owner.id.clone())).await?;
        commit_change(tx, change).await?;
        Ok(())
    }

    async fn delete_owner(&self, id: &str, change: Change<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
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

    async fn create_key(&self, key: &KeyRecord, change: Change<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if !insert_key(&mut tx, key).await? {
            return Err(StoreError::Conflict(Conflict::DuplicateId));
        }
        // A node may have cached "no such key" for this id.
        notify(&mut tx, Invalidation::Key(key.key_id.clone())).await?;
        commit_change(tx, change).await?;
        Ok(())
    }

    async fn key_for_verify(&self, key_id: &str) -> Result<Option<KeyForVerify>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, ks.prefix AS ks_prefix, ks.name AS ks_name, \
             ks.max_key_age_seconds AS ks_max_age, ks.ratelimits AS ks_ratelimits, \
             o.external_id AS owner_external_id, o.ratelimits AS o_ratelimits, \
             o.quota_remaining AS o_quota_remaining, \
             o.quota_refill_interval AS o_quota_refill_interval, \
             o.quota_refill_day AS o_quota_refill_day, \
             o.quota_refill_amount AS o_quota_refill_amount, \
             o.quota_refilled_at AS o_quota_refilled_at \
             FROM keys k JOIN keyspaces ks ON ks.id = k.keyspace_id \
             LEFT JOIN owners o ON o.id = k.owner_id WHERE k.key_id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key_id)
            .fetch_optional(self.reads())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(KeyForVerify {
            key: key_from(&row)?,
            keyspace_prefix: row.try_get("ks_prefix")?,
            keyspace_name: row.try_get("ks_name")?,
            max_key_age: row.try_get("ks_max_age")?,
            owner_external_id: row.try_get("owner_external_id")?,
            keyspace_ratelimits: ratelimits_from(&row, "ks_ratelimits")?,
            owner_limits: limits_from(&row, "o_")?,
        }))
    }

    async fn list_keys(
        &self,
        filter: &KeyFilter<'_>,
        page: PageRequest,
    ) -> Result<Page<KeyRecord>, StoreError> {
        // Most recently used first, never-used keys last; newest first among equals.
        let (after, order) = if filter.by_last_used {
            (
                "($4 IS NULL OR COALESCE(k.last_used_at, 0) < $6 \
                     OR (COALESCE(k.last_used_at, 0) = $6 AND k.seq < $4))",
                "COALESCE(k.last_used_at, 0) DESC, k.seq DESC",
            )
        } else {
            ("($4 IS NULL OR k.seq < $4)", "k.seq DESC")
        };
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM keys k WHERE k.keyspace_id <> '{ROOT_KEYSPACE_ID}' \
             AND ($1 IS NULL OR k.keyspace_id IN {visible}) \
             AND ($2 IS NULL OR k.keyspace_id = $2) \
             AND ($3 IS NULL OR k.owner_id = $3) AND {after} ORDER BY {order} LIMIT $5",
            visible = dialect::json_list("$1"),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope_json(filter.visible)?)
            .bind(filter.keyspace_id)
            .bind(filter.owner_id)
            .bind(page.after)
            .bind(i64::from(page.limit) + 1)
            .bind(filter.last_used_before.unwrap_or(0))
            .fetch_all(self.reads())
            .await?;
        page_of(&rows, page.limit, key_from)
    }

    async fn update_key(
        &self,
        key: &KeyRecord,
        quota: QuotaWrite,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE keys SET owner_id = $1, name = $2, scopes = $3, meta = $4, enabled = $5, \
             expires_at = $6, updated_at = $7, ratelimits = $9, \
             quota_remaining = CASE WHEN $10 THEN $11 ELSE quota_remaining END, \
             quota_refill_interval = CASE WHEN $10 THEN $12 ELSE quota_refill_interval END, \
             quota_refill_day = CASE WHEN $10 THEN $13 ELSE quota_refill_day END, \
             quota_refill_amount = CASE WHEN $10 THEN $14 ELSE quota_refill_amount END, \
             quota_refilled_at = CASE WHEN $10 THEN $15 ELSE quota_refilled_at END \
             WHERE key_id = $8",
        )
        .bind(&key.owner_id)
        .bind(&key.name)
        .bind(json_text(&key.scopes)?)
        .bind(json_text(&key.meta)?)
        .bind(key.enabled)
        .bind(key.expires_at.map(to_unix))
        .bind(to_unix(key.updated_at))
        .bind(&key.key_id)
        .bind(json_text(&key.limits.ratelimits)?)
        .bind(quota == QuotaWrite::Set)
        .bind_quota(key.limits.quota.as_ref())
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(e, Conflict::DuplicateId))?;
        expect_one(done.rows_affected())?;
        notify(&mut tx, Invalidation::Key(key.key_id.clone())).await?;
        commit_change(tx, change).await?;
        Ok(())
    }

    async fn revoke_key(
        &self,
        key_id: &str,
        at: Timestamp,
        reason: Option<&str>,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT revoked_at FROM keys WHERE key_id = $1{}",
            dialect::FOR_UPDATE
        );
        let revoked: Option<Option<i64>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(key_id)
            .fetch_optional(&mut *tx)
            .await?;
        match revoked {
            None => return Err(StoreError::NotFound),
            Some(Some(_)) => return Err(StoreError::Conflict(Conflict::AlreadyRevoked)),
            Some(None) => {}
        }
        sqlx::query(
            "UPDATE keys SET revoked_at = $1, revoked_reason = $2, updated_at = $3 WHERE key_id = $4",
        )
        .bind(to_unix(at))
        .bind(reason)
        .bind(to_unix(at))
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        notify(&mut tx, Invalidation::Key(key_id.to_owned())).await?;
        commit_change(tx, change).await?;
        Ok(())
    }

    async fn rotate_key(
        &self,
        key_id: &str,
        successor: &KeyRecord,
        grace_until: Timestamp,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT revoked_at, rotated_to FROM keys WHERE key_id = $1{}",
            dialect::FOR_UPDATE
        );
        let state: Option<(Option<i64>, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(key_id)
            .fetch_optional(&mut *tx)
            .await?;
        match state {
            None => return Err(StoreError::NotFound),
            Some((Some(_), _)) => return Err(StoreError::Conflict(Conflict::AlreadyRevoked)),
            Some((None, Some(_))) => return Err(StoreError::Conflict(Conflict::AlreadyRotated)),
            Some((None, None)) => {}
        }
        if !insert_key(&mut tx, successor).await? {
            return Err(StoreError::Conflict(Conflict::DuplicateId));
        }
        sqlx::query(
            "UPDATE keys SET rotated_to = $1, grace_until = $2, updated_at = $3 WHERE key_id = $4",
        )
        .bind(&successor.key_id)
        .bind(to_unix(grace_until))
        .bind(to_unix(successor.created_at))
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        notify(&mut tx, Invalidation::Key(key_id.to_owned())).await?;
        notify(&mut tx, Invalidation::Key(successor.key_id.clone())).await?;
        commit_change(tx, change).await?;
        Ok(())
    }

    async fn import_keys(
        &self,
        keys: &[KeyRecord],
        audit: &AuditEvent,
    ) -> Result<Vec<bool>, StoreError> {
        if keys.iter().any(|k| k.import.is_none()) {
            return Err(anyhow::anyhow!("import_keys needs keys with an import lookup").into());
        }
        let mut tx = self.begin().await?;
        let done: std::collections::HashSet<String> =
            insert_keys(&mut tx, keys).await?.into_iter().collect();
        let inserted: Vec<bool> = keys.iter().map(|k| done.contains(&k.key_id)).collect();
        let ids: Vec<&str> = keys
            .iter()
            .filter(|k| done.contains(&k.key_id))
            .map(|k| k.key_id.as_str())
            .collect();
        if !ids.is_empty() {
            let mut event = audit.clone();
            event.changes.insert("imported".into(), ids.len().into());
            event
                .changes
                .insert("key_ids".into(), serde_json::json!(ids));
            // Imported keys are found by lookup, and nodes cache missing lookups.
            notify(&mut tx, Invalidation::Imports).await?;
            commit_change(tx, Change::audited(&event)).await?;
        } else {
            tx.commit().await?;
        }
        Ok(inserted)
    }

    async fn has_imported_keys(&self) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM keys WHERE import_lookup IS NOT NULL)",
            )
            .fetch_one(self.reads())
            .await?,
        )
    }

    async fn key_id_by_import_lookup(&self, lookup: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT key_id FROM keys WHERE import_lookup = $1")
                .bind(lookup)
                .fetch_optional(self.reads())
                .await?,
        )
    }

    async fn complete_import(&self, key_id: &str, to: &Verifier) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE keys SET pepper_version = $1, verifier = $2, import_digest = NULL \
             WHERE key_id = $3 AND import_digest IS NOT NULL",
        )
        .bind(i64::from(to.version().get()))
        .bind(to.mac().as_slice())
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            notify(&mut tx, Invalidation::Key(key_id.to_owned())).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_key(&self, key_id: &str, change: Change<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM keys WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        expect_one(done.rows_affected())?;
        notify(&mut tx, Invalidation::Key(key_id.to_owned())).await?;
        notify(&mut tx, Invalidation::Imports).await?;
        commit_change(tx, change).await?;
        Ok(())
    }

    async fn count_root_keys(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keys WHERE keyspace_id = $1")
            .bind(ROOT_KEYSPACE_ID)
            .fetch_one(self.reads())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn holds_keys(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM keys)")
            .fetch_one(self.reads())
            .await
            .context("checking whether keys are stored")?)
    }

    async fn holds_sealed_keys(&self) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM keys WHERE sealed_key IS NOT NULL)")
                .fetch_one(self.reads())
                .await
                .context("checking whether recoverable keys are stored")?,
        )
    }

    async fn secret_checks(&self, name: &str) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT version, check_value FROM secret_checks WHERE name = $1 ORDER BY version",
        )
        .bind(name)
        .fetch_all(self.reads())
        .await
        .context("reading secret check values")?;
        rows.into_iter()
            .map(|(v, check)| {
                Ok((
                    u32::try_from(v).context("secret version out of range")?,
                    check,
                ))
            })
            .collect()
    }

    async fn record_secret_check(
        &self,
        name: &str,
        version: u32,
        check: &[u8],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secret_checks (name, version, check_value, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(name)
        .bind(i64::from(version))
        .bind(check)
        .bind(to_unix(now))
        .execute(self.writes())
        .await
        .context("recording a secret check value")?;
        Ok(())
    }

    async fn legacy_imports(&self) -> Result<Vec<(String, Import)>, StoreError> {
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pending_upgrades WHERE name = 'peppered-imports')",
        )
        .fetch_one(self.reads())
        .await
        .context("checking for pending upgrades")?;
        // Old-shape lookups start `p:`, `d:` or `h<version>:`; peppered ones start `i`.
        let sql = if pending {
            "SELECT key_id, import_format, import_lookup, import_digest FROM keys \
             WHERE import_format IS NOT NULL AND import_lookup IS NOT NULL \
             AND import_lookup NOT LIKE 'i%'"
        } else {
            "SELECT key_id, import_format, import_lookup, import_digest FROM keys \
             WHERE import_format IS NOT NULL AND import_lookup IS NOT NULL \
             AND import_lookup NOT LIKE 'i%' AND import_digest IS NULL"
        };
        let rows: Vec<(String, String, String, Option<Vec<u8>>)> = sqlx::query_as(sql)
            .fetch_all(self.reads())
            .await
            .context("reading imported keys to upgrade")?;
        Ok(rows
            .into_iter()
            .map(|(key_id, format, lookup, digest)| {
                let import = Import {
                    format,
                    lookup,
                    digest,
                    public: None,
                };
                (key_id, import)
            })
            .collect())
    }

    async fn finish_import_upgrade(
        &self,
        upgraded: &[(String, String, Import)],
        version: u32,
        pending_done: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for (key_id, old_lookup, import) in upgraded {
            // A key still on its old digest moves to pepper `version` (its digest is now
            // peppered under it); a key already on the native verifier keeps its own.
            sqlx::query(
                "UPDATE keys SET import_lookup = $1, import_digest = $2, import_public = $3, \
                 pepper_version = CASE WHEN import_digest IS NULL THEN pepper_version ELSE $4 END \
                 WHERE key_id = $5 AND import_lookup = $6",
            )
            .bind(&import.lookup)
            .bind(import.digest.as_deref())
            .bind(import.public.as_deref())
            .bind(i64::from(version))
            .bind(key_id)
            .bind(old_lookup)
            .execute(&mut *tx)
            .await
            .context("storing a peppered import")?;
            notify(&mut tx, Invalidation::Key(key_id.clone())).await?;
        }
        if pending_done {
            sqlx::query("DELETE FROM pending_upgrades WHERE name = 'peppered-imports'")
                .execute(&mut *tx)
                .await
                .context("clearing the pending import upgrade")?;
        }
        notify(&mut tx, Invalidation::Imports).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pepper_versions(&self) -> Result<Vec<u32>, StoreError> {
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT pepper_version FROM keys ORDER BY 1")
                .fetch_all(self.reads())
                .await?;
        versions
            .into_iter()
            .map(|v| Ok(u32::try_from(v).context("stored pepper version out of range")?))
            .collect()
    }

    async fn pepper_version_counts(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT pepper_version, COUNT(*) FROM keys GROUP BY pepper_version ORDER BY 1",
        )
        .fetch_all(self.reads())
        .await?;
        rows.into_iter()
            .map(|(v, n)| {
                Ok((
                    u32::try_from(v).context("stored pepper version out of range")?,
                    u64::try_from(n).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn rehash_key(&self, key_id: &str, from: u32, to: &Verifier) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE keys SET pepper_version = $1, verifier = $2 WHERE key_id = $3 AND pepper_version = $4",
        )
        .bind(i64::from(to.version().get()))
        .bind(to.mac().as_slice())
        .bind(key_id)
        .bind(i64::from(from))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            notify(&mut tx, Invalidation::Key(key_id.to_owned())).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expiring_keys(
        &self,
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
            .fetch_all(self.reads())
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

    async fn record_expiring_events(&self, now: Timestamp) -> Result<u64, StoreError> {
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
        let mut tx = self.begin().await?;
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_unix(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        crate::counters::events_written("key.expiring", done.rows_affected());
        Ok(done.rows_affected())
    }

    async fn list_events(
        &self,
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
            .fetch_all(self.reads())
            .await?;
        page_of(&rows, page.limit, event_from)
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let tx = self.begin().await?;
        commit_change(tx, Change::audited(event)).await?;
        Ok(())
    }

    async fn list_audit_events(
        &self,
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
            .fetch_all(self.reads())
            .await?;
        page_of(&rows, page.limit, audit_from)
    }

    async fn idempotent_response(
        &self,
        actor: &str,
        idempotency_key: &str,
    ) -> Result<Option<IdempotentResponse>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM idempotency_keys WHERE actor = $1 AND idempotency_key = $2")
                .bind(actor)
                .bind(idempotency_key)
                .fetch_optional(self.reads())
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

    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(to_unix(before))
            .execute(self.writes())
            .await?;
        Ok(done.rows_affected())
    }

    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Rows are written in key order, duplicates merged: nodes flushing at the same
        // time then lock rows in the same order and never deadlock (PostgreSQL).
        let mut counts: BTreeMap<(&str, i64, &str), u64> = BTreeMap::new();
        for c in &batch.counts {
            let n = counts.entry((&c.key_id, c.minute, &c.outcome)).or_default();
            *n = n.saturating_add(c.count);
        }
        let mut last_used: BTreeMap<&str, i64> = BTreeMap::new();
        for (key_id, at) in &batch.last_used {
            let t = last_used.entry(key_id).or_insert(i64::MIN);
            *t = (*t).max(to_unix(*at));
        }
        let mut tx = self.begin().await?;
        // Minutes, and their roll-ups into hours and days, in one transaction: the three
        // tables always agree.
        for granularity in Granularity::ALL {
            let mut rolled: BTreeMap<(&str, i64, &str), u64> = BTreeMap::new();
            for (&(key_id, minute, outcome), &count) in &counts {
                let n = rolled
                    .entry((key_id, granularity.floor(minute), outcome))
                    .or_default();
                *n = n.saturating_add(count);
            }
            let (table, column) = granularity.table();
            let sql = format!(
                "INSERT INTO {table} (key_id, {column}, outcome, count) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key_id, {column}, outcome) \
                 DO UPDATE SET count = {table}.count + excluded.count"
            );
            for ((key_id, bucket, outcome), count) in rolled {
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(key_id)
                    .bind(bucket)
                    .bind(outcome)
                    .bind(i64::try_from(count).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let sql = format!(
            "UPDATE keys SET last_used_at = {}(COALESCE(last_used_at, 0), $1) WHERE key_id = $2",
            dialect::GREATEST
        );
        for (key_id, at) in last_used {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(at)
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_quota_use(&self, uses: &[QuotaUse]) -> Result<(), StoreError> {
        let greatest = dialect::GREATEST;
        // In a fixed order, so concurrent writers never deadlock (PostgreSQL).
        let mut uses: Vec<&QuotaUse> = uses.iter().collect();
        uses.sort_by(|a, b| a.target.cmp(&b.target));
        let mut tx = self.begin().await?;
        for u in uses {
            let (table, column, id) = match &u.target {
                QuotaTarget::Key(id) => ("keys", "key_id", id),
                QuotaTarget::Owner(id) => ("owners", "id", id),
            };
            let used = u.used;
            let mut refilled = false;
            if let Some((at, amount)) = u.refilled {
                // Another writer may have refilled for this boundary (or a later one)
                // already: then only the uses are subtracted.
                let sql = format!(
                    "UPDATE {table} SET quota_remaining = {greatest}($1 - $2, 0), quota_refilled_at = $3 \
                     WHERE {column} = $4 AND quota_remaining IS NOT NULL \
                     AND COALESCE(quota_refilled_at, 0) < $3"
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(i64::try_from(amount).unwrap_or(i64::MAX))
                    .bind(used)
                    .bind(to_unix(at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                refilled = done.rows_affected() > 0;
            }
            if !refilled && used != 0 {
                let sql = format!(
                    "UPDATE {table} SET quota_remaining = {greatest}(quota_remaining - $1, 0) \
                     WHERE {column} = $2 AND quota_remaining IS NOT NULL"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(used)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn listen(&self) -> Result<Option<Box<dyn crate::ChangeFeed>>, StoreError> {
        self.listen_feed().await
    }

    fn has_change_feed(&self) -> bool {
        super::HAS_CHANGE_FEED
    }

    async fn publish(&self, what: &Invalidation) -> Result<(), StoreError> {
        self.publish_invalidation(what).await
    }

    async fn usage_series(
        &self,
        target: UsageTarget<'_>,
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        activity::usage_series(self, target, granularity, from, to).await
    }

    async fn usage_totals(
        &self,
        key_ids: &[String],
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Result<Vec<KeyUsageTotal>, StoreError> {
        activity::usage_totals(self, key_ids, granularity, from, to).await
    }

    async fn purge_usage(&self, granularity: Granularity, before: i64) -> Result<u64, StoreError> {
        activity::purge_usage(self, granularity, before).await
    }

    async fn minute_activity(
        &self,
        after: i64,
        through: i64,
    ) -> Result<Vec<MinuteActivity>, StoreError> {
        activity::minute_activity(self, after, through).await
    }

    async fn usage_sum(&self, key_id: &str, from: i64, to: i64) -> Result<u64, StoreError> {
        activity::usage_sum(self, key_id, from, to).await
    }

    async fn record_alert(
        &self,
        alert: &Alert,
        quiet: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        activity::record_alert(self, alert, quiet, now).await
    }

    async fn create_webhook(&self, hook: &Webhook, change: Change<'_>) -> Result<(), StoreError> {
        webhooks::create_webhook(self, hook, change).await
    }

    async fn webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        webhooks::webhook(self, id).await
    }

    async fn list_webhooks(
        &self,
        visible: KeyspaceScope<'_>,
        page: PageRequest,
    ) -> Result<Page<Webhook>, StoreError> {
        webhooks::list_webhooks(self, visible, page).await
    }

    async fn update_webhook(&self, hook: &Webhook, change: Change<'_>) -> Result<(), StoreError> {
        webhooks::update_webhook(self, hook, change).await
    }

    async fn delete_webhook(&self, id: &str, change: Change<'_>) -> Result<(), StoreError> {
        webhooks::delete_webhook(self, id, change).await
    }

    async fn fan_out_events(&self, now_ms: i64, limit: u32) -> Result<u64, StoreError> {
        webhooks::fan_out_events(self, now_ms, limit).await
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        webhooks::claim_deliveries(self, now_ms, lease_ms, limit).await
    }

    async fn record_attempt(
        &self,
        attempt: &Attempt,
        next: AfterAttempt,
    ) -> Result<(), StoreError> {
        webhooks::record_attempt(self, attempt, next).await
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        webhooks::list_deliveries(self, webhook_id, status, page).await
    }

    async fn delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        webhooks::delivery(self, webhook_id, delivery_id).await
    }

    async fn delivery_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, StoreError> {
        webhooks::delivery_attempts(self, delivery_id).await
    }

    async fn resend_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
        now_ms: i64,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        webhooks::resend_delivery(self, webhook_id, delivery_id, now_ms, change).await
    }

    async fn usage(&self, key_id: &str, since: i64) -> Result<Vec<UsageCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, minute, outcome, count FROM usage_minutely \
             WHERE key_id = $1 AND minute >= $2 ORDER BY minute, outcome",
        )
        .bind(key_id)
        .bind(since)
        .fetch_all(self.reads())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageCount {
                    key_id: row.try_get("key_id")?,
                    minute: row.try_get("minute")?,
                    outcome: row.try_get("outcome")?,
                    count: u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0),
                })
            })
            .collect()
    }
}
