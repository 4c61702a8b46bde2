//! Row mapping for the engines' queries: rows to model types (and quota columns back to
//! binds), pages, and the constraint violations the API reports as conflicts.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use anyhow::Context as _;
use keyhaven_core::{IpAllowlist, PepperVersion, Verifier};
use serde_json::{Map, Value};
use sqlx::{Row as _, Transaction};

use super::Db;
use crate::activity::AlertThresholds;
use crate::error::{Conflict, StoreError};
use crate::model::{
    AuditEvent, Branding, Event, Grants, Import, KeyRecord, Keyspace, KeyspacePolicy,
    KeyspaceScope, LeakPolicy, Limits, Owner, Page, Plan, Quota, RateLimitDef, Role, Rotation,
    from_unix, interval_from, interval_name, to_unix,
};

pub(super) type DbRow = <Db as sqlx::Database>::Row;
pub(super) type Tx = Transaction<'static, Db>;

pub(super) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    Ok(serde_json::to_string(value).context("encoding a JSON column")?)
}

pub(super) fn json_map(text: &str) -> Result<Map<String, Value>, StoreError> {
    Ok(serde_json::from_str(text).context("decoding a JSON column")?)
}

pub(super) fn ratelimits_from(row: &DbRow, column: &str) -> Result<Vec<RateLimitDef>, StoreError> {
    let text: String = row.try_get(column)?;
    Ok(serde_json::from_str(&text).context("decoding rate limits")?)
}

/// The roles and permissions stored in a row's `roles` and `permissions` columns
/// (named after `prefix`, as [`limits_from`]).
pub(super) fn grants_from(row: &DbRow, prefix: &str) -> Result<Grants, StoreError> {
    Ok(Grants {
        plan: row.try_get(format!("{prefix}plan").as_str())?,
        ..roles_from(row, prefix)?
    })
}

/// The roles and permissions of a row's `<prefix>roles` and `<prefix>permissions`
/// columns (a plan's, which names no plan).
pub(super) fn roles_from(row: &DbRow, prefix: &str) -> Result<Grants, StoreError> {
    let list = |name: &str| -> Result<Vec<String>, StoreError> {
        match row.try_get::<Option<String>, _>(format!("{prefix}{name}").as_str())? {
            Some(text) => Ok(serde_json::from_str(&text).context("decoding roles or permissions")?),
            None => Ok(Vec::new()),
        }
    };
    Ok(Grants {
        plan: None,
        roles: list("roles")?,
        permissions: list("permissions")?,
    })
}

