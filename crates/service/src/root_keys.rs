//! Creating root keys: on first start (one key with every scope) and with
//! `keyhaven root-key create` (which may run while a server uses the same database).

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
    let prefix = Prefix::new(ROOT_PREFIX).map_err(anyhow::Error::from)?;
    let generated = keyhaven_core::generate(&prefix).map_err(anyhow::Error::from)?;
    let secret = keyhaven_core::parse(generated.key().expose_secret())
        .map_err(|e| anyhow::anyhow!("generated root key failed to parse: {e:?}"))?
        .secret();
    let now = crate::clock::now();
    let record = KeyRecord {
        key_id: generated.key_id().as_str().to_owned(),
        keyspace_id: ROOT_KEYSPACE_ID.to_owned(),
        owner_id: None,
        name,
        last4: generated.last4().to_owned(),
        verifier: peppers.verifier(generated.key_id().as_str(), secret),
        scopes,
        meta: serde_json::Map::new(),
        allowed_keyspaces: keyspaces,
        enabled: true,
        expires_at: None,
        revoked_at: None,
        revoked_reason: None,
        rotation: None,
        rotated_from: None,
        sealed_key: None,
        import: None,
        limits: Default::default(),
        last_used_at: None,
        created_at: now,
        updated_at: now,
    };
    let mut changes = serde_json::Map::new();
    changes.insert("scopes".into(), json!(record.scopes));
    changes.insert("allowed_keyspaces".into(), json!(record.allowed_keyspaces));
    changes.insert("name".into(), json!(record.name));
    let event = AuditEvent {
        id: ids::new_id("evt")?,
        occurred_at: now,
        actor: actor.to_owned(),
        action: "root_key.create".to_owned(),
        target_type: "root_key".to_owned(),
        target_id: record.key_id.clone(),
        keyspace_id: None,
        changes,
        client_ip: None,
    };
    store
        .create_key(&record, Change::audited(&event))
        .await
        .map_err(anyhow::Error::from)?;
    Ok(generated)
}

/// Root keys, newest first (every one: only an unrestricted actor may list them).
pub async fn list(
    service: &crate::Service,
    actor: &crate::Actor,
    page: keyhaven_store::PageRequest,
) -> crate::Result<keyhaven_store::Page<KeyRecord>> {
    actor.require_unrestricted("root keys")?;
    let filter = keyhaven_store::KeyFilter {
        root_keys: true,
        ..Default::default()
    };
    Ok(service.store.list_keys(&filter, page).await?)
}

/// Revokes a root key (audited `root_key.revoke`): it stops authenticating at once on
/// this node, and on the others within `cache_coherence_ms`.
pub async fn revoke(
    service: &crate::Service,
    actor: &crate::Actor,
    key_id: &str,
    reason: Option<String>,
) -> crate::Result<()> {
    actor.require_unrestricted("root keys")?;
    if let Some(reason) = &reason {
        crate::validate::name("reason", reason)?;
    }
    let found = match keyhaven_core::KeyId::parse(key_id) {
        Some(_) => service.store.key_for_verify(key_id).await?,
        None => None,
    };
    if found.is_none_or(|k| k.key.keyspace_id != ROOT_KEYSPACE_ID) {
        return Err(crate::ServiceError::NotFound);
    }
    let now = service.clock.now();
    let event = crate::audit::event(
        actor,
        "root_key.revoke",
        ("root_key", key_id),
        None,
        crate::audit::created(&[("reason", json!(reason))]),
        now,
    )?;
    let store = service.store.clone();
    let id = key_id.to_owned();
    crate::keys::to_completion(service, vec![key_id.to_owned()], async move {
        store
            .revoke_key(&id, now, reason.as_deref(), Change::audited(&event))
            .await
    })
    .await?;
    Ok(())
}

/// Refuses root-key scopes that `actor` could not use itself: `*` and `keys:reveal` need
/// an actor that may reveal keys (an operator may not).
pub fn check_grantable(actor: &crate::Actor, scopes: &[String]) -> crate::Result<()> {
    if scopes.iter().any(|s| s == "*" || s == "keys:reveal") {
        actor.require(crate::Scope::KeysReveal)?;
    }
    Ok(())
}
