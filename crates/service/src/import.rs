//! Importing keys Keyhaven did not issue (their plaintext is never seen): one item per
//! key, shared by `POST /v1/keys/import` and `keyhaven import FILE`.
//!
//! An item names the format its old system used and the digest it stored:
//! - `prefixed_sha256`: `prefix` + `short_token` (the public parts of
//!   `prefix_shortToken_longToken`) and `hash` = hex SHA-256 of the long token;
//! - `dotted_sha512`: `prefix` (the part of `prefix.secret` before the `.`) and `hash` =
//!   `sha512$$<hex SHA-512 of the whole key>` (or the bare hex);
//! - `sha256`: `hash` = hex SHA-256 of the whole key string.
//!
//! What is stored is peppered (`keyhaven_core::compat`): the lookup is a tag of the
//! public id and the digest is `HMAC(pepper, old digest)`, both under the newest pepper,
//! whose version the record's verifier carries. Imported keys verify with their original
//! string; their first successful verify moves them to the native peppered HMAC and
//! forgets the old digest.

use keyhaven_core::compat::{self, ImportFormat};
use keyhaven_core::{PepperSet, Verifier};
use keyhaven_store::{Import, KeyRecord, Store, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::ServiceError;
use crate::validate;

/// One key to import.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportItem {
    pub keyspace_id: String,
    /// `prefixed_sha256`, `dotted_sha512` or `sha256`.
    pub format: String,
    /// The stored digest, hex (for `dotted_sha512` optionally as `sha512$$<hex>`).
    pub hash: String,
    /// `prefixed_sha256` and `dotted_sha512`: the key's prefix.
    pub prefix: Option<String>,
    /// `prefixed_sha256`: the short token (the lookup id).
    pub short_token: Option<String>,
    pub owner_id: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub enabled: Option<bool>,
}

/// One record of a CSV file for `keyhaven import`, as text fields (header row naming
/// [`ImportItem`]'s fields, `scopes` separated by spaces, empty cells absent). Here
/// rather than in the command so the fuzz targets read CSV into the same type.
#[derive(Debug, Deserialize)]
pub struct CsvRow {
    keyspace_id: String,
    format: String,
    hash: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    short_token: Option<String>,
    #[serde(default)]
    owner_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scopes: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

impl From<CsvRow> for ImportItem {
    fn from(r: CsvRow) -> Self {
        let some = |v: Option<String>| v.filter(|s| !s.is_empty());
        ImportItem {
            keyspace_id: r.keyspace_id,
            format: r.format,
            hash: r.hash,
            prefix: some(r.prefix),
            short_token: some(r.short_token),
            owner_id: some(r.owner_id),
            name: some(r.name),
            scopes: r
                .scopes
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            meta: serde_json::Map::new(),
            expires_at: some(r.expires_at),
            enabled: r.enabled,
        }
    }
}

/// What happened to one item.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Position of the item in the request (or line number in a file, from 1).
    pub index: usize,
    /// `imported`, `skipped` (a key with the same lookup exists) or `rejected`.
    pub status: String,
    pub key_id: Option<String>,
    pub reason: Option<String>,
}

fn detail(e: ServiceError) -> String {
    e.to_string()
}