/// A plan as stored in `plans`.
pub(super) fn plan_from(row: &DbRow) -> Result<Plan, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(Plan {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        limits: limits_from(row, "")?,
        scopes: serde_json::from_str(&scopes).context("decoding a plan's scopes")?,
        grants: roles_from(row, "")?,
        max_key_age: row.try_get("max_key_age_seconds")?,
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

/// A list of roles or permissions as stored: `NULL` when empty.
pub(super) fn names_text(names: &[String]) -> Result<Option<String>, StoreError> {
    if names.is_empty() {
        Ok(None)
    } else {
        json_text(names).map(Some)
    }
}

pub(super) fn role_from(row: &DbRow) -> Result<Role, StoreError> {
    let permissions: String = row.try_get("permissions")?;
    Ok(Role {
        keyspace_id: row.try_get("keyspace_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        permissions: serde_json::from_str(&permissions).context("decoding a role's permissions")?,
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

/// An IP allowlist as stored in `column`: a JSON array of networks, or `NULL` for none.
pub(super) fn ip_allowlist_from(
    row: &DbRow,
    column: &str,
) -> Result<Option<IpAllowlist>, StoreError> {
    let Some(text) = row.try_get::<Option<String>, _>(column)? else {
        return Ok(None);
    };
    let entries: Vec<String> = serde_json::from_str(&text).context("decoding an IP allowlist")?;
    Ok(IpAllowlist::parse(&entries).context("a stored IP allowlist")?)
}

/// An IP allowlist as stored: `NULL` for none.
pub(super) fn ip_allowlist_text(list: Option<&IpAllowlist>) -> Result<Option<String>, StoreError> {
    list.map(|l| json_text(&l.entries())).transpose()
}

/// The limits stored in a row's `ratelimits` and `quota_*` columns, each name after
/// `prefix` (empty for the row's own table, `o_` for the owner joined to a key).
pub(super) fn limits_from(row: &DbRow, prefix: &str) -> Result<Limits, StoreError> {
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
            let from_plan = interval.as_deref() == Some(PLAN_REFILL);
            let refill = match (interval, amount) {
                (Some(name), Some(amount)) if name != PLAN_REFILL => {
                    Some(keyhaven_core::quota::Refill {
                        interval: interval_from(&name, day.and_then(|d| u8::try_from(d).ok()))
                            .context("stored refill interval is unknown")?,
                        amount: u64::try_from(amount).unwrap_or(0),
                    })
                }
                _ => None,
            };
            Some(Quota {
                remaining: u64::try_from(remaining).unwrap_or(0),
                refill,
                refilled_at: from_unix(
                    row.try_get::<Option<i64>, _>(col("quota_refilled_at").as_str())?
                        .unwrap_or(0),
                ),
                from_plan,
            })
        }
    };
    Ok(Limits { ratelimits, quota })
}

/// The quota columns' values: remaining, refill interval, day, amount, refilled_at.
pub(super) type QuotaColumns = (
    Option<i64>,
    Option<&'static str>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The stored refill interval of a quota counter that refills by its plan's rule.
pub(super) const PLAN_REFILL: &str = "plan";

pub(super) fn quota_columns(quota: Option<&Quota>) -> QuotaColumns {
    let Some(q) = quota else {
        return (None, None, None, None, None);
    };
    let (interval, day, amount) = match q.refill {
        _ if q.from_plan => (Some(PLAN_REFILL), None, None),
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

pub(super) type DbQuery<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>;

pub(super) trait BindQuota {
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

pub(super) fn keyspace_from(row: &DbRow) -> Result<Keyspace, StoreError> {
    Ok(Keyspace {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        policy: KeyspacePolicy {
            max_key_age: row.try_get("max_key_age_seconds")?,
            default_grace: row.try_get("default_grace_seconds")?,
            expiry_warning: row.try_get("expiry_warning_seconds")?,
            token_max_ttl: row.try_get("token_max_ttl_seconds")?,
            secret_length: u8::try_from(row.try_get::<i64, _>("secret_bytes")?)
                .ok()
                .and_then(keyhaven_core::SecretLength::from_bytes)
                .context("stored secret_bytes is neither 22 nor 32")?,
        },
        ratelimits: ratelimits_from(row, "ratelimits")?,
        alerts: thresholds_from(row)?,
        branding: match row.try_get::<Option<String>, _>("branding")? {
            Some(text) => serde_json::from_str(&text).context("decoding a keyspace's branding")?,
            None => Branding::default(),
        },
        leak_policy: match row.try_get::<Option<String>, _>("leak_policy")? {
            Some(text) => LeakPolicy::parse(&text)
                .with_context(|| format!("a keyspace's leak policy `{text}` is not known"))?,
            None => LeakPolicy::Revoke,
        },
        ip_allowlist: ip_allowlist_from(row, "ip_allowlist")?,
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

/// A keyspace's leak policy as stored: `NULL` for the default (revoke).
pub(super) fn leak_policy_text(policy: LeakPolicy) -> Option<&'static str> {
    (policy != LeakPolicy::Revoke).then(|| policy.as_str())
}

/// A keyspace's branding as stored: `NULL` when it sets nothing.
pub(super) fn branding_text(branding: &Branding) -> Result<Option<String>, StoreError> {
    if branding.is_empty() {
        Ok(None)
    } else {
        json_text(branding).map(Some)
    }
}

/// A keyspace's `alert_*` columns.
pub(super) fn thresholds_from(row: &DbRow) -> Result<AlertThresholds, StoreError> {
    let column = |name: &str| row.try_get::<Option<i64>, _>(name);
    Ok(AlertThresholds {
        spike_factor: column("alert_spike_factor")?.and_then(|n| u32::try_from(n).ok()),
        spike_min_per_minute: column("alert_spike_min_per_minute")?
            .and_then(|n| u64::try_from(n).ok()),
        failed_per_minute: column("alert_failed_per_minute")?.and_then(|n| u64::try_from(n).ok()),
    })
}

/// A threshold as stored (the API bounds them far below `i64::MAX`).
pub(super) fn threshold(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

pub(super) fn event_from(row: &DbRow) -> Result<Event, StoreError> {
    Ok(Event {
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        key_id: row.try_get("key_id")?,
        keyspace_id: row.try_get("keyspace_id")?,
        payload: json_map(row.try_get("payload")?)?,
        created_at: from_unix(row.try_get("created_at")?),
    })
}

pub(super) fn owner_from(row: &DbRow) -> Result<Owner, StoreError> {
    Ok(Owner {
        id: row.try_get("id")?,
        external_id: row.try_get("external_id")?,
        name: row.try_get("name")?,
        meta: json_map(row.try_get("meta")?)?,
        limits: limits_from(row, "")?,
        ip_allowlist: ip_allowlist_from(row, "ip_allowlist")?,
        grants: grants_from(row, "")?,
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

pub(super) fn key_from(row: &DbRow) -> Result<KeyRecord, StoreError> {
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
        ip_allowlist: ip_allowlist_from(row, "ip_allowlist")?,
        grants: grants_from(row, "")?,
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(from_unix),
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

pub(super) fn audit_from(row: &DbRow) -> Result<AuditEvent, StoreError> {
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

pub(super) fn page_of<T>(
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
pub(super) fn classify(e: sqlx::Error, unique: Conflict) -> StoreError {
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
pub(super) fn classify_delete(e: sqlx::Error, referenced: Conflict) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return StoreError::Conflict(referenced);
    }
    e.into()
}

/// A `keyspace_id IN (...)` restriction as a JSON array (see `dialect::json_list`), or
/// `None` for all.
pub(super) fn scope_json(visible: KeyspaceScope<'_>) -> Result<Option<String>, StoreError> {
    visible.map(json_text).transpose()
}

/// Whether `sql` (a `SELECT EXISTS` with one `?` for the id) finds `id`.
pub(super) async fn id_exists(
    tx: &mut Tx,
    sql: &'static str,
    id: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

pub(super) fn expect_one(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}
