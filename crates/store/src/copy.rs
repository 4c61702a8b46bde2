//! Moving a SQLite deployment to PostgreSQL: every table, row for row, in one read
//! snapshot of the SQLite file and one PostgreSQL transaction (`keyhaven copy`).
//!
//! The columns come from the PostgreSQL schema (`information_schema`), so a column added
//! to both engines' migrations is copied without touching this file, and one missing
//! from the SQLite file is an error, not a silent loss. Sequence numbers are kept, so
//! pagination cursors and the order of the audit log carry over.

use anyhow::Context as _;
use sqlx::sqlite::SqliteRow;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::error::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// Tables in dependency order, each with the columns its rows are read in order of.
const TABLES: &[(&str, &str)] = &[
    ("keyspaces", "seq"),
    ("roles", "keyspace_id, name"),
    ("plans", "name"),
    ("owners", "seq"),
    ("keys", "seq"),
    ("key_leaks", "key_id"),
    ("leak_batches", "digest"),
    ("audit_events", "seq"),
    ("events", "seq"),
    ("idempotency_keys", "actor, idempotency_key"),
    ("usage_minutely", "key_id, minute, outcome"),
    ("usage_hourly", "key_id, hour, outcome"),
    ("usage_daily", "key_id, day, outcome"),
    ("alert_episodes", "key_id, kind"),
    ("webhooks", "seq"),
    ("webhook_deliveries", "seq"),
    ("webhook_attempts", "seq"),
    ("secret_checks", "name, version"),
    ("pending_upgrades", "name"),
    ("operators", "email"),
    ("ratelimit_overrides", "namespace, identifier"),
    // Sessions move too, so nobody is signed out by the move; failed sign-ins do not
    // (they only matter for minutes).
    ("web_sessions", "token_hash"),
];

/// Rows per read and per multi-row INSERT (the keys table's ~35 columns × 1,000 stays
/// under PostgreSQL's 65,535 parameters).
const CHUNK: i64 = 1_000;

/// How many rows each table received.
pub type CopyReport = Vec<(&'static str, u64)>;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bytes,
    Bool,
}

/// Copies everything in `from` into `to`, whose database must hold no keyspace (besides
/// the reserved one), owner, key or audit event. `progress` is called after each chunk
/// with the table and the rows copied into it so far.
pub async fn sqlite_to_postgres(
    from: &SqliteStore,
    to: &PgStore,
    mut progress: impl FnMut(&str, u64),
) -> Result<CopyReport, StoreError> {
    let pg = to.writes();
    // One snapshot of the SQLite file (a read transaction in WAL mode), one target
    // transaction: a copy is all or nothing.
    let mut source = from.reads().begin().await?;
    let mut target = pg.begin().await?;
    let existing: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM keyspaces WHERE NOT reserved) + \
         (SELECT COUNT(*) FROM owners) + (SELECT COUNT(*) FROM keys) + \
         (SELECT COUNT(*) FROM audit_events) + (SELECT COUNT(*) FROM events) + \
         (SELECT COUNT(*) FROM idempotency_keys) + (SELECT COUNT(*) FROM usage_minutely) + \
         (SELECT COUNT(*) FROM webhooks) + (SELECT COUNT(*) FROM secret_checks) + \
         (SELECT COUNT(*) FROM plans) + (SELECT COUNT(*) FROM ratelimit_overrides)",
    )
    .fetch_one(&mut *target)
    .await?;
    if existing > 0 {
        return Err(anyhow::anyhow!(
            "the target database is not empty ({existing} rows): copy into a freshly \
             migrated database that no server has started on"
        )
        .into());
    }
    let mut report = Vec::new();
    for &(table, order) in TABLES {
        let columns = columns(&mut target, table).await?;
        let names = columns
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut copied = 0u64;
        let mut offset = 0i64;
        loop {
            let sql = format!("SELECT {names} FROM {table} ORDER BY {order} LIMIT $1 OFFSET $2");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(CHUNK)
                .bind(offset)
                .fetch_all(&mut *source)
                .await
                .with_context(|| format!("reading {table} from SQLite"))?;
            if rows.is_empty() {
                break;
            }
            let mut insert =
                QueryBuilder::<Postgres>::new(format!("INSERT INTO {table} ({names}) "));
            let mut failed = None;
            insert.push_values(&rows, |mut values, row| {
                for (i, (name, kind)) in columns.iter().enumerate() {
                    if let Err(e) = bind(&mut values, row, i, *kind) {
                        failed.get_or_insert(anyhow::anyhow!("{table}.{name}: {e}"));
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e.into());
            }
            // The reserved root keyspace is created by the migrations on both sides; any
            // other conflict is an error (the target was empty).
            if table == "keyspaces" {
                insert.push(" ON CONFLICT (id) DO NOTHING");
            }
            insert
                .build()
                .execute(&mut *target)
                .await
                .with_context(|| format!("writing {table} to PostgreSQL"))?;
            copied += rows.len() as u64;
            offset += CHUNK;
            progress(table, copied);
        }
        if order == "seq" {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'seq'), \
                 GREATEST((SELECT MAX(seq) FROM {table}), 1))"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *target)
                .await?;
        }
        report.push((table, copied));
    }
    target.commit().await?;
    source.rollback().await?;
    Ok(report)
}

/// The target table's columns and how each is bound.
async fn columns(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
) -> Result<Vec<(String, Kind)>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await?;
    if rows.is_empty() {
        bail_store(format!(
            "the target has no table {table}: run `keyhaven migrate` on it"
        ))?;
    }
    rows.into_iter()
        .map(|(name, ty)| {
            let kind = match ty.as_str() {
                "bigint" | "integer" => Kind::Int,
                "text" => Kind::Text,
                "bytea" => Kind::Bytes,
                "boolean" => Kind::Bool,
                other => return bail_store(format!("{table}.{name} has unexpected type {other}")),
            };
            Ok((name, kind))
        })
        .collect()
}

fn bail_store<T>(message: String) -> Result<T, StoreError> {
    Err(anyhow::anyhow!(message).into())
}

fn bind(
    values: &mut sqlx::query_builder::Separated<'_, Postgres, &'static str>,
    row: &SqliteRow,
    i: usize,
    kind: Kind,
) -> anyhow::Result<()> {
    match kind {
        Kind::Int => values.push_bind(row.try_get::<Option<i64>, _>(i)?),
        Kind::Text => values.push_bind(row.try_get::<Option<String>, _>(i)?),
        Kind::Bytes => values.push_bind(row.try_get::<Option<Vec<u8>>, _>(i)?),
        Kind::Bool => values.push_bind(row.try_get::<Option<bool>, _>(i)?),
    };
    Ok(())
}