fn token_ok(t: &str) -> bool {
    !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Builds the record for `item` (everything but checks that need the store: keyspace
/// and owner existence). Errors are the reason to report for this item.
pub fn build(item: &ImportItem, peppers: &PepperSet, now: Timestamp) -> Result<KeyRecord, String> {
    let format = ImportFormat::parse(&item.format).ok_or_else(|| {
        format!(
            "format must be prefixed_sha256, dotted_sha512 or sha256, not {:?}",
            validate::redact(&format!("\"{}\"", item.format))
        )
    })?;
    let hex_digest = match format {
        ImportFormat::DottedSha512 => item.hash.strip_prefix("sha512$$").unwrap_or(&item.hash),
        _ => item.hash.as_str(),
    };
    let digest = hex::decode(hex_digest)
        .ok()
        .filter(|d| d.len() == format.digest_len())
        .ok_or_else(|| format!("hash must be {} hex digits", 2 * format.digest_len()))?;
    let pepper = peppers.newest();
    let public = match format {
        ImportFormat::PrefixedSha256 => Some(format!(
            "{}_{}",
            item.prefix.as_deref().unwrap_or_default(),
            item.short_token.as_deref().unwrap_or_default()
        )),
        ImportFormat::DottedSha512 => item.prefix.clone(),
        ImportFormat::Sha256 => None,
    };
    let lookup = match format {
        ImportFormat::PrefixedSha256 => {
            let prefix = item.prefix.as_deref().unwrap_or_default();
            let short = item.short_token.as_deref().unwrap_or_default();
            let prefix_ok = !prefix.is_empty()
                && prefix.len() <= 64
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !prefix_ok || !token_ok(short) {
                return Err(
                    "prefixed_sha256 needs prefix ([A-Za-z0-9_]) and short_token ([A-Za-z0-9])"
                        .into(),
                );
            }
            compat::prefixed_lookup(pepper, prefix, short)
        }
        ImportFormat::DottedSha512 => {
            let prefix = item.prefix.as_deref().unwrap_or_default();
            if compat::parse_dotted(&format!("{prefix}.x")) != Some(prefix) {
                return Err("dotted_sha512 needs prefix ([A-Za-z0-9_-], up to 64)".into());
            }
            compat::dotted_lookup(pepper, prefix)
        }
        ImportFormat::Sha256 => compat::sha256_lookup(pepper, &digest),
    };
    if let Some(name) = &item.name {
        validate::name("name", name).map_err(detail)?;
    }
    validate::scopes(&item.scopes).map_err(detail)?;
    validate::meta(&item.meta).map_err(detail)?;
    let expires_at = item
        .expires_at
        .as_deref()
        .map(|t| validate::time("expires_at", t))
        .transpose()
        .map_err(detail)?;
    let mut key_id = [0u8; keyhaven_core::format::KEY_ID_LEN];
    keyhaven_core::random::fill_base58(&mut key_id).map_err(|e| e.to_string())?;
    let key_id = String::from_utf8_lossy(&key_id).into_owned();
    Ok(KeyRecord {
        key_id,
        keyspace_id: item.keyspace_id.clone(),
        owner_id: item.owner_id.clone(),
        name: item.name.clone(),
        last4: String::new(),
        // Never matches: until the first verify, the old digest decides. Its version is
        // the pepper of the import's lookup and peppered digest.
        verifier: Verifier::from_parts(pepper.version(), [0; 32]),
        scopes: item.scopes.clone(),
        meta: item.meta.clone(),
        allowed_keyspaces: None,
        enabled: item.enabled.unwrap_or(true),
        expires_at,
        revoked_at: None,
        revoked_reason: None,
        rotation: None,
        rotated_from: None,
        sealed_key: None,
        import: Some(Import {
            format: format.as_str().to_owned(),
            lookup,
            digest: Some(compat::peppered_digest(pepper, &digest).to_vec()),
            public,
        }),
        limits: Default::default(),
        ip_allowlist: None,
        grants: Default::default(),
        last_used_at: None,
        created_at: now,
        updated_at: now,
    })
}

/// Whether the key `record` imports is stored already under an older pepper version's
/// lookup: a file imported again after `keyhaven pepper rotate` must skip it, as before
/// the rotation. (Whole-key SHA-256 imports cannot be told this way: their lookup needs
/// the digest, which the record holds only peppered.)
pub async fn stored_under_older_pepper(
    store: &dyn Store,
    record: &KeyRecord,
    peppers: &PepperSet,
) -> anyhow::Result<bool> {
    let Some(import) = &record.import else {
        return Ok(false);
    };
    let (Some(format), Some(public)) = (ImportFormat::parse(&import.format), &import.public) else {
        return Ok(false);
    };
    let newest = peppers.newest().version();
    for version in peppers.versions().filter(|v| *v != newest) {
        let Some(pepper) = peppers.get(version) else {
            continue;
        };
        if let Some(lookup) = compat::lookup_of_public(format, public, pepper)
            && store.key_id_by_import_lookup(&lookup).await?.is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What [`upgrade_stored`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    /// Keys moved to peppered lookups (and digests).
    pub converted: usize,
    /// Keys on a plain digest left for `keyhaven migrate --upgrade-imports`.
    pub waiting: usize,
}

/// Converts imported keys stored in the old, unpeppered shape to peppered lookups (and
/// digests) under the newest pepper.
///
/// Without `pending_digests` (every start): only keys already on the native verifier,
/// whose old lookup is the only old thing about them. That is safe whoever wrote the
/// row: it still verifies only through a verifier keyed by the pepper.
///
/// With `pending_digests` (`keyhaven migrate --upgrade-imports`, an operator's explicit
/// act): also keys still on their old system's plain digest, while the migration's mark
/// says such rows existed when it ran. Rows in that shape are otherwise never found or
/// matched, since a plain digest is something a database writer could have chosen.
pub async fn upgrade_stored(
    store: &dyn Store,
    peppers: &PepperSet,
    pending_digests: bool,
) -> anyhow::Result<Upgrade> {
    let (legacy, waiting): (Vec<_>, Vec<_>) = store
        .legacy_imports()
        .await?
        .into_iter()
        .partition(|(_, old)| pending_digests || old.digest.is_none());
    if legacy.is_empty() && !pending_digests {
        return Ok(Upgrade {
            converted: 0,
            waiting: waiting.len(),
        });
    }
    let pepper = peppers.newest();
    let mut upgraded = Vec::with_capacity(legacy.len());
    let mut skipped = 0usize;
    for (key_id, old) in legacy {
        let Some(format) = ImportFormat::parse(&old.format) else {
            skipped += 1;
            continue;
        };
        let Some(lookup) = compat::upgraded_lookup(format, &old.lookup, pepper) else {
            skipped += 1;
            continue;
        };
        let public = compat::public_of_old_lookup(&old.lookup).map(str::to_owned);
        let digest = old
            .digest
            .as_deref()
            .map(|d| compat::peppered_digest(pepper, d).to_vec());
        upgraded.push((
            key_id,
            old.lookup,
            Import {
                format: old.format,
                lookup,
                digest,
                public,
            },
        ));
    }
    store
        .finish_import_upgrade(&upgraded, pepper.version().get(), pending_digests)
        .await?;
    tracing::info!(
        upgraded = upgraded.len(),
        skipped,
        "imported keys moved to peppered lookups"
    );
    Ok(Upgrade {
        converted: upgraded.len(),
        waiting: waiting.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_row_becomes_the_item_with_empty_cells_absent_and_scopes_split() {
        let row: CsvRow = serde_json::from_value(serde_json::json!({
            "keyspace_id": "ks_1", "format": "sha256", "hash": "ab", "prefix": "",
            "name": "Billing", "scopes": " keys:read  keys:write ", "enabled": false,
        }))
        .unwrap();
        let item = ImportItem::from(row);
        assert_eq!(item.keyspace_id, "ks_1");
        assert_eq!(item.prefix, None);
        assert_eq!(item.name.as_deref(), Some("Billing"));
        assert_eq!(item.scopes, ["keys:read", "keys:write"]);
        assert_eq!(item.enabled, Some(false));
        assert!(item.meta.is_empty());
    }
}
