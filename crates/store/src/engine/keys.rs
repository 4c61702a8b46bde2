//! Keys: inserted (one, or many in multi-row statements), read for verification, listed,
//! updated, revoked, rotated and deleted.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use sqlx::Row as _;

use super::audit::{commit_change, count_written, write_audits, write_change, write_idempotency};
use super::plans::{apply_plan_quota, plan_columns, plan_part, plan_ratelimits, shorter};
use super::rows::{
    BindQuota as _, DbRow, Tx, classify, expect_one, grants_from, ip_allowlist_from,
    ip_allowlist_text, json_text, key_from, limits_from, names_text, page_of, quota_columns,
    ratelimits_from, role_from, roles_from, scope_json,
};
use super::{Db, Engine, dialect, notify};
use crate::error::{Conflict, StoreError};
use crate::model::{
    AuditEvent, Change, IdempotentResponse, Invalidation, KeyFilter, KeyForVerify, KeyRecord,
    KeyStateFilter, Page, PageRequest, QuotaWrite, ROOT_KEYSPACE_ID, Timestamp, to_unix,
};

/// Inserts `key`; returns false (inserting nothing) when its import lookup is taken.
async fn insert_key(tx: &mut Tx, key: &KeyRecord) -> Result<bool, StoreError> {
    Ok(insert_keys(tx, std::slice::from_ref(key)).await?.len() == 1)
}

/// Rows per multi-row INSERT: 35 columns each stays under SQLite's 32,766 parameters.
const INSERT_CHUNK: usize = 500;

