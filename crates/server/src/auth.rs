//! Root keys: how a request to the admin and verify API proves who it is, and what it may
//! touch. A root key is a key in the reserved `kh_root` keyspace; its scopes say which
//! operations it may call and `allowed_keyspaces` (when set) which keyspaces' objects it
//! may see. Everything outside them answers exactly like a missing object.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use keyhaven_core::{VerifyCode, policy};
use keyhaven_store::{KeyForVerify, ROOT_KEYSPACE_ID};

use crate::error::ApiError;
use crate::state::AppState;

/// The scopes a root key can hold. `*` grants everything; `family:*` a whole family.
pub const ROOT_SCOPES: &[&str] = &[
    "*",
    "keys:*",
    "keys:read",
    "keys:write",
    "keys:verify",
    "keys:reveal",
    "keyspaces:*",
    "keyspaces:read",
    "keyspaces:write",
    "owners:*",
    "owners:read",
    "owners:write",
    "audit:read",
    "webhooks:*",
    "webhooks:read",
    "webhooks:write",
];

/// An operation's required scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    KeysRead,
    KeysWrite,
    KeysVerify,
    /// Never implied by `keys:*`: only `keys:reveal` itself or `*` grant it.
    KeysReveal,
    KeyspacesRead,
    KeyspacesWrite,
    OwnersRead,
    OwnersWrite,
    AuditRead,
    WebhooksRead,
    WebhooksWrite,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeysRead => "keys:read",
            Self::KeysWrite => "keys:write",
            Self::KeysVerify => "keys:verify",
            Self::KeysReveal => "keys:reveal",
            Self::KeyspacesRead => "keyspaces:read",
            Self::KeyspacesWrite => "keyspaces:write",
            Self::OwnersRead => "owners:read",
            Self::OwnersWrite => "owners:write",
            Self::AuditRead => "audit:read",
            Self::WebhooksRead => "webhooks:read",
            Self::WebhooksWrite => "webhooks:write",
        }
    }
}

/// Checks a list of requested root-key scopes against [`ROOT_SCOPES`].
pub fn validate_root_scopes(scopes: &[String]) -> Result<(), String> {
    if scopes.is_empty() {
        return Err("a root key needs at least one scope".to_owned());
    }
    match scopes.iter().find(|s| !ROOT_SCOPES.contains(&s.as_str())) {
        Some(bad) => Err(format!(
            "unknown root key scope `{bad}`; known scopes: {}",
            ROOT_SCOPES.join(", ")
        )),
        None => Ok(()),
    }
}

/// An authenticated root key and the request's origin. Holds the cached record itself
/// (no copies of its scopes on every request).
#[derive(Debug, Clone)]
pub struct RootAuth {
    key: Arc<KeyForVerify>,
    client_ip: Option<IpAddr>,
}

impl RootAuth {
    /// The root key's id: the actor in audit events.
    pub fn key_id(&self) -> &str {
        &self.key.key.key_id
    }

    pub fn client_ip(&self) -> Option<String> {
        self.client_ip.map(|ip| ip.to_string())
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        let scopes = &self.key.key.scopes;
        let granted = if scope == Scope::KeysReveal {
            scopes.iter().any(|s| s == "*" || s == "keys:reveal")
        } else {
            policy::scopes_grant(scopes, scope.as_str())
        };
        if granted {
            Ok(())
        } else {
            Err(ApiError::MissingScope(scope.as_str()))
        }
    }

    /// Whether objects of keyspace `id` exist for this root key.
    pub fn sees_keyspace(&self, id: &str) -> bool {
        id != ROOT_KEYSPACE_ID
            && self
                .key
                .key
                .allowed_keyspaces
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|a| a == id))
    }

    /// The keyspace restriction to pass to list queries; `None` means unrestricted.
    pub fn visible(&self) -> Option<&[String]> {
        self.key.key.allowed_keyspaces.as_deref()
    }

    pub fn is_restricted(&self) -> bool {
        self.key.key.allowed_keyspaces.is_some()
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for RootAuth {
    type Rejection = ApiError;

    #[tracing::instrument(name = "authenticate", skip_all)]
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let now = state.clock.now();
        let checked = crate::verify::check(
            state,
            token,
            &[],
            |keyspace| keyspace == ROOT_KEYSPACE_ID,
            now,
        )
        .await?;
        let key = match (checked.code, checked.key) {
            (VerifyCode::Valid, Some(key)) => key,
            _ => return Err(ApiError::Unauthorized),
        };
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        if state.config.usage_tracking {
            state.usage.record(
                &key.key.key_id,
                crate::usage::Outcome::Answered(VerifyCode::Valid),
                now,
            );
        }
        Ok(Self { key, client_ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(scopes: &[&str], allowed: Option<&[&str]>) -> RootAuth {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let key = keyhaven_store::KeyRecord {
            key_id: "k".into(),
            keyspace_id: ROOT_KEYSPACE_ID.into(),
            owner_id: None,
            name: None,
            last4: "abcd".into(),
            verifier: keyhaven_core::Verifier::from_parts(
                keyhaven_core::PepperVersion::new(1).unwrap(),
                [0; 32],
            ),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            meta: serde_json::Map::new(),
            allowed_keyspaces: allowed.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
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
        RootAuth {
            key: Arc::new(KeyForVerify {
                key,
                keyspace_prefix: "kh_root".into(),
                keyspace_name: "root".into(),
                max_key_age: None,
                owner_external_id: None,
                keyspace_ratelimits: Vec::new(),
                owner_limits: Default::default(),
            }),
            client_ip: None,
        }
    }

    #[test]
    fn scopes_and_keyspaces_limit_a_root_key() {
        let a = auth(&["keys:read"], Some(&["ks_a"]));
        assert!(a.require(Scope::KeysRead).is_ok());
        assert!(a.require(Scope::KeysWrite).is_err());
        assert!(a.sees_keyspace("ks_a"));
        assert!(!a.sees_keyspace("ks_b"));
        assert!(auth(&["keys:*"], None).require(Scope::KeysReveal).is_err());
        assert!(
            auth(&["keys:reveal"], None)
                .require(Scope::KeysReveal)
                .is_ok()
        );
        let all = auth(&["*"], None);
        assert!(all.require(Scope::AuditRead).is_ok());
        assert!(all.sees_keyspace("ks_b"));
        assert!(!all.sees_keyspace(ROOT_KEYSPACE_ID));
    }

    #[test]
    fn root_scope_lists_are_checked() {
        assert!(validate_root_scopes(&["keys:read".into()]).is_ok());
        assert!(validate_root_scopes(&[]).is_err());
        assert!(validate_root_scopes(&["keys:rea".into()]).is_err());
    }
}
