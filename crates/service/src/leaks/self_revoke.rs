//! Self-revocation: whoever holds a key — its owner, or someone who found it — can
//! revoke it with the key itself as the only credential (`POST /v1/keys/self-revoke`).
//! A wrong key changes nothing and counts against the failed-verification limiter, like
//! a failed verify.

use std::net::IpAddr;

use keyhaven_core::ParsedKey;
use keyhaven_store::{Change, Conflict, StoreError, Timestamp};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::working_key;
use crate::actor::Actor;
use crate::audit;
use crate::error::Result;
use crate::keys::to_completion;
use crate::limits::Applied;
use crate::service::Service;

/// `POST /v1/keys/self-revoke` (the key is the bearer credential, not in the body).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfRevoke {
    /// Why, for the audit log and the key's record: up to 500 characters without
    /// control characters.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// The answer to a self-revocation.
#[derive(Debug)]
pub enum SelfRevoked {
    /// Revoked now, or already revoked before (`already`): the key no longer works.
    Revoked {
        key_id: String,
        revoked_at: Timestamp,
        already: bool,
    },
    /// Not a working key of this deployment: nothing changed.
    Refused,
    /// Too many failed attempts from this client or for this key id.
    Limited(Applied<'static>),
}

/// Revokes the key `token` is, when it is one (its secret matched).
pub async fn self_revoke(
    service: &Service,
    token: &str,
    client_ip: Option<IpAddr>,
    input: SelfRevoke,
) -> Result<SelfRevoked> {
    crate::validate::reason(input.reason.as_deref())?;
    let Some(key) = working_key(service, token).await? else {
        let key_id = keyhaven_core::parse(token).ok();
        let now_us = service.clock.now_micros();
        return Ok(
            match (service.limits.failures).note(
                key_id.as_ref().map(ParsedKey::key_id),
                client_ip,
                now_us,
            ) {
                Some(limit) => SelfRevoked::Limited(limit),
                None => SelfRevoked::Refused,
            },
        );
    };
    let key_id = key.key_id().to_owned();
    if let Some(at) = key.revoked_at() {
        return Ok(SelfRevoked::Revoked {
            key_id,
            revoked_at: at,
            already: true,
        });
    }
    let now = service.clock.now();
    let reason = input
        .reason
        .unwrap_or_else(|| "revoked by its holder".to_owned());
    let actor = Actor::key_holder(&key_id, client_ip);
    let event = audit::event(
        &actor,
        "key.revoke",
        ("key", &key_id),
        Some(key.keyspace_id()),
        audit::created(&[("reason", json!(reason)), ("self_revoked", json!(true))]),
        now,
    )?;
    let (store, id) = (service.store.clone(), key_id.clone());
    let done = to_completion(service, vec![key_id.clone()], async move {
        store
            .revoke_key(&id, now, Some(&reason), Change::audited(&event))
            .await
    })
    .await;
    match done {
        Ok(()) => Ok(SelfRevoked::Revoked {
            key_id,
            revoked_at: now,
            already: false,
        }),
        // Revoked by someone else meanwhile: the holder's wish is met all the same.
        Err(StoreError::Conflict(Conflict::AlreadyRevoked)) => Ok(SelfRevoked::Revoked {
            key_id,
            revoked_at: now,
            already: true,
        }),
        Err(e) => Err(e.into()),
    }
}
