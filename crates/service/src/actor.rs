//! Who is asking: the actor every operation takes, and what it may touch.
//!
//! Actors are root keys (the HTTP API), the local command line, operators signed in to
//! the dashboard, and customers in the portal. A root key's scopes say which operations
//! it may call and `allowed_keyspaces` (when set) which keyspaces' objects it may see;
//! an operator's role says whether it may change anything; a portal customer sees only
//! one owner's keys in the keyspaces its link named. Everything outside what an actor
//! may see answers exactly like a missing object.

use std::net::IpAddr;
use std::sync::Arc;

use keyhaven_core::policy;
use keyhaven_store::{OperatorRole, ROOT_KEYSPACE_ID};

use crate::cache::VerifyRecord;

use crate::error::{Result, ServiceError};

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
    "portal:*",
    "portal:write",
    "root_keys:*",
    "root_keys:read",
    "root_keys:write",
    "leaks:*",
    "leaks:write",
    "ratelimits:*",
    "tokens:*",
    "tokens:write",
    "ratelimits:limit",
    "ratelimits:read",
    "ratelimits:write",
];

/// The actor recorded for changes made with local access (`keyhaven` commands).
pub const CLI_ACTOR: &str = "cli";

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
    /// Starting customer portal sessions.
    PortalWrite,
    RootKeysRead,
    RootKeysWrite,
    /// Reporting leaked keys (`POST /v1/leaks/report`).
    LeaksWrite,
    /// Standalone rate limits (`POST /v1/ratelimits/limit`).
    RatelimitsLimit,
    /// Reading standalone limits' overrides.
    RatelimitsRead,
    /// Setting and deleting standalone limits' overrides.
    RatelimitsWrite,
    /// Minting signed tokens on behalf of a key (`POST /v1/tokens` with `key_id`).
    TokensWrite,
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
            Self::PortalWrite => "portal:write",
            Self::RootKeysRead => "root_keys:read",
            Self::RootKeysWrite => "root_keys:write",
            Self::LeaksWrite => "leaks:write",
            Self::RatelimitsLimit => "ratelimits:limit",
            Self::RatelimitsRead => "ratelimits:read",
            Self::RatelimitsWrite => "ratelimits:write",
            Self::TokensWrite => "tokens:write",
        }
    }

    /// Whether the scope only reads.
    pub fn reads_only(self) -> bool {
        matches!(
            self,
            Self::KeysRead
                | Self::KeyspacesRead
                | Self::OwnersRead
                | Self::AuditRead
                | Self::WebhooksRead
                | Self::RootKeysRead
                | Self::RatelimitsRead
        )
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

/// Who is asking. Holds a root key's cached record itself (no copies of its scopes on
/// every request).
#[derive(Debug, Clone)]
pub struct Actor {
    who: Who,
    client_ip: Option<IpAddr>,
}

#[derive(Debug, Clone)]
enum Who {
    RootKey(Arc<VerifyRecord>),
    /// Local access (the command line): every scope, every keyspace.
    Local(&'static str),
    /// A person signed in to the dashboard: every keyspace; an admin may do everything
    /// but reveal keys, a viewer only read.
    Operator {
        /// `operator:<email>`, as audit events name it.
        name: String,
        role: OperatorRole,
    },
    /// A customer in the portal: one owner's keys in some keyspaces.
    Portal(Arc<PortalGrant>),
    /// Whoever acts on a key by proof of possession: a secret scanner's report
    /// (`leak:<source>`) or the key's own holder (`key:<key id>`). May call nothing;
    /// named in audit events only.
    Reporter(String),
    /// The gateway (proxy, forward auth) checking the keys requests present: may call
    /// nothing but verification, which sees only `keyspaces` when set.
    Gateway(Option<Vec<String>>),
}

/// What a portal session may see and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalGrant {
    /// `portal:<owner id>`, as audit events name it.
    name: String,
    pub owner_id: String,
    pub keyspace_ids: Vec<String>,
    pub permissions: Vec<PortalPermission>,
    pub return_url: Option<String>,
}

impl PortalGrant {
    pub fn new(
        owner_id: String,
        keyspace_ids: Vec<String>,
        permissions: Vec<PortalPermission>,
        return_url: Option<String>,
    ) -> Self {
        Self {
            name: format!("portal:{owner_id}"),
            owner_id,
            keyspace_ids,
            permissions,
            return_url,
        }
    }

    pub fn allows(&self, permission: PortalPermission) -> bool {
        self.permissions.contains(&permission)
    }
}

/// What a customer may do in the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PortalPermission {
    #[serde(rename = "keys:read")]
    KeysRead,
    #[serde(rename = "keys:create")]
    KeysCreate,
    #[serde(rename = "keys:rotate")]
    KeysRotate,
    #[serde(rename = "keys:revoke")]
    KeysRevoke,
    #[serde(rename = "usage:read")]
    UsageRead,
}

