//! Making keys: create, and rotate (a successor for an existing key). The plaintext of
//! a new key lives only in [`NewKey`] (a secret type, zeroed when dropped) and reaches
//! the front door once, when it renders its answer.

use keyhaven_core::{GeneratedKey, Prefix, Verifier};
use keyhaven_store::{Change, Grants, KeyRecord, Limits, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::lookups::Lookups;
use super::{audited_fields, find, to_completion};
use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::idempotency::{Done, Idempotent, Rendered};
use crate::limits::spec::{QuotaBody, RateLimitBody, quota, quota_audit, rate_limits};
use crate::recoverable;
use crate::service::Service;
use crate::validate::{self, rfc3339};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub keyspace_id: String,
    pub owner_id: Option<String>,
    /// 1-200 characters without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Up to 64 scopes, each 1-100 characters of `[A-Za-z0-9_:.*/-]`.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// RFC 3339; must be in the future.
    pub expires_at: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Keep the plaintext, sealed under the server's master key, so a root key with
    /// `keys:reveal` can see it again. Default false.
    pub recoverable: Option<bool>,
    /// The key's own rate limits: override its keyspace's (and owner's) of the same
    /// name, or add to them; at most 16.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub ratelimits: Vec<RateLimitBody>,
    /// Remaining uses, optionally refilled daily or monthly.
    pub quota: Option<QuotaBody>,
    /// Client addresses the key may be used from: up to 100 IPv4/IPv6 networks in CIDR
    /// notation or single addresses (`203.0.113.0/24`, `2001:db8::/32`, `198.51.100.7`).
    /// A verification from elsewhere, or without `client_ip`, answers FORBIDDEN_IP.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub ip_allowlist: Vec<String>,
    /// Roles of the key (by name, each a role of its keyspace); their permissions are held as if
    /// given directly. At most 64.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub roles: Vec<String>,
    /// Permissions the key holds directly (`documents.read`); at most 64, each 1-100
    /// characters of `[A-Za-z0-9_.:*/-]`.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub permissions: Vec<String>,
    /// The plan the key is on (`/v1/plans`): its rate limits, quota, scopes, roles,
    /// permissions and maximum age apply, except where the key sets its own.
    pub plan: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps verifying (VALID, with `rotation` set in verify answers);
    /// then it answers REVOKED. Default: the keyspace's `default_grace_seconds`, else 0
    /// (ends it at once); at most one year (31622400).
    #[schema(maximum = 31622400)]
    pub grace_period_seconds: Option<u64>,
}

/// Longest grace period of a rotation: one (leap) year.
pub const MAX_GRACE_SECONDS: u64 = 366 * 24 * 3600;

/// A key just made, for its front door to show once: the plaintext and the record.
pub struct NewKey {
    generated: GeneratedKey,
    pub key: KeyRecord,
    /// The keyspace's prefix (for the key's display form).
    pub prefix: String,
}