/// Inserts `keys` with multi-row statements (bulk imports would otherwise pay one
/// statement round trip per key); returns the key ids actually inserted (a key whose
/// import lookup is already stored is skipped).
pub(in super::super) async fn insert_keys(
    tx: &mut Tx,
    keys: &[KeyRecord],
) -> Result<Vec<String>, StoreError> {
    let mut inserted = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(INSERT_CHUNK) {
        let mut texts = Vec::with_capacity(chunk.len());
        for key in chunk {
            texts.push((
                json_text(&key.scopes)?,
                json_text(&key.meta)?,
                key.allowed_keyspaces.as_ref().map(json_text).transpose()?,
                json_text(&key.limits.ratelimits)?,
                ip_allowlist_text(key.ip_allowlist.as_ref())?,
                names_text(&key.grants.roles)?,
                names_text(&key.grants.permissions)?,
            ));
        }
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO keys (key_id, keyspace_id, owner_id, name, last4, pepper_version, \
             verifier, scopes, meta, allowed_keyspaces, enabled, expires_at, revoked_at, \
             revoked_reason, rotated_to, grace_until, rotated_from, sealed_key, import_format, \
             import_lookup, import_digest, import_public, last_used_at, created_at, updated_at, \
             ratelimits, quota_remaining, quota_refill_interval, quota_refill_day, \
             quota_refill_amount, quota_refilled_at, ip_allowlist, roles, permissions, plan) ",
        );
        q.push_values(
            chunk.iter().zip(texts),
            |mut row, (key, (scopes, meta, allowed, ratelimits, ip_allowlist, roles, permissions))| {
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
                    .push_bind(quota.4)
                    .push_bind(ip_allowlist)
                    .push_bind(roles)
                    .push_bind(permissions)
                    .push_bind(key.grants.plan.clone());
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

const KEY_COLUMNS: &str = "k.seq, k.key_id, k.keyspace_id, k.owner_id, k.name, k.last4, \
    k.pepper_version, k.verifier, k.scopes, k.meta, k.allowed_keyspaces, k.enabled, \
    k.expires_at, k.revoked_at, k.revoked_reason, k.rotated_to, k.grace_until, \
    k.rotated_from, k.sealed_key, k.import_format, k.import_lookup, k.import_digest, \
    k.import_public, k.last_used_at, k.created_at, k.updated_at, k.ratelimits, k.quota_remaining, \
    k.quota_refill_interval, k.quota_refill_day, k.quota_refill_amount, k.quota_refilled_at, \
    k.ip_allowlist, k.roles, k.permissions, k.plan";

pub(super) async fn create_key(
    store: &Engine,
    key: &KeyRecord,
    change: Change<'_>,
) -> Result<(), StoreError> {
    // SQLite: in a group commit with the other creations waiting (see `crate::group`).
    if let Some(answer) = store.create_key_in_group(key, change).await {
        return answer;
    }
    let mut tx = store.begin().await?;
    let event = write_key_creation(&mut tx, key, change).await?;
    tx.commit().await?;
    count_written(change.audit, event);
    Ok(())
}

/// Writes a new key with its change in `tx`; returns the lifecycle event the change
/// caused (see [`count_written`], once committed).
pub(in super::super) async fn write_key_creation(
    tx: &mut Tx,
    key: &KeyRecord,
    change: Change<'_>,
) -> Result<Option<&'static str>, StoreError> {
    if !insert_key(tx, key).await? {
        return Err(StoreError::Conflict(Conflict::DuplicateId));
    }
    // A node may have cached "no such key" for this id.
    notify(tx, Invalidation::Key(key.key_id.clone())).await?;
    write_change(tx, change).await
}

/// Creates `keys` with their audit events (one per key, in the same order) and the
/// request's stored answer, in one transaction: all of them or, on any error (a taken
/// key id, a taken idempotency key), none.
pub(super) async fn create_keys(
    store: &Engine,
    keys: &[KeyRecord],
    audits: &[AuditEvent],
    idempotency: Option<&IdempotentResponse>,
) -> Result<(), StoreError> {
    if keys.len() != audits.len() {
        return Err(anyhow::anyhow!("create_keys needs one audit event per key").into());
    }
    let mut tx = store.begin().await?;
    // First: a concurrent twin of this request fails here, before writing any key.
    if let Some(idem) = idempotency {
        write_idempotency(&mut tx, idem).await?;
    }
    if insert_keys(&mut tx, keys).await?.len() != keys.len() {
        return Err(StoreError::Conflict(Conflict::DuplicateId));
    }
    for key in keys {
        notify(&mut tx, Invalidation::Key(key.key_id.clone())).await?;
    }
    let events = write_audits(&mut tx, &audits.iter().collect::<Vec<_>>()).await?;
    tx.commit().await?;
    for audit in audits {
        crate::counters::audit_written(&audit.action);
    }
    for kind in events {
        crate::counters::events_written(kind, 1);
    }
    Ok(())
}

/// The SELECT of a key with its keyspace and owner, as the verify path reads it.
fn for_verify_select() -> String {
    format!(
        "SELECT {KEY_COLUMNS}, ks.prefix AS ks_prefix, ks.name AS ks_name, \
         ks.max_key_age_seconds AS ks_max_age, ks.ratelimits AS ks_ratelimits, \
         ks.ip_allowlist AS ks_ip_allowlist, o.ip_allowlist AS o_ip_allowlist, \
         o.roles AS o_roles, o.permissions AS o_permissions, \
         o.external_id AS owner_external_id, o.ratelimits AS o_ratelimits, \
         o.quota_remaining AS o_quota_remaining, \
         o.quota_refill_interval AS o_quota_refill_interval, \
         o.quota_refill_day AS o_quota_refill_day, \
         o.quota_refill_amount AS o_quota_refill_amount, \
         o.quota_refilled_at AS o_quota_refilled_at, o.plan AS o_plan, \
         {}, {} \
         FROM keys k JOIN keyspaces ks ON ks.id = k.keyspace_id \
         LEFT JOIN owners o ON o.id = k.owner_id \
         LEFT JOIN plans p ON p.name = k.plan LEFT JOIN plans op ON op.name = o.plan",
        plan_columns("p"),
        plan_columns("op"),
    )
}

fn for_verify_from(row: &DbRow) -> Result<KeyForVerify, StoreError> {
    let mut record = for_verify_own(row)?;
    record.scopes = record.key.scopes.clone();
    // The key's plan, then its owner's: scopes, roles and permissions add up, the
    // shorter maximum age wins; rate limits and quota are the key's or the owner's.
    // `record.key` stays as stored (it is what an update writes back).
    let (key_plan, owner_plan) = (plan_part(row, "p")?, plan_part(row, "op")?);
    let (key_plan_limits, owner_plan_limits) = (
        key_plan.as_ref().map(|p| &p.limits),
        owner_plan.as_ref().map(|p| &p.limits),
    );
    record.plan_ratelimits = plan_ratelimits(&record.key.limits, key_plan_limits);
    apply_plan_quota(&mut record.key.limits, key_plan_limits);
    let owner_extra = plan_ratelimits(&record.owner_limits, owner_plan_limits);
    record.owner_limits.ratelimits.extend(owner_extra);
    apply_plan_quota(&mut record.owner_limits, owner_plan_limits);
    for plan in [&key_plan, &owner_plan].into_iter().flatten() {
        for scope in &plan.scopes {
            if !record.scopes.contains(scope) {
                record.scopes.push(scope.clone());
            }
        }
        record
            .permissions
            .extend(plan.grants.permissions.iter().cloned());
        record.max_key_age = shorter(record.max_key_age, plan.max_key_age);
    }
    Ok(record)
}

/// The roles named for a key besides its own: its owner's and its plans'.
fn other_roles(row: &DbRow) -> Result<Vec<String>, StoreError> {
    let mut roles = grants_from(row, "o_")?.roles;
    for alias in ["p_", "op_"] {
        roles.extend(roles_from(row, alias)?.roles);
    }
    Ok(roles)
}

fn for_verify_own(row: &DbRow) -> Result<KeyForVerify, StoreError> {
    Ok(KeyForVerify {
        key: key_from(row)?,
        keyspace_prefix: row.try_get("ks_prefix")?,
        keyspace_name: row.try_get("ks_name")?,
        max_key_age: row.try_get("ks_max_age")?,
        owner_external_id: row.try_get("owner_external_id")?,
        keyspace_ratelimits: ratelimits_from(row, "ks_ratelimits")?,
        owner_limits: limits_from(row, "o_")?,
        owner_ip_allowlist: ip_allowlist_from(row, "o_ip_allowlist")?,
        keyspace_ip_allowlist: ip_allowlist_from(row, "ks_ip_allowlist")?,
        scopes: Vec::new(),
        plan_ratelimits: Vec::new(),
        // Own and owner's for now; the roles' are added by `resolve_roles`.
        permissions: {
            let (key, owner) = (grants_from(row, "")?, grants_from(row, "o_")?);
            let mut all = key.permissions;
            all.extend(owner.permissions);
            all
        },
    })
}

/// Completes each record's `permissions` with those of the roles it or its owner names
/// (read from the key's keyspace), then sorts them for lookups.
async fn resolve_roles(
    store: &Engine,
    owners: &[Vec<String>],
    records: &mut [KeyForVerify],
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT * FROM roles WHERE keyspace_id = $1 AND name IN {}",
        dialect::json_list("$2")
    );
    for (record, owner_roles) in records.iter_mut().zip(owners) {
        let named: Vec<&String> = record.key.grants.roles.iter().chain(owner_roles).collect();
        if !named.is_empty() {
            // Only the roles named (at most 64 each from the key, its owner and their
            // plans): never the keyspace's whole list.
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(&record.key.keyspace_id)
                .bind(json_text(&named)?)
                .fetch_all(store.reads())
                .await?;
            for row in &rows {
                record.permissions.extend(role_from(row)?.permissions);
            }
        }
        record.permissions.sort_unstable();
        record.permissions.dedup();
    }
    Ok(())
}

pub(super) async fn key_for_verify(
    store: &Engine,
    key_id: &str,
) -> Result<Option<KeyForVerify>, StoreError> {
    let sql = format!("{} WHERE k.key_id = $1", for_verify_select());
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key_id)
        .fetch_optional(store.reads())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut records = [for_verify_from(&row)?];
    resolve_roles(store, &[other_roles(&row)?], &mut records).await?;
    let [record] = records;
    Ok(Some(record))
}

