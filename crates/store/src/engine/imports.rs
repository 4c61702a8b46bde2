//! Keys imported from another system: inserted in bulk, found by their import lookup,
//! moved to the native verifier on first use, and upgraded to peppered lookups.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use std::collections::HashSet;

use anyhow::Context as _;
use keyhaven_core::Verifier;

use super::audit::commit_change;
use super::keys::insert_keys;
use super::{Engine, notify};
use crate::error::StoreError;
use crate::model::{AuditEvent, Change, Import, Invalidation, KeyRecord};

pub(super) async fn import_keys(
    store: &Engine,
    keys: &[KeyRecord],
    audit: &AuditEvent,
) -> Result<Vec<bool>, StoreError> {
    if keys.iter().any(|k| k.import.is_none()) {
        return Err(anyhow::anyhow!("import_keys needs keys with an import lookup").into());
    }
    let mut tx = store.begin().await?;
    let done: HashSet<String> = insert_keys(&mut tx, keys).await?.into_iter().collect();
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

pub(super) async fn has_imported_keys(store: &Engine) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM keys WHERE import_lookup IS NOT NULL)")
            .fetch_one(store.reads())
            .await?,
    )
}

pub(super) async fn key_id_by_import_lookup(
    store: &Engine,
    lookup: &str,
) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT key_id FROM keys WHERE import_lookup = $1")
            .bind(lookup)
            .fetch_optional(store.reads())
            .await?,
    )
}

pub(super) async fn complete_import(
    store: &Engine,
    key_id: &str,
    to: &Verifier,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
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

pub(super) async fn legacy_imports(store: &Engine) -> Result<Vec<(String, Import)>, StoreError> {
    let pending: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pending_upgrades WHERE name = 'peppered-imports')",
    )
    .fetch_one(store.reads())
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
        .fetch_all(store.reads())
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

pub(super) async fn finish_import_upgrade(
    store: &Engine,
    upgraded: &[(String, String, Import)],
    version: u32,
    pending_done: bool,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
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
