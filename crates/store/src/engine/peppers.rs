//! Pepper versions: which are in use, rehashing a key to a new one, and the check values
//! that tell a wrong pepper or sealing secret from the right one.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use anyhow::Context as _;
use keyhaven_core::Verifier;

use super::{Engine, notify};
use crate::error::StoreError;
use crate::model::{Invalidation, Timestamp, from_unix, to_unix};

pub(super) async fn secret_checks(
    store: &Engine,
    name: &str,
) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT version, check_value FROM secret_checks WHERE name = $1 ORDER BY version",
    )
    .bind(name)
    .fetch_all(store.reads())
    .await?;
    rows.into_iter()
        .map(|(v, check)| {
            Ok((
                u32::try_from(v).context("secret version out of range")?,
                check,
            ))
        })
        .collect()
}

pub(super) async fn secret_check_times(
    store: &Engine,
    name: &str,
) -> Result<Vec<(u32, Timestamp)>, StoreError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT version, created_at FROM secret_checks WHERE name = $1 ORDER BY version",
    )
    .bind(name)
    .fetch_all(store.reads())
    .await?;
    rows.into_iter()
        .map(|(v, at)| {
            Ok((
                u32::try_from(v).context("secret version out of range")?,
                from_unix(at),
            ))
        })
        .collect()
}

pub(super) async fn record_secret_check(
    store: &Engine,
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
    .execute(store.writes())
    .await?;
    Ok(())
}

pub(super) async fn pepper_versions(store: &Engine) -> Result<Vec<u32>, StoreError> {
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT pepper_version FROM keys ORDER BY 1")
            .fetch_all(store.reads())
            .await?;
    versions
        .into_iter()
        .map(|v| Ok(u32::try_from(v).context("stored pepper version out of range")?))
        .collect()
}

pub(super) async fn pepper_version_counts(store: &Engine) -> Result<Vec<(u32, u64)>, StoreError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT pepper_version, COUNT(*) FROM keys GROUP BY pepper_version ORDER BY 1",
    )
    .fetch_all(store.reads())
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

pub(super) async fn rehash_key(
    store: &Engine,
    key_id: &str,
    from: u32,
    to: &Verifier,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
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