pub(super) async fn keys_for_verify(
    store: &Engine,
    key_ids: &[String],
) -> Result<Vec<KeyForVerify>, StoreError> {
    let sql = format!(
        "{} WHERE k.key_id IN {}",
        for_verify_select(),
        dialect::json_list("$1")
    );
    let mut found = Vec::new();
    let mut owner_roles = Vec::new();
    for chunk in key_ids.chunks(500) {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(json_text(chunk)?)
            .fetch_all(store.reads())
            .await?;
        for row in &rows {
            found.push(for_verify_from(row)?);
            owner_roles.push(other_roles(row)?);
        }
    }
    resolve_roles(store, &owner_roles, &mut found).await?;
    Ok(found)
}

pub(super) async fn list_keys(
    store: &Engine,
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
    // At $8: revoked (or rotated with its grace over), else expired (its own expiry or
    // its keyspace's maximum age), else disabled, else active; as the verify path decides.
    let revoked = "(k.revoked_at IS NOT NULL \
         OR (k.grace_until IS NOT NULL AND k.grace_until <= $8))";
    let expired = "((k.expires_at IS NOT NULL AND k.expires_at <= $8) \
         OR EXISTS (SELECT 1 FROM keyspaces s WHERE s.id = k.keyspace_id \
             AND s.max_key_age_seconds IS NOT NULL \
             AND k.created_at + s.max_key_age_seconds <= $8))";
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM keys k WHERE {which} \
         AND ($1 IS NULL OR k.keyspace_id IN {visible}) \
         AND ($2 IS NULL OR k.keyspace_id = $2) \
         AND ($3 IS NULL OR k.owner_id = $3) \
         AND ($7 IS NULL OR ($7 = 'revoked' AND {revoked}) \
             OR ($7 = 'expired' AND NOT {revoked} AND {expired}) \
             OR ($7 = 'disabled' AND NOT {revoked} AND NOT {expired} AND NOT k.enabled) \
             OR ($7 = 'active' AND NOT {revoked} AND NOT {expired} AND k.enabled)) \
         AND ($9 IS NULL OR k.key_id LIKE $9 ESCAPE '\\' \
             OR LOWER(COALESCE(k.name, '')) LIKE $10 ESCAPE '\\' \
             OR k.owner_id IN (SELECT o.id FROM owners o WHERE o.external_id = $11)) \
         AND {after} ORDER BY {order} LIMIT $5",
        visible = dialect::json_list("$1"),
        which = if filter.root_keys {
            format!("k.keyspace_id = '{ROOT_KEYSPACE_ID}'")
        } else {
            format!("k.keyspace_id <> '{ROOT_KEYSPACE_ID}'")
        },
    );
    let (state, now) = match filter.state {
        Some((state, now)) => (Some(state_name(state)), now),
        None => (None, 0),
    };
    let search = filter.search.map(|text| {
        let escaped = like_escape(text);
        (
            format!("{escaped}%"),
            format!("%{}%", escaped.to_lowercase()),
            text,
        )
    });
    let (visible, keyspace_id) = if filter.root_keys {
        (None, None)
    } else {
        (scope_json(filter.visible)?, filter.keyspace_id)
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(visible)
        .bind(keyspace_id)
        .bind(filter.owner_id)
        .bind(page.after)
        .bind(i64::from(page.limit) + 1)
        .bind(filter.last_used_before.unwrap_or(0))
        .bind(state)
        .bind(now)
        .bind(search.as_ref().map(|s| s.0.clone()))
        .bind(search.as_ref().map(|s| s.1.clone()))
        .bind(search.as_ref().map(|s| s.2))
        .fetch_all(store.reads())
        .await?;
    page_of(&rows, page.limit, key_from)
}

