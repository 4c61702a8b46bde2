//! Overrides of standalone rate limits: within a namespace, an identifier (`alice@acme.com`)
//! or a pattern (`*@acme.com`, where `*` is any run of characters) gets a limit of its
//! own instead of the one each call names: a partner's higher allowance, a tighter one
//! for a suspicious domain. An exact identifier wins over patterns; of several matching
//! patterns the most specific (most characters other than `*`) applies, then the
//! alphabetically first.
//!
//! Each node keeps a namespace's overrides in memory ([`super::cache`]) for at most the
//! cache-coherence bound (`cache_coherence_ms`), so an edit through any node applies
//! everywhere within it; through this node, at once.
//!
//! Unlike the identifiers of calls (kept only as SHA-256), an override's identifier is
//! stored as given: it is configuration the operator chose, shown back by the API.

use keyhaven_core::wildcard;
use keyhaven_store::{Change, RateLimitDef, RatelimitOverride};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::actor::{Actor, Scope};
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::limits::spec::{self, RateLimitBody};
use crate::service::Service;

use super::cache::Loaded;

/// Most overrides in one namespace, and most of them with a `*`.
pub const MAX_OVERRIDES: usize = 1_000;
pub const MAX_PATTERNS: usize = 100;
/// Most `*` in one pattern.
pub const MAX_STARS: usize = 4;

/// An override to set (replacing the one of the same namespace and identifier).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetOverride {
    /// 1-64 characters of `[A-Za-z0-9_.-]`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.-]+$")]
    pub namespace: String,
    /// An identifier, or a pattern where `*` stands for any run of characters (at most
    /// 4): 1-256 characters without control characters.
    #[schema(min_length = 1, max_length = 256)]
    pub identifier: String,
    /// Calls per period, 1 to 10^9.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub limit: u64,
    /// The period in milliseconds, 1 ms to 30 days.
    #[schema(minimum = 1, maximum = 2592000000_u64)]
    pub duration_ms: u64,
    /// Calls admitted at once from a full limit, 1 to 10^9 (default: `limit`).
    #[schema(minimum = 1, maximum = 1000000000)]
    pub burst: Option<u64>,
}

/// The limit `namespace`'s rules give (the namespace's name checked the same way).
fn namespace_limit(
    namespace: String,
    limit: u64,
    duration_ms: u64,
    burst: Option<u64>,
) -> Result<RateLimitDef> {
    spec::rate_limits(vec![RateLimitBody {
        name: namespace,
        limit,
        duration_ms,
        burst,
    }])?
    .pop()
    .ok_or_else(|| ServiceError::invalid("no limit"))
}

fn check_identifier(identifier: &str) -> Result<()> {
    let ok = !identifier.is_empty()
        && identifier.chars().count() <= super::MAX_IDENTIFIER_CHARS
        && !identifier.chars().any(char::is_control);
    if !ok {
        return Err(ServiceError::invalid(format!(
            "identifier: 1-{} characters without control characters",
            super::MAX_IDENTIFIER_CHARS
        )));
    }
    if identifier.matches('*').count() > MAX_STARS {
        return Err(ServiceError::invalid(format!(
            "identifier: at most {MAX_STARS} `*` in a pattern"
        )));
    }
    Ok(())
}

fn target(o: &RatelimitOverride) -> String {
    format!("{}/{}", o.namespace, o.identifier)
}

fn audited(limit: &RateLimitDef) -> serde_json::Value {
    json!({"limit": limit.limit, "duration_ms": limit.duration_ms, "burst": limit.burst})
}

