//! Root keys: the credentials of the admin API, keys of the reserved `ks_root`
//! keyspace. Created on first start (one key with every scope) and with `keyhaven
//! root-key create` (which may run while a server uses the same database): this file;
//! listed, created narrower, revoked and rotated by an actor through the API, the
//! dashboard and the CLI: [`manage`].

mod manage;

pub use manage::{
    CreateRootKey, RotateRootKey, check_grantable, create_as, find, list, revoke, rotate,
};

use keyhaven_core::{GeneratedKey, PepperSet, Prefix};
use keyhaven_store::{AuditEvent, Change, KeyRecord, ROOT_KEYSPACE_ID, ROOT_PREFIX, Store};
use secrecy::ExposeSecret;
use serde_json::json;

pub use crate::actor::CLI_ACTOR;
use crate::actor::validate_root_scopes;
use crate::ids;

#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Creates a root key with `scopes`, limited to `keyspaces` when given, audited as done
/// by `actor`. Returns the key, to be shown once.
pub async fn create(
    store: &dyn Store,
    peppers: &PepperSet,
    scopes: Vec<String>,
    keyspaces: Option<Vec<String>>,
    name: Option<String>,
    actor: &str,
) -> Result<GeneratedKey, RootKeyError> {
    create_record(store, peppers, scopes, keyspaces, name, None, (actor, None))
        .await
        .map(|(generated, _)| generated)
}

/// [`create`], with an expiry and the client address for the audit event; returns the
/// stored record too.
pub(crate) async fn create_record(
    store: &dyn Store,
    peppers: &PepperSet,
    scopes: Vec<String>,
    keyspaces: Option<Vec<String>>,
    name: Option<String>,
    expires_at: Option<keyhaven_store::Timestamp>,
    (actor, client_ip): (&str, Option<String>),
) -> Result<(GeneratedKey, KeyRecord), RootKeyError> {
    validate_root_scopes(&scopes).map_err(RootKeyError::Invalid)?;
    if let Some(list) = &keyspaces {
        if list.is_empty() {
            return Err(RootKeyError::Invalid(
                "--keyspace needs at least one id".into(),
            ));
        }
        for id in list {
            let exists = ids::is_plausible("ks", id)
                && store
                    .keyspace(id)
                    .await
                    .map_err(anyhow::Error::from)?
                    .is_some();
            if !exists {
                return Err(RootKeyError::Invalid(format!("no keyspace with id `{id}`")));
            }
        }
    }
    let now = crate::clock::now();
    let (generated, verifier) = mint(peppers)?;
    let record = KeyRecord {
        key_id: generated.key_id().as_str().to_owned(),
        keyspace_id: ROOT_KEYSPACE_ID.to_owned(),
        owner_id: None,
        name,
        last4: generated.last4().to_owned(),
        verifier,
        scopes,
        meta: serde_json::Map::new(),
        allowed_keyspaces: keyspaces,
        enabled: true,
        expires_at,
        revoked_at: None,
        revoked_reason: None,
        rotation: None,
        rotated_from: None,
        sealed_key: None,
        import: None,
        limits: Default::default(),
        ip_allowlist: None,
        grants: Default::default(),
        last_used_at: None,
        created_at: now,
        updated_at: now,
    };
    let mut changes = serde_json::Map::new();
    changes.insert("scopes".into(), json!(record.scopes));
    changes.insert("allowed_keyspaces".into(), json!(record.allowed_keyspaces));
    changes.insert("name".into(), json!(record.name));
    if let Some(t) = record.expires_at {
        changes.insert("expires_at".into(), json!(crate::validate::rfc3339(t)));
    }
    let event = AuditEvent {
        id: ids::new_id("evt")?,
        occurred_at: now,
        actor: actor.to_owned(),
        action: "root_key.create".to_owned(),
        target_type: "root_key".to_owned(),
        target_id: record.key_id.clone(),
        keyspace_id: None,
        changes,
        client_ip,
    };
    store
        .create_key(&record, Change::audited(&event))
        .await
        .map_err(anyhow::Error::from)?;
    Ok((generated, record))
}

/// A new root key and its verifier.
pub(crate) fn mint(peppers: &PepperSet) -> anyhow::Result<(GeneratedKey, keyhaven_core::Verifier)> {
    let prefix = Prefix::new(ROOT_PREFIX)?;
    let generated = keyhaven_core::generate(&prefix)?;
    let secret = keyhaven_core::parse(generated.key().expose_secret())
        .map_err(|e| anyhow::anyhow!("generated root key failed to parse: {e:?}"))?
        .secret();
    let verifier = peppers.verifier(generated.key_id().as_str(), secret);
    Ok((generated, verifier))
}
