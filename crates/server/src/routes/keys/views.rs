//! Keys as the API shows them: never the secret, except the one time a key is made
//! ([`CreatedKey`]) or revealed ([`RevealedKey`]).

use axum::http::StatusCode;
use keyhaven_service::ServiceError;
use keyhaven_service::idempotency::Rendered;
use keyhaven_service::import::ImportOutcome;
use keyhaven_service::keys::NewKey;
use keyhaven_service::limits::spec::{QuotaCtx, QuotaView, RateLimitBody, rate_limit_views};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::{KeyForVerify, KeyRecord, QuotaTarget};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use zeroize::Zeroize;

use crate::respond::render;
use crate::state::AppState;

/// A key as the API shows it: never the secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub key_id: String,
    pub keyspace_id: String,
    pub owner_id: Option<String>,
    pub name: Option<String>,
    /// Identifies the key without revealing it: `acme_live_7Gx9QbWkP2mZ_…aB3c`.
    pub start: String,
    pub scopes: Vec<String>,
    pub meta: Map<String, Value>,
    pub enabled: bool,
    /// Whether the plaintext can be revealed again (`POST /v1/keys/{key_id}/reveal`).
    pub recoverable: bool,
    /// For an imported key: the scheme its old system used.
    pub import_format: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    /// Set once the key was rotated: the successor's key id.
    pub rotated_to: Option<String>,
    /// When a rotated key stops verifying (answers REVOKED from then on).
    pub grace_until: Option<String>,
    /// The key this one replaced, for a key created by a rotation.
    pub rotated_from: Option<String>,
    /// The key's own rate limits (its keyspace's defaults apply besides).
    pub ratelimits: Vec<RateLimitBody>,
    /// The key's own quota of uses.
    pub quota: Option<QuotaView>,
    /// Networks the key may be used from, in CIDR form; empty for any address (its
    /// owner's and keyspace's allowlists apply as well).
    pub ip_allowlist: Vec<String>,
    /// Roles of the key's keyspace the key has (its owner's apply as well).
    pub roles: Vec<String>,
    /// Permissions given directly (roles add theirs).
    pub permissions: Vec<String>,
    /// The plan the key is on (`/v1/plans`), if any.
    pub plan: Option<String>,
    pub last_used_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl KeyView {
    /// A found key as the API shows it, its quota as it stands now.
    pub fn of(state: &AppState, k: &KeyForVerify) -> Self {
        Self::new(&k.key, &k.keyspace_prefix, &QuotaCtx::of(state))
    }

    pub fn new(key: &KeyRecord, prefix: &str, ctx: &QuotaCtx<'_>) -> Self {
        Self {
            key_id: key.key_id.clone(),
            keyspace_id: key.keyspace_id.clone(),
            owner_id: key.owner_id.clone(),
            name: key.name.clone(),
            start: match &key.import {
                None => keyhaven_core::format::display_form(prefix, &key.key_id, &key.last4),
                Some(i) => match (i.format.as_str(), i.public.as_deref()) {
                    ("prefixed_sha256", Some(id)) => format!("{id}_\u{2026}"),
                    ("dotted_sha512", Some(id)) => format!("{id}.\u{2026}"),
                    (format, _) => format!("\u{2026} (imported, {format})"),
                },
            },
            import_format: key.import.as_ref().map(|i| i.format.clone()),
            scopes: key.scopes.clone(),
            meta: key.meta.clone(),
            enabled: key.enabled,
            recoverable: key.sealed_key.is_some(),
            expires_at: key.expires_at.map(rfc3339),
            revoked_at: key.revoked_at.map(rfc3339),
            revoked_reason: key.revoked_reason.clone(),
            rotated_to: key.rotation.as_ref().map(|r| r.successor.clone()),
            grace_until: key.rotation.as_ref().map(|r| rfc3339(r.grace_until)),
            rotated_from: key.rotated_from.clone(),
            ratelimits: rate_limit_views(&key.limits.ratelimits),
            quota: ctx.view(
                QuotaTarget::Key(key.key_id.clone()),
                key.limits.quota.as_ref(),
            ),
            ip_allowlist: crate::respond::allowlist_view(key.ip_allowlist.as_ref()),
            roles: key.grants.roles.clone(),
            permissions: key.grants.permissions.clone(),
            plan: key.grants.plan.clone(),
            last_used_at: key.last_used_at.map(rfc3339),
            created_at: rfc3339(key.created_at),
            updated_at: rfc3339(key.updated_at),
        }
    }
}

/// The answer to a key creation: the key itself, shown this once, and its record.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The plaintext key. Keyhaven keeps only a peppered HMAC: it cannot show it again.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyView,
}

impl CreatedKey {
    /// The `201 Created` answer for a key just made; the copy of its plaintext made
    /// here is zeroed once rendered (the rendering itself zeroes when dropped).
    pub fn render(state: &AppState, new: &NewKey) -> Result<Rendered, ServiceError> {
        let mut created = Self::of(new, &QuotaCtx::of(state));
        let answer = render(StatusCode::CREATED, &created);
        created.key.zeroize();
        answer
    }

    /// The answer's value for `new`, holding a copy of its plaintext: zero it once used.
    fn of(new: &NewKey, quota: &QuotaCtx) -> Self {
        Self {
            key: new.plaintext().expose_secret().to_owned(),
            record: KeyView::new(&new.key, &new.prefix, quota),
        }
    }
}

/// `POST /v1/keys/batch`: up to 1,000 keys, each as `POST /v1/keys` takes one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeysBatch {
    #[schema(min_items = 1, max_items = 1000)]
    pub keys: Vec<keyhaven_service::keys::CreateKey>,
}

/// The answer to a batch creation: every key, in the order asked, each shown this once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedKeys {
    pub keys: Vec<CreatedKey>,
}

impl CreatedKeys {
    /// The `201 Created` answer for keys just made; the copies of their plaintexts made
    /// here are zeroed once rendered.
    pub fn render(state: &AppState, made: &[NewKey]) -> Result<Rendered, ServiceError> {
        let quota = QuotaCtx::of(state);
        let mut created = Self {
            keys: made.iter().map(|new| CreatedKey::of(new, &quota)).collect(),
        };
        let answer = render(StatusCode::CREATED, &created);
        for key in &mut created.keys {
            key.key.zeroize();
        }
        answer
    }
}

impl std::fmt::Debug for CreatedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKeys")
            .field("keys", &self.keys)
            .finish()
    }
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExpiringKeyView {
    pub key: KeyView,
    /// When the key stops verifying: the earlier of its `expires_at` and the keyspace's
    /// maximum key age.
    pub expires: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResponse {
    pub imported: usize,
    pub skipped: usize,
    pub rejected: usize,
    pub results: Vec<ImportOutcome>,
}

impl ImportResponse {
    pub fn new(results: Vec<ImportOutcome>) -> Self {
        let count = |s: &str| results.iter().filter(|o| o.status == s).count();
        Self {
            imported: count("imported"),
            skipped: count("skipped"),
            rejected: count("rejected"),
            results,
        }
    }
}

/// The plaintext of a recoverable key.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RevealedKey {
    pub key_id: String,
    pub key: String,
}

impl std::fmt::Debug for RevealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedKey")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}