/// Sets an override; returns it as stored. Needs `ratelimits:write` and a root key not
/// limited to keyspaces.
#[tracing::instrument(skip_all)]
pub async fn set(
    service: &Service,
    actor: &Actor,
    input: SetOverride,
) -> Result<RatelimitOverride> {
    actor.require(Scope::RatelimitsWrite)?;
    actor.require_unrestricted("rate limit overrides")?;
    let limit = namespace_limit(input.namespace, input.limit, input.duration_ms, input.burst)?;
    check_identifier(&input.identifier)?;
    let existing = service.store.ratelimit_overrides(&limit.name).await?;
    let before = existing.iter().find(|o| o.identifier == input.identifier);
    if before.is_none() {
        if existing.len() >= MAX_OVERRIDES {
            return Err(ServiceError::invalid(format!(
                "a namespace holds at most {MAX_OVERRIDES} overrides"
            )));
        }
        let patterns = existing
            .iter()
            .filter(|o| wildcard::is_pattern(&o.identifier));
        if wildcard::is_pattern(&input.identifier) && patterns.count() >= MAX_PATTERNS {
            return Err(ServiceError::invalid(format!(
                "a namespace holds at most {MAX_PATTERNS} overrides with `*`"
            )));
        }
    }
    let now = service.clock.now();
    let stored = RatelimitOverride {
        namespace: limit.name.clone(),
        identifier: input.identifier,
        created_at: before.map_or(now, |b| b.created_at),
        updated_at: now,
        limit,
    };
    let event = audit::event(
        actor,
        "ratelimit_override.set",
        ("ratelimit_override", &target(&stored)),
        None,
        audit::diff(&[(
            "limit",
            before.map_or(serde_json::Value::Null, |b| audited(&b.limit)),
            audited(&stored.limit),
        )]),
        now,
    )?;
    let (inner, written) = (service.clone(), stored.clone());
    in_full(async move {
        let result = (inner.store)
            .set_ratelimit_override(&written, Change::audited(&event))
            .await;
        inner.overrides.forget(&written.namespace);
        result
    })
    .await?;
    Ok(stored)
}

/// A namespace's overrides, by identifier. Needs `ratelimits:read` (unrestricted).
pub async fn list(
    service: &Service,
    actor: &Actor,
    namespace: &str,
) -> Result<Vec<RatelimitOverride>> {
    actor.require(Scope::RatelimitsRead)?;
    actor.require_unrestricted("rate limit overrides")?;
    check_namespace(namespace)?;
    Ok(service.store.ratelimit_overrides(namespace).await?)
}

/// Deletes an override (`NotFound` if there is none). Needs `ratelimits:write`.
#[tracing::instrument(skip_all)]
pub async fn delete(
    service: &Service,
    actor: &Actor,
    namespace: &str,
    identifier: &str,
) -> Result<()> {
    actor.require(Scope::RatelimitsWrite)?;
    actor.require_unrestricted("rate limit overrides")?;
    check_namespace(namespace)?;
    let existing = service.store.ratelimit_overrides(namespace).await?;
    let found = (existing.into_iter())
        .find(|o| o.identifier == identifier)
        .ok_or(ServiceError::NotFound)?;
    let event = audit::event(
        actor,
        "ratelimit_override.delete",
        ("ratelimit_override", &target(&found)),
        None,
        audit::created(&[("limit", audited(&found.limit))]),
        service.clock.now(),
    )?;
    let (inner, namespace, identifier) =
        (service.clone(), namespace.to_owned(), identifier.to_owned());
    in_full(async move {
        let result = (inner.store)
            .delete_ratelimit_override(&namespace, &identifier, Change::audited(&event))
            .await;
        inner.overrides.forget(&namespace);
        result
    })
    .await
}

/// Runs a write and this node's cache invalidation on a task of their own, so a caller
/// cut off after the commit cannot leave the old overrides cached here.
async fn in_full(
    write: impl Future<Output = std::result::Result<(), keyhaven_store::StoreError>> + Send + 'static,
) -> Result<()> {
    tokio::spawn(write).await.map_err(|e| {
        ServiceError::Unexpected(anyhow::anyhow!("an override change task failed: {e}"))
    })??;
    Ok(())
}

/// Refuses a namespace the limits could never have (the same rule as on limit calls).
fn check_namespace(namespace: &str) -> Result<()> {
    let ok = (1..=64).contains(&namespace.len())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(ServiceError::invalid(
            "namespace: 1-64 characters of [A-Za-z0-9_.-]",
        ));
    }
    Ok(())
}

/// The override for `identifier` in `namespace`, if one applies.
pub(super) async fn find(
    service: &Service,
    namespace: &str,
    identifier: &str,
) -> Result<Option<RateLimitDef>> {
    let loaded = match service.overrides.get(namespace) {
        Some(loaded) => loaded,
        None => {
            let generation = service.overrides.generation();
            match service.store.ratelimit_overrides(namespace).await {
                Ok(all) => service
                    .overrides
                    .put(namespace, Loaded::of(all), generation),
                // The limit the call names still applies: the database is not needed
                // to count, only to find overrides.
                Err(e) => {
                    tracing::warn!(error = %e, "reading rate limit overrides failed; using the limit the call names");
                    return Ok(None);
                }
            }
        }
    };
    Ok(loaded.find(identifier).cloned())
}
