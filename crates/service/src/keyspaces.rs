//! Operations on keyspaces: families of keys sharing a prefix, with lifecycle defaults,
//! default rate limits and alert thresholds. The reserved root keyspace does not exist
//! here; an actor limited to some keyspaces sees only those, and cannot create any.
//!
//! A change to a keyspace changes how its keys verify (policy, limits, prefix lookups),
//! so updates and deletes empty the whole verify cache before they return.

use keyhaven_core::Prefix;
use keyhaven_store::{AlertThresholds, Change, Keyspace, KeyspacePolicy, Page, PageRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::actor::Actor;
use crate::audit;
use crate::branding::BrandingBody;
use crate::error::{Result, ServiceError};
use crate::idempotency::{Done, Idempotent, Rendered};
use crate::ids;
use crate::leaks::LeakPolicyName;
use crate::limits::spec::{RateLimitBody, rate_limits};
use crate::patch::double_option;
use crate::service::Service;
use crate::validate;

/// Longest policy duration: 100 years.
pub const MAX_POLICY_SECONDS: i64 = 100 * 366 * 24 * 3600;

/// When a key of the keyspace raises a `usage.anomaly` event. Judged per closed minute
/// from the flushed usage counters; one event per episode.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsBody {
    /// A minute with more than this many times the key's own baseline (its mean rate
    /// over the preceding `alert_baseline_minutes`) is a spike; 2-10000.
    #[schema(minimum = 2, maximum = 10000)]
    pub spike_factor: Option<u32>,
    /// Minutes with fewer verifications are never a spike; 1-10000000.
    #[schema(minimum = 1, maximum = 10000000)]
    pub spike_min_per_minute: Option<u64>,
    /// This many wrong secrets for one key id in a minute is a burst; 1-10000000.
    #[schema(minimum = 1, maximum = 10000000)]
    pub failed_per_minute: Option<u64>,
}

impl AlertsBody {
    fn thresholds(self) -> Result<AlertThresholds> {
        const MAX: u64 = 10_000_000;
        if self
            .spike_factor
            .is_some_and(|f| !(2..=10_000).contains(&f))
        {
            return Err(ServiceError::invalid(
                "alerts.spike_factor must be between 2 and 10000",
            ));
        }
        for (name, v) in [
            ("spike_min_per_minute", self.spike_min_per_minute),
            ("failed_per_minute", self.failed_per_minute),
        ] {
            if v.is_some_and(|v| !(1..=MAX).contains(&v)) {
                return Err(ServiceError::invalid(format!(
                    "alerts.{name} must be between 1 and {MAX}"
                )));
            }
        }
        Ok(AlertThresholds {
            spike_factor: self.spike_factor,
            spike_min_per_minute: self.spike_min_per_minute,
            failed_per_minute: self.failed_per_minute,
        })
    }