impl PortalPermission {
    pub const ALL: [Self; 5] = [
        Self::KeysRead,
        Self::KeysCreate,
        Self::KeysRotate,
        Self::KeysRevoke,
        Self::UsageRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeysRead => "keys:read",
            Self::KeysCreate => "keys:create",
            Self::KeysRotate => "keys:rotate",
            Self::KeysRevoke => "keys:revoke",
            Self::UsageRead => "usage:read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl Actor {
    /// An authenticated root key (its secret matched and it verified VALID).
    pub fn root_key(key: Arc<VerifyRecord>, client_ip: Option<IpAddr>) -> Self {
        Self {
            who: Who::RootKey(key),
            client_ip,
        }
    }

    /// The command line, recorded in audit events as `name`.
    pub fn local(name: &'static str) -> Self {
        Self {
            who: Who::Local(name),
            client_ip: None,
        }
    }

    /// An operator signed in to the dashboard, recorded as `operator:<email>`.
    pub fn operator(email: &str, role: OperatorRole, client_ip: Option<IpAddr>) -> Self {
        Self {
            who: Who::Operator {
                name: format!("operator:{email}"),
                role,
            },
            client_ip,
        }
    }

    /// A customer in the portal, recorded as `portal:<owner id>`.
    pub fn portal(grant: Arc<PortalGrant>, client_ip: Option<IpAddr>) -> Self {
        Self {
            who: Who::Portal(grant),
            client_ip,
        }
    }

    /// A leak report from `source` (`github`, `report`, …), recorded as `leak:<source>`.
    pub fn leak(source: &str, client_ip: Option<IpAddr>) -> Self {
        Self {
            who: Who::Reporter(format!("leak:{source}")),
            client_ip,
        }
    }

    /// The holder of key `key_id`, acting with the key itself as the credential
    /// (self-revocation), recorded as `key:<key id>`.
    pub fn key_holder(key_id: &str, client_ip: Option<IpAddr>) -> Self {
        Self {
            who: Who::Reporter(format!("key:{key_id}")),
            client_ip,
        }
    }

    /// The gateway, verifying keys of `keyspace` only when given (every keyspace
    /// otherwise).
    pub fn gateway(keyspace: Option<&str>) -> Self {
        Self {
            who: Who::Gateway(keyspace.map(|k| vec![k.to_owned()])),
            client_ip: None,
        }
    }

    /// The actor's id in audit events: a root key's key id, the local actor's name,
    /// `operator:<email>` or `portal:<owner id>`.
    pub fn id(&self) -> &str {
        match &self.who {
            Who::RootKey(key) => key.key_id(),
            Who::Local(name) => name,
            Who::Operator { name, .. } => name,
            Who::Portal(grant) => &grant.name,
            Who::Reporter(name) => name,
            Who::Gateway(_) => "gateway",
        }
    }

    /// The one owner whose keys this actor is limited to (a portal customer).
    pub fn owner(&self) -> Option<&str> {
        match &self.who {
            Who::Portal(grant) => Some(&grant.owner_id),
            _ => None,
        }
    }

    /// Whether this actor may see a key of `owner_id` (beyond its keyspace).
    pub fn sees_owner(&self, owner_id: Option<&str>) -> bool {
        self.owner().is_none_or(|mine| owner_id == Some(mine))
    }

    /// Refuses an actor bound to one owner (a portal customer) an operation whose
    /// answer spans owners (audit log, events, webhooks, keyspace-wide usage).
    pub fn require_all_owners(&self, what: &'static str) -> Result<()> {
        if self.owner().is_some() {
            return Err(ServiceError::MissingScope(what));
        }
        Ok(())
    }

    /// Whether this actor may hand out root-key scope `scope` (it holds it itself): `*`
    /// only from `*`, `keys:reveal` only from `keys:reveal` or `*`, a family (`keys:*`)
    /// only from the family or `*`. Operators grant neither `*` nor `keys:reveal`.
    pub fn grants(&self, scope: &str) -> bool {
        match &self.who {
            Who::Local(_) => true,
            Who::Portal(_) | Who::Reporter(_) | Who::Gateway(_) => false,
            Who::Operator { role, .. } => {
                *role == OperatorRole::Admin && scope != "*" && scope != "keys:reveal"
            }
            Who::RootKey(key) => {
                let mine = key.scopes();
                if mine.iter().any(|s| s == "*") {
                    return true;
                }
                match scope {
                    "*" => false,
                    "keys:reveal" => mine.iter().any(|s| s == "keys:reveal"),
                    family if family.ends_with(":*") => mine.iter().any(|s| s == family),
                    s => policy::scopes_grant(mine, s),
                }
            }
        }
    }

    /// Whether this actor may change anything at all (a viewer may not).
    pub fn may_write(&self) -> bool {
        match &self.who {
            Who::Operator { role, .. } => *role == OperatorRole::Admin,
            Who::Gateway(_) => false,
            _ => true,
        }
    }

    pub fn client_ip(&self) -> Option<String> {
        self.client_ip.map(|ip| ip.to_string())
    }

    pub fn require(&self, scope: Scope) -> Result<()> {
        let scopes = match &self.who {
            Who::RootKey(key) => key.scopes(),
            Who::Local(_) => return Ok(()),
            Who::Operator { role, .. } => {
                let granted = match role {
                    OperatorRole::Admin => scope != Scope::KeysReveal,
                    OperatorRole::Viewer => scope.reads_only(),
                };
                return if granted {
                    Ok(())
                } else {
                    Err(ServiceError::MissingScope(scope.as_str()))
                };
            }
            Who::Reporter(_) | Who::Gateway(_) => {
                return Err(ServiceError::MissingScope(scope.as_str()));
            }
            Who::Portal(grant) => {
                let granted = match scope {
                    Scope::KeysRead => grant.allows(PortalPermission::KeysRead),
                    Scope::KeysWrite => [
                        PortalPermission::KeysCreate,
                        PortalPermission::KeysRotate,
                        PortalPermission::KeysRevoke,
                    ]
                    .into_iter()
                    .any(|p| grant.allows(p)),
                    _ => false,
                };
                return if granted {
                    Ok(())
                } else {
                    Err(ServiceError::MissingScope(scope.as_str()))
                };
            }
        };
        let granted = if scope == Scope::KeysReveal {
            scopes.iter().any(|s| s == "*" || s == "keys:reveal")
        } else {
            policy::scopes_grant(scopes, scope.as_str())
        };
        if granted {
            Ok(())
        } else {
            Err(ServiceError::MissingScope(scope.as_str()))
        }
    }

    /// Whether objects of keyspace `id` exist for this actor.
    pub fn sees_keyspace(&self, id: &str) -> bool {
        id != ROOT_KEYSPACE_ID
            && self
                .visible()
                .is_none_or(|allowed| allowed.iter().any(|a| a == id))
    }

    /// The keyspace restriction to pass to list queries; `None` means unrestricted.
    pub fn visible(&self) -> Option<&[String]> {
        match &self.who {
            Who::RootKey(key) => key.allowed_keyspaces(),
            Who::Local(_) | Who::Operator { .. } | Who::Reporter(_) => None,
            Who::Portal(grant) => Some(&grant.keyspace_ids),
            Who::Gateway(keyspaces) => keyspaces.as_deref(),
        }
    }

    /// A root key's record as it was when the request authenticated; `None` for any
    /// other actor.
    pub fn root_key_record(&self) -> Option<&Arc<VerifyRecord>> {
        match &self.who {
            Who::RootKey(key) => Some(key),
            _ => None,
        }
    }

    pub fn is_restricted(&self) -> bool {
        self.visible().is_some()
    }

    /// Owners are deployment-wide: only an actor not limited to keyspaces may change them.
    pub fn require_unrestricted(&self, what: &str) -> Result<()> {
        if self.is_restricted() {
            return Err(ServiceError::invalid(format!(
                "{what} can only be set by a root key not limited to keyspaces"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(scopes: &[&str], allowed: Option<&[&str]>) -> Actor {
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
            ip_allowlist: None,
            grants: Default::default(),
            last_used_at: None,
            created_at: now,
            updated_at: now,
        };
        Actor::root_key(
            Arc::new(VerifyRecord::of(keyhaven_store::KeyForVerify {
                scopes: key.scopes.clone(),
                plan_ratelimits: Vec::new(),
                key,
                keyspace_prefix: "kh_root".into(),
                keyspace_name: "root".into(),
                max_key_age: None,
                owner_external_id: None,
                keyspace_ratelimits: Vec::new(),
                owner_limits: Default::default(),
                owner_ip_allowlist: None,
                keyspace_ip_allowlist: None,
                permissions: Vec::new(),
            })),
            None,
        )
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
    fn portal_customers_see_one_owner_and_operators_their_role() {
        let grant = PortalGrant::new(
            "own_a".into(),
            vec!["ks_a".into()],
            vec![PortalPermission::KeysRead, PortalPermission::KeysRevoke],
            None,
        );
        let p = Actor::portal(Arc::new(grant), None);
        assert_eq!(p.id(), "portal:own_a");
        assert!(p.require(Scope::KeysRead).is_ok());
        assert!(p.require(Scope::KeysWrite).is_ok(), "revoke is a write");
        for scope in [
            Scope::AuditRead,
            Scope::WebhooksRead,
            Scope::OwnersRead,
            Scope::KeysReveal,
            Scope::PortalWrite,
        ] {
            assert!(p.require(scope).is_err(), "{scope:?}");
        }
        assert!(p.require_all_owners("x").is_err());
        assert!(p.sees_owner(Some("own_a")));
        assert!(!p.sees_owner(Some("own_b")) && !p.sees_owner(None));
        assert!(p.sees_keyspace("ks_a") && !p.sees_keyspace("ks_b"));
        assert!(p.is_restricted());

        let viewer = Actor::operator("vic@example.com", OperatorRole::Viewer, None);
        assert_eq!(viewer.id(), "operator:vic@example.com");
        assert!(viewer.require(Scope::AuditRead).is_ok());
        assert!(viewer.require(Scope::KeysWrite).is_err());
        assert!(!viewer.may_write());
        let admin = Actor::operator("ann@example.com", OperatorRole::Admin, None);
        assert!(admin.require(Scope::KeysWrite).is_ok() && admin.may_write());
        assert!(
            admin.require(Scope::KeysReveal).is_err(),
            "operators never reveal keys"
        );
        assert!(!admin.is_restricted() && admin.sees_owner(None));
    }

    #[test]
    fn root_scope_lists_are_checked() {
        assert!(validate_root_scopes(&["keys:read".into()]).is_ok());
        assert!(validate_root_scopes(&[]).is_err());
        assert!(validate_root_scopes(&["keys:rea".into()]).is_err());
    }
}