fn state_name(state: KeyStateFilter) -> &'static str {
    match state {
        KeyStateFilter::Active => "active",
        KeyStateFilter::Revoked => "revoked",
        KeyStateFilter::Expired => "expired",
        KeyStateFilter::Disabled => "disabled",
    }
}

/// `text` with `LIKE`'s wildcards (and the escape character) escaped by `\`.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(super) async fn update_key(
    store: &Engine,
    key: &KeyRecord,
    quota: QuotaWrite,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query(
        "UPDATE keys SET owner_id = $1, name = $2, scopes = $3, meta = $4, enabled = $5, \
         expires_at = $6, updated_at = $7, ratelimits = $9, \
         quota_remaining = CASE WHEN $10 THEN $11 ELSE quota_remaining END, \
         quota_refill_interval = CASE WHEN $10 THEN $12 ELSE quota_refill_interval END, \
         quota_refill_day = CASE WHEN $10 THEN $13 ELSE quota_refill_day END, \
         quota_refill_amount = CASE WHEN $10 THEN $14 ELSE quota_refill_amount END, \
         quota_refilled_at = CASE WHEN $10 THEN $15 ELSE quota_refilled_at END, \
         ip_allowlist = $16, roles = $17, permissions = $18, plan = $19 WHERE key_id = $8",
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
    .bind(ip_allowlist_text(key.ip_allowlist.as_ref())?)
    .bind(names_text(&key.grants.roles)?)
    .bind(names_text(&key.grants.permissions)?)
    .bind(&key.grants.plan)
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(e, Conflict::DuplicateId))?;
    expect_one(done.rows_affected())?;
    notify(&mut tx, Invalidation::Key(key.key_id.clone())).await?;
    commit_change(tx, change).await?;
    Ok(())
}

pub(super) async fn revoke_key(
    store: &Engine,
    key_id: &str,
    at: Timestamp,
    reason: Option<&str>,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
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

pub(super) async fn rotate_key(
    store: &Engine,
    key_id: &str,
    successor: &KeyRecord,
    grace_until: Timestamp,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
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

pub(super) async fn delete_key(
    store: &Engine,
    key_id: &str,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
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

pub(super) async fn count_root_keys(store: &Engine) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keys WHERE keyspace_id = $1")
        .bind(ROOT_KEYSPACE_ID)
        .fetch_one(store.reads())
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(super) async fn holds_keys(store: &Engine) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM keys)")
        .fetch_one(store.reads())
        .await?)
}

pub(super) async fn holds_sealed_keys(store: &Engine) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM keys WHERE sealed_key IS NOT NULL)")
            .fetch_one(store.reads())
            .await?,
    )
}