    /// Stored thresholds as they are shown.
    pub fn of(t: &AlertThresholds) -> Self {
        Self {
            spike_factor: t.spike_factor,
            spike_min_per_minute: t.spike_min_per_minute,
            failed_per_minute: t.failed_per_minute,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyspace {
    /// Human-readable name, 1-200 characters without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Key prefix: 1-20 characters `[a-z][a-z0-9_]*`, unique; `kh` and `kh_*` are
    /// reserved.
    #[schema(min_length = 1, max_length = 20, pattern = "^[a-z][a-z0-9_]*$")]
    pub prefix: String,
    /// Keys stop verifying (EXPIRED) this many seconds after creation; 1 second to 100
    /// years.
    #[schema(minimum = 1, maximum = 3162240000_i64)]
    pub max_key_age_seconds: Option<i64>,
    /// Grace period of a rotation that names none; 0 to 100 years.
    #[schema(minimum = 0, maximum = 3162240000_i64)]
    pub default_grace_seconds: Option<i64>,
    /// Keys this close to their expiry are listed as expiring (default 7 days); 1
    /// second to 100 years.
    #[schema(minimum = 1, maximum = 3162240000_i64)]
    pub expiry_warning_seconds: Option<i64>,
    /// Default rate limits of every key (a key's or owner's limit of the same name
    /// takes precedence); at most 16.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub ratelimits: Vec<RateLimitBody>,
    #[serde(default)]
    pub alerts: AlertsBody,
    /// How the customer portal looks to this keyspace's customers.
    #[serde(default)]
    pub branding: BrandingBody,
    /// What happens to a key reported as leaked (default `revoke`).
    #[serde(default)]
    pub leak_policy: LeakPolicyName,
    /// Client addresses every key of the keyspace may be used from: up to 100 IPv4/IPv6 networks in CIDR
    /// notation or single addresses (`203.0.113.0/24`, `2001:db8::/32`, `198.51.100.7`).
    /// A verification from elsewhere, or without `client_ip`, answers FORBIDDEN_IP.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub ip_allowlist: Vec<String>,
    /// The strength of new keys' secrets: 22 bytes (30 characters, ~175 bits; the
    /// default) or 32 (44 characters, ~257 bits).
    #[schema(minimum = 22, maximum = 32)]
    pub secret_bytes: Option<u8>,
    /// Longest lifetime of a signed token minted from a key of the keyspace
    /// (`POST /v1/tokens`): 60 seconds to a day (default 15 minutes).
    #[schema(minimum = 60, maximum = 86400)]
    pub token_max_ttl_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyspace {
    /// 1-200 characters without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// 1 second to 100 years; `null` removes the limit.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3162240000_i64)]
    pub max_key_age_seconds: Option<Option<i64>>,
    /// 0 to 100 years; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 3162240000_i64)]
    pub default_grace_seconds: Option<Option<i64>>,
    /// 1 second to 100 years; `null` restores the default (7 days).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3162240000_i64)]
    pub expiry_warning_seconds: Option<Option<i64>>,
    /// Replaces the default rate limits (`[]` removes them); at most 16.
    #[schema(max_items = 16)]
    pub ratelimits: Option<Vec<RateLimitBody>>,
    /// Replaces the alert thresholds (fields left out take the server's defaults).
    pub alerts: Option<AlertsBody>,
    /// Replaces the portal branding (`{}` restores the defaults).
    pub branding: Option<BrandingBody>,
    /// What happens to a key reported as leaked.
    pub leak_policy: Option<LeakPolicyName>,
    /// Replaces the IP allowlist of every key of the keyspace (`[]` removes it); at most 100 entries.
    #[schema(max_items = 100)]
    pub ip_allowlist: Option<Vec<String>>,
    /// 22 or 32: the secret strength of keys created (or rotated) from now on; existing
    /// keys keep theirs.
    #[schema(minimum = 22, maximum = 32)]
    pub secret_bytes: Option<u8>,
    /// 60 seconds to a day; `null` restores the default (15 minutes).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 60, maximum = 86400)]
    pub token_max_ttl_seconds: Option<Option<i64>>,
}

/// The secret length `secret_bytes` asks for (22 or 32).
fn secret_length(bytes: u8) -> Result<keyhaven_core::SecretLength> {
    keyhaven_core::SecretLength::from_bytes(bytes)
        .ok_or_else(|| ServiceError::invalid("secret_bytes must be 22 or 32"))
}

/// Each policy duration is 1 second to 100 years (grace may be 0).
fn validate_policy(p: &KeyspacePolicy) -> Result<()> {
    const MAX: i64 = MAX_POLICY_SECONDS;
    let check = |name: &str, v: Option<i64>, min: i64| match v {
        Some(v) if !(min..=MAX).contains(&v) => Err(ServiceError::invalid(format!(
            "{name} must be between {min} and {MAX} seconds"
        ))),
        _ => Ok(()),
    };
    check("max_key_age_seconds", p.max_key_age, 1)?;
    check("default_grace_seconds", p.default_grace, 0)?;
    check("expiry_warning_seconds", p.expiry_warning, 1)?;
    match p.token_max_ttl {
        Some(v) if !(60..=keyhaven_store::TOKEN_MAX_TTL_CEILING).contains(&v) => {
            Err(ServiceError::invalid(format!(
                "token_max_ttl_seconds must be between 60 and {} seconds",
                keyhaven_store::TOKEN_MAX_TTL_CEILING
            )))
        }
        _ => Ok(()),
    }
}

fn validate_prefix(prefix: &str) -> Result<()> {
    Prefix::new(prefix).map_err(|e| ServiceError::invalid(format!("prefix: {e}")))?;
    if prefix.starts_with("kh_") || prefix == "kh" {
        return Err(ServiceError::invalid(
            "prefix: `kh` and `kh_*` are reserved for Keyhaven",
        ));
    }
    Ok(())
}

/// A keyspace the actor may see, or `NotFound`.
pub async fn find(service: &Service, actor: &Actor, id: &str) -> Result<Keyspace> {
    visible(service.store.as_ref(), actor, id)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// The keyspace `id` if the actor may see it; needs only the store (the CLI's import
/// checks items with it).
pub(crate) async fn visible(
    store: &dyn keyhaven_store::Store,
    actor: &Actor,
    id: &str,
) -> Result<Option<Keyspace>> {
    if !ids::is_plausible("ks", id) || !actor.sees_keyspace(id) {
        return Ok(None);
    }
    store.keyspace(id).await.map_err(ServiceError::from)
}

/// A page of the keyspaces the actor may see.
#[tracing::instrument(skip_all)]
pub async fn list(service: &Service, actor: &Actor, page: PageRequest) -> Result<Page<Keyspace>> {
    service
        .store
        .list_keyspaces(actor.visible(), page)
        .await
        .map_err(ServiceError::from)
}

/// Creates a keyspace. Only an actor not limited to keyspaces may: a limited one cannot
/// widen its own reach. `render` shapes the answer, stored with the change for `idem`'s
/// replays.
#[tracing::instrument(skip_all)]
pub async fn create(
    service: &Service,
    actor: &Actor,
    input: CreateKeyspace,
    idem: &Idempotent<'_>,
    render: impl FnOnce(&Keyspace) -> Result<Rendered>,
) -> Result<Done> {
    if actor.is_restricted() {
        return Err(ServiceError::MissingScope(
            "keyspaces:write (unrestricted root key)",
        ));
    }
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    validate::name("name", &input.name)?;
    validate_prefix(&input.prefix)?;
    let now = service.clock.now();
    let policy = KeyspacePolicy {
        max_key_age: input.max_key_age_seconds,
        default_grace: input.default_grace_seconds,
        expiry_warning: input.expiry_warning_seconds,
        token_max_ttl: input.token_max_ttl_seconds,
        secret_length: match input.secret_bytes {
            Some(bytes) => secret_length(bytes)?,
            None => keyhaven_core::SecretLength::Standard,
        },
    };
    validate_policy(&policy)?;
    let ks = Keyspace {
        id: ids::new_id("ks")?,
        name: input.name,
        prefix: input.prefix,
        policy,
        ratelimits: rate_limits(input.ratelimits)?,
        alerts: input.alerts.thresholds()?,
        branding: input.branding.validated()?,
        leak_policy: input.leak_policy.into(),
        ip_allowlist: validate::ip_allowlist(&input.ip_allowlist)?,
        created_at: now,
        updated_at: now,
    };
    let answer = render(&ks)?;
    let event = audit::event(
        actor,
        "keyspace.create",
        ("keyspace", &ks.id),
        Some(&ks.id),
        audit::created(&[
            ("name", json!(ks.name)),
            ("prefix", json!(ks.prefix)),
            ("max_key_age_seconds", json!(ks.policy.max_key_age)),
            ("default_grace_seconds", json!(ks.policy.default_grace)),
            ("expiry_warning_seconds", json!(ks.policy.expiry_warning)),
            ("secret_bytes", json!(ks.policy.secret_length.bytes())),
            ("ratelimits", audit::list_value(&ks.ratelimits)),
            (
                "alerts",
                if ks.alerts == AlertThresholds::default() {
                    Value::Null
                } else {
                    json!(AlertsBody::of(&ks.alerts))
                },
            ),
            (
                "branding",
                if ks.branding.is_empty() {
                    Value::Null
                } else {
                    json!(BrandingBody::of(&ks.branding))
                },
            ),
            ("leak_policy", json!(LeakPolicyName::from(ks.leak_policy))),
            (
                "ip_allowlist",
                validate::ip_allowlist_audit(ks.ip_allowlist.as_ref()),
            ),
        ]),
        now,
    )?;
    idem.commit(answer, &event, now, async |change| {
        service.store.create_keyspace(&ks, change).await
    })
    .await
}

/// Updates a keyspace's name, policy, default limits or alert thresholds; returns it
/// as stored. Every key of it may now verify differently: the cache is emptied.
#[tracing::instrument(skip_all)]
pub async fn update(
    service: &Service,
    actor: &Actor,
    id: &str,
    input: UpdateKeyspace,
) -> Result<Keyspace> {
    let before = find(service, actor, id).await?;
    let mut after = before.clone();
    if let Some(name) = input.name {
        validate::name("name", &name)?;
        after.name = name;
    }
    if let Some(v) = input.max_key_age_seconds {
        after.policy.max_key_age = v;
    }
    if let Some(v) = input.default_grace_seconds {
        after.policy.default_grace = v;
    }
    if let Some(v) = input.expiry_warning_seconds {
        after.policy.expiry_warning = v;
    }
    if let Some(v) = input.ratelimits {
        after.ratelimits = rate_limits(v)?;
    }
    if let Some(v) = input.alerts {
        after.alerts = v.thresholds()?;
    }
    if let Some(v) = input.branding {
        after.branding = v.validated()?;
    }
    if let Some(v) = input.leak_policy {
        after.leak_policy = v.into();
    }
    if let Some(v) = input.ip_allowlist {
        after.ip_allowlist = validate::ip_allowlist(&v)?;
    }
    if let Some(bytes) = input.secret_bytes {
        after.policy.secret_length = secret_length(bytes)?;
    }
    if let Some(v) = input.token_max_ttl_seconds {
        after.policy.token_max_ttl = v;
    }
    validate_policy(&after.policy)?;
    let now = service.clock.now();
    after.updated_at = now;
    let (b, a) = (&before.policy, &after.policy);
    let event = audit::event(
        actor,
        "keyspace.update",
        ("keyspace", id),
        Some(id),
        audit::diff(&[
            ("name", json!(before.name), json!(after.name)),
            (
                "max_key_age_seconds",
                json!(b.max_key_age),
                json!(a.max_key_age),
            ),
            (
                "default_grace_seconds",
                json!(b.default_grace),
                json!(a.default_grace),
            ),
            (
                "expiry_warning_seconds",
                json!(b.expiry_warning),
                json!(a.expiry_warning),
            ),
            (
                "secret_bytes",
                json!(b.secret_length.bytes()),
                json!(a.secret_length.bytes()),
            ),
            (
                "token_max_ttl_seconds",
                json!(b.token_max_ttl),
                json!(a.token_max_ttl),
            ),
            (
                "ratelimits",
                json!(before.ratelimits),
                json!(after.ratelimits),
            ),
            (
                "alerts",
                json!(AlertsBody::of(&before.alerts)),
                json!(AlertsBody::of(&after.alerts)),
            ),
            (
                "branding",
                json!(BrandingBody::of(&before.branding)),
                json!(BrandingBody::of(&after.branding)),
            ),
            (
                "leak_policy",
                json!(LeakPolicyName::from(before.leak_policy)),
                json!(LeakPolicyName::from(after.leak_policy)),
            ),
            (
                "ip_allowlist",
                validate::ip_allowlist_audit(before.ip_allowlist.as_ref()),
                validate::ip_allowlist_audit(after.ip_allowlist.as_ref()),
            ),
        ]),
        now,
    )?;
    service
        .store
        .update_keyspace(&after, Change::audited(&event))
        .await?;
    service.cache.invalidate_all();
    Ok(after)
}

/// Deletes an empty keyspace (`keyspace_not_empty` while it holds keys).
#[tracing::instrument(skip_all)]
pub async fn delete(service: &Service, actor: &Actor, id: &str) -> Result<()> {
    let ks = find(service, actor, id).await?;
    let event = audit::event(
        actor,
        "keyspace.delete",
        ("keyspace", id),
        Some(id),
        audit::created(&[("name", json!(ks.name)), ("prefix", json!(ks.prefix))]),
        service.clock.now(),
    )?;
    service
        .store
        .delete_keyspace(id, Change::audited(&event))
        .await?;
    service.cache.invalidate_all();
    Ok(())
}