impl NewKey {
    /// The whole key. Keyhaven keeps only a peppered HMAC (and, for a recoverable key, a
    /// sealed copy): copies made from this must be zeroed once sent.
    pub fn plaintext(&self) -> &SecretString {
        self.generated.key()
    }
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("plaintext", &"<redacted>")
            .field("key_id", &self.key.key_id)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Creates a key in a keyspace the actor may see. Its expiry is capped by the
/// keyspace's maximum key age; a recoverable key is sealed under the master key.
/// `render` shapes the answer (the only time the plaintext is shown), which is stored
/// sealed with the change for `idem`'s replays.
#[tracing::instrument(skip_all)]
pub async fn create(
    service: &Service,
    actor: &Actor,
    input: CreateKey,
    idem: &Idempotent<'_>,
    render: impl FnOnce(&NewKey) -> Result<Rendered>,
) -> Result<Done> {
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    let now = service.clock.now();
    let new = prepare(service, actor, input, now, &mut Lookups::default()).await?;
    let answer = render(&new)?;
    let event = creation_event(actor, &new.key, now)?;
    let key = &new.key;
    idem.commit(answer, &event, now, async |change| {
        let result = service.store.create_key(key, change).await;
        if result.is_ok() {
            service.cache.invalidate(&key.key_id);
        }
        result
    })
    .await
}

/// A key made from `input` by `actor` at `now`, checked (keyspace, owner, roles, plan,
/// limits) and minted, but not stored. `lookups` remembers what was read, for a batch.
pub(super) async fn prepare(
    service: &Service,
    actor: &Actor,
    input: CreateKey,
    now: Timestamp,
    lookups: &mut Lookups,
) -> Result<NewKey> {
    let keyspace = lookups.keyspace(service, actor, &input.keyspace_id).await?;
    if let Some(name) = &input.name {
        validate::name("name", name)?;
    }
    validate::scopes(&input.scopes)?;
    validate::meta(&input.meta)?;
    let ip_allowlist = validate::ip_allowlist(&input.ip_allowlist)?;
    let grants = Grants {
        plan: input.plan,
        roles: validate::grant_names("roles", input.roles)?,
        permissions: validate::grant_names("permissions", input.permissions)?,
    };
    lookups
        .check_roles(service, &keyspace.id, &grants.roles)
        .await?;
    let plan = match &grants.plan {
        Some(name) => Some(lookups.plan(service, name).await?),
        None => None,
    };
    let expires_at = input
        .expires_at
        .as_deref()
        .map(|t| validate::time("expires_at", t))
        .transpose()?;
    if expires_at.is_some_and(|t| t <= now) {
        return Err(ServiceError::invalid("expires_at must be in the future"));
    }
    // The keyspace's maximum age caps the expiry (it is also enforced when verifying;
    // a plan's is enforced only then, so a plan edit can lengthen it).
    let expires_at = cap_expiry(expires_at, keyspace.policy.max_key_age, now);
    // A portal customer's keys are always its owner's.
    let owner_id = match actor.owner() {
        Some(_) if input.owner_id.is_some() => {
            return Err(ServiceError::invalid("owner_id cannot be chosen here"));
        }
        Some(mine) => Some(mine.to_owned()),
        None => {
            if let Some(id) = input.owner_id.as_deref() {
                lookups.check_owner(service, actor, id).await?;
            }
            input.owner_id
        }
    };
    let (generated, verifier) = mint(service, &keyspace.prefix, keyspace.policy.secret_length)?;
    let sealed_key = match input.recoverable {
        Some(true) => Some(seal(service, &generated)?),
        _ => None,
    };
    let key = KeyRecord {
        key_id: generated.key_id().as_str().to_owned(),
        keyspace_id: keyspace.id.clone(),
        owner_id,
        name: input.name,
        last4: generated.last4().to_owned(),
        verifier,
        scopes: input.scopes,
        meta: input.meta,
        allowed_keyspaces: None,
        enabled: input.enabled.unwrap_or(true),
        expires_at,
        revoked_at: None,
        revoked_reason: None,
        rotation: None,
        rotated_from: None,
        sealed_key,
        import: None,
        limits: Limits {
            ratelimits: rate_limits(input.ratelimits)?,
            quota: match input.quota {
                Some(q) => Some(quota(q, now)?),
                None => crate::plans::joining_quota(plan.as_ref(), None, now),
            },
        },
        ip_allowlist,
        grants,
        last_used_at: None,
        created_at: now,
        updated_at: now,
    };
    Ok(NewKey {
        generated,
        key,
        prefix: keyspace.prefix,
    })
}

/// The audit event of creating `key`.
pub(super) fn creation_event(
    actor: &Actor,
    key: &KeyRecord,
    now: Timestamp,
) -> Result<keyhaven_store::AuditEvent> {
    let mut fields = audit::created(&audited_fields(key));
    if key.limits.quota.is_some() {
        fields.insert("quota".into(), quota_audit(key.limits.quota.as_ref()));
    }
    audit::event(
        actor,
        "key.create",
        ("key", &key.key_id),
        Some(&key.keyspace_id),
        fields,
        now,
    )
}

/// Rotates a key: a successor (recoverable if the old key was) takes over, and the old
/// key keeps verifying for the grace period (default: its keyspace's). `render` shapes
/// the answer (the successor, shown this once), stored with the change as for create.
#[tracing::instrument(skip_all)]
pub async fn rotate(
    service: &Service,
    actor: &Actor,
    key_id: &str,
    input: RotateKey,
    idem: &Idempotent<'_>,
    render: impl FnOnce(&NewKey) -> Result<Rendered>,
) -> Result<Done> {
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    let found = find(service, actor, key_id).await?;
    let policy = service
        .store
        .keyspace(&found.key.keyspace_id)
        .await?
        .map(|k| k.policy)
        .unwrap_or_default();
    let grace = match input.grace_period_seconds {
        Some(g) => g,
        None => u64::try_from(policy.default_grace.unwrap_or(0)).unwrap_or(0),
    };
    if grace > MAX_GRACE_SECONDS {
        return Err(ServiceError::invalid(format!(
            "grace_period_seconds must be at most {MAX_GRACE_SECONDS}"
        )));
    }
    let old = found.key;
    let now = service.clock.now();
    let grace_until = now + time::Duration::seconds(i64::try_from(grace).unwrap_or(0));
    // The keyspace's secret length now: a rotation moves a key to it.
    let (generated, verifier) = mint(service, &found.keyspace_prefix, policy.secret_length)?;
    // A recoverable key's successor is recoverable too, sealed with its own plaintext.
    let sealed_key = match old.sealed_key {
        Some(_) => Some(seal(service, &generated)?),
        None => None,
    };
    let successor = KeyRecord {
        sealed_key,
        import: None,
        key_id: generated.key_id().as_str().to_owned(),
        last4: generated.last4().to_owned(),
        verifier,
        expires_at: cap_expiry(None, policy.max_key_age, now),
        revoked_at: None,
        revoked_reason: None,
        rotation: None,
        rotated_from: Some(old.key_id.clone()),
        last_used_at: None,
        created_at: now,
        updated_at: now,
        ..old.clone()
    };
    let new = NewKey {
        generated,
        key: successor,
        prefix: found.keyspace_prefix,
    };
    let answer = render(&new)?;
    let event = audit::event(
        actor,
        "key.rotate",
        ("key", key_id),
        Some(&old.keyspace_id),
        audit::created(&[
            ("successor_key_id", json!(new.key.key_id)),
            ("grace_until", json!(rfc3339(grace_until))),
        ]),
        now,
    )?;
    let saved = idem.record(&answer, now)?;
    let (store, id, successor) = (service.store.clone(), key_id.to_owned(), new.key.clone());
    let ids = vec![id.clone(), successor.key_id.clone()];
    let result = to_completion(service, ids, async move {
        let change = Change {
            audit: &event,
            idempotency: saved.as_ref(),
        };
        store.rotate_key(&id, &successor, grace_until, change).await
    })
    .await;
    idem.finish(result, answer).await
}

/// The earlier of `expires_at` and `now + max_age`.
fn cap_expiry(
    expires_at: Option<Timestamp>,
    max_age: Option<i64>,
    now: Timestamp,
) -> Option<Timestamp> {
    let by_age = max_age.map(|age| now + time::Duration::seconds(age));
    match (expires_at, by_age) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A new key under `prefix` with a secret of `length`, and its verifier under the newest
/// pepper.
fn mint(
    service: &Service,
    prefix: &str,
    length: keyhaven_core::SecretLength,
) -> Result<(GeneratedKey, Verifier)> {
    let prefix = Prefix::new(prefix).map_err(anyhow::Error::from)?;
    let generated = keyhaven_core::generate_with(&prefix, length).map_err(anyhow::Error::from)?;
    let secret = keyhaven_core::parse(generated.key().expose_secret())
        .map_err(|e| anyhow::anyhow!("generated key failed to parse: {e:?}"))?
        .secret();
    let verifier = service
        .peppers
        .verifier(generated.key_id().as_str(), secret);
    Ok((generated, verifier))
}

/// The plaintext of `generated` sealed under the master key, for a recoverable key.
fn seal(service: &Service, generated: &GeneratedKey) -> Result<Vec<u8>> {
    let master = service.master_keys.as_ref().ok_or_else(|| {
        ServiceError::bad_request(
            "recoverable_keys_disabled",
            "This server has no master key, so it cannot keep recoverable keys.",
        )
    })?;
    Ok(recoverable::seal(
        master,
        generated.key_id().as_str(),
        generated.key().expose_secret(),
    )?)
}
