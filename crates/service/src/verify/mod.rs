//! The verify path, top to bottom: one verification, from the presented key to the
//! verdict. Used by `POST /v1/keys/verify` (through [`verify`]) and by root-key
//! authentication ([`authenticate`]).
//!
//! 1. Check the request (scopes, costs) — no storage.
//! 2. Parse the key once: prefix, key id, secret, checksum — no storage. A string that
//!    is not in Keyhaven's format may be an imported key ([`match_imported`]): only
//!    when the deployment holds imported keys is it looked up, by the lookups its shape
//!    allows (`keyhaven_core::compat::lookups`); otherwise it is MALFORMED at once.
//! 3. The key's record, from the cache ([`crate::cache`]) or the store, by key id.
//! 4. MAC of the secret under the pepper, compared in constant time with the stored
//!    verifier (`PepperSet::verify`). Nothing beyond NOT_FOUND/MALFORMED is decided
//!    before the secret matched; a match under an older pepper re-hashes off the path.
//! 5. Policy: enabled, revoked, expired (or past its rotation grace), the client's
//!    address against the IP allowlists of the key, its owner and its keyspace, scopes
//!    (`keyhaven_core::policy`).
//! 6. Rate limits and quota for a usable key ([`crate::limits`]); the failed-verification
//!    limiter for a key that was not found.
//! 7. Usage counting ([`crate::usage`]) and metrics; the caller shapes the answer from
//!    the [`Verdict`].
//!
//! No `tracing` span here: a span per verification was a measurable cost.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Instant;

use keyhaven_core::compat::{self, ImportFormat};
use keyhaven_core::permissions::Query;
use keyhaven_core::{
    KeyState, ParsedKey, SecretStr, Verification, VerifyCode, ip_allowlist, policy,
};
use keyhaven_store::{ROOT_KEYSPACE_ID, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::actor::Actor;
use crate::cache::VerifyRecord;
use crate::clock::Clock;
use crate::error::{Result, ServiceError};
use crate::limits::{Decision, NamedCost};
use crate::service::Service;
use crate::usage::Outcome;
use crate::validate;

mod token;

/// Longest non-native key string that is looked up as a possible imported key.
const MAX_IMPORTED_KEY_LEN: usize = 512;
pub use crate::validate::{MAX_COST, MAX_NAMED_LIMITS};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The whole key as presented by the caller.
    #[schema(value_type = String)]
    pub key: SecretString,
    /// Scopes the key must hold (up to 64); otherwise the answer is INSUFFICIENT_SCOPES.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub scopes: Vec<String>,
    /// Units this call takes from the key's rate limits and quota (default 1; 0 checks
    /// without consuming; at most 1,000).
    #[schema(maximum = 1000)]
    pub cost: Option<u64>,
    /// Check only these named limits, each at its own cost (default: every limit of the
    /// key at `cost`); at most 32. Names the key does not have are ignored.
    #[schema(max_items = 32)]
    pub ratelimits: Option<Vec<NamedCost>>,
    /// A permission query the key must satisfy, such as
    /// `documents.read AND (documents.write OR admin)` (`AND` binds tighter than `OR`;
    /// at most 1,000 bytes and 64 permissions); otherwise the answer is
    /// INSUFFICIENT_PERMISSIONS with `missing_permissions`.
    #[schema(max_length = 1000)]
    pub permissions: Option<String>,
    /// The address of the client that presented the key (as your API saw it): checked
    /// against the IP allowlists of the key, its owner and its keyspace (a key with an
    /// allowlist answers FORBIDDEN_IP without it), and failed verifications are limited
    /// per address as well as per key id.
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<IpAddr>,
    /// For a signed token: the audience your service is. A token naming an audience is
    /// refused unless this is it (a token naming none is accepted by every audience).
    #[schema(max_length = 200)]
    pub audience: Option<String>,
}

/// The outcome of one verification, for the caller to shape its answer from. The key is
/// set only once the secret matched.
#[derive(Debug)]
pub struct Verdict<'a> {
    pub code: VerifyCode,
    pub key: Option<&'a VerifyRecord>,
    /// The limits applied (for a usable key), or the failed-verification limiter that
    /// answered RATE_LIMITED.
    pub limits: &'a Decision<'a>,
    /// For INSUFFICIENT_PERMISSIONS: the query's permissions the key lacks.
    pub missing_permissions: &'a [String],
    /// A signed token was presented (not the key itself): what it says, once its
    /// signature verified. Its scopes are what the caller holds.
    pub token: Option<&'a keyhaven_core::token::TokenClaims>,
}

/// Verifies `request.key` for `actor` (whose visible keyspaces bound what it may learn
/// of; the front door has checked its permission): the whole decision. `answer` shapes the verdict while it can borrow from the cached record (no
/// copies of scopes or meta on the hot path).
pub async fn verify<R>(
    service: &Service,
    actor: &Actor,
    request: &VerifyRequest,
    answer: impl FnOnce(&Verdict<'_>) -> R,
) -> Result<R> {
    let start = Instant::now();
    // 1. The request.
    let (cost, query) = check_request(request)?;
    let now_us = service.clock.now_micros();
    let now = Clock::seconds(now_us);
    // 2-5. Parse once, then record, MAC and policy.
    let presented = request.key.expose_secret();
    let parsed = keyhaven_core::parse(presented).ok();
    let visible = |keyspace: &str| actor.sees_keyspace(keyspace);
    let asked = Asked {
        scopes: &request.scopes,
        client_ip: Some(request.client_ip),
    };
    let mut claims = None;
    let matched = match &parsed {
        Some(parsed) => match_native(service, parsed, &asked, visible, now).await?,
        None => match keyhaven_core::token::TokenFormat::detect(presented) {
            Some(_) => {
                let audience = request.audience.as_deref();
                let (matched, found) =
                    token::match_token(service, presented, &asked, visible, now, audience).await?;
                // Not a token of ours: perhaps an imported key of that shape.
                if found.is_none()
                    && matches!(matched.code, VerifyCode::NotFound | VerifyCode::Malformed)
                    && service.has_imported_keys()
                {
                    match_imported(service, presented, &asked, visible, now).await?
                } else {
                    claims = found;
                    matched
                }
            }
            None => match_imported(service, presented, &asked, visible, now).await?,
        },
    };
    let mut code = matched.code;
    let found = matched.key.as_deref();
    // 5b. Permissions, for a key otherwise usable.
    let mut missing_permissions = Vec::new();
    if let (VerifyCode::Valid, Some(query), Some(record)) = (code, &query, found) {
        let held = |p: &str| {
            (record.permissions())
                .binary_search_by(|x| x.as_str().cmp(p))
                .is_ok()
        };
        if !query.holds(&held) {
            code = VerifyCode::InsufficientPermissions;
            missing_permissions = query.missing(&held);
        }
    }
    // 6. Limits.
    let mut limits = Decision::default();
    match (code, found) {
        (VerifyCode::Valid, Some(record)) => {
            limits = (service.limits)
                .admit(record, cost, request.ratelimits.as_deref(), now_us)
                .await;
            if let Some(denied) = limits.denied {
                code = denied;
            } else if let Some(seq) = limits.quota_use
                && service.config.quota_flush_interval().is_none()
            {
                // Zero-loss quotas: the use is in the database before VALID is said.
                (service.limits.quotas)
                    .wait_durable(service.store.as_ref(), seq)
                    .await?;
            }
        }
        (VerifyCode::NotFound | VerifyCode::Malformed, None) => {
            let key_id = parsed.as_ref().map(ParsedKey::key_id);
            if let Some(blocked) = (service.limits.failures).note(key_id, request.client_ip, now_us)
            {
                code = VerifyCode::RateLimited;
                limits.ratelimits.push(blocked);
            }
        }
        _ => {}
    }
    // 7. Usage, the answer, metrics.
    if service.config.usage_tracking {
        if let Some(found) = found {
            (service.usage).record(found.key_id(), Outcome::Answered(code), now);
        } else if let Some(key_id) = &matched.wrong_secret_for {
            (service.usage).record(key_id, Outcome::WrongSecret, now);
        }
    }
    let verdict = Verdict {
        code,
        key: found,
        limits: &limits,
        missing_permissions: &missing_permissions,
        token: claims.as_ref(),
    };
    let out = answer(&verdict);
    VerifyMetrics::get().record(code, start);
    if service.config.verify_log_every > 0 {
        let key_id = found
            .map(VerifyRecord::key_id)
            .or(matched.wrong_secret_for.as_deref())
            .or(parsed.as_ref().map(ParsedKey::key_id));
        log_verification(
            service.config.verify_log_every,
            code,
            key_id,
            found.map(VerifyRecord::keyspace_id),
            request.client_ip,
        );
    }
    Ok(out)
}

/// The verification log (`verify_log_every`): one INFO line for one verification in
/// `every`, under the target `keyhaven::verify` so it can be routed or filtered on its own
/// (`KEYHAVEN_LOG=info,keyhaven::verify=off`). The key id is public; the secret never
/// reaches this function.
fn log_verification(
    every: u64,
    code: VerifyCode,
    key_id: Option<&str>,
    keyspace_id: Option<&str>,
    client_ip: Option<IpAddr>,
) {
    static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if !SEEN
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .is_multiple_of(every)
    {
        return;
    }
    tracing::info!(
        target: "keyhaven::verify",
        key_id = key_id.unwrap_or("-"),
        keyspace_id = keyspace_id.unwrap_or("-"),
        outcome = code.as_str(),
        client_ip = client_ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        "verification"
    );
}

/// The root key presenting `token`, as the actor of a request from `client_ip`; `None`
/// if it is not a valid root key (the caller answers 401 without saying why).
pub async fn authenticate(
    service: &Service,
    token: &str,
    client_ip: Option<IpAddr>,
) -> Result<Option<Actor>> {
    let now = service.clock.now();
    let is_root = |keyspace: &str| keyspace == ROOT_KEYSPACE_ID;
    let asked = Asked {
        scopes: &[],
        client_ip: Some(client_ip),
    };
    let matched = match keyhaven_core::parse(token) {
        Ok(parsed) => match_native(service, &parsed, &asked, is_root, now).await?,
        Err(_) => match_imported(service, token, &asked, is_root, now).await?,
    };
    let key = match (matched.code, matched.key) {
        (VerifyCode::Valid, Some(key)) => key,
        _ => return Ok(None),
    };
    if root_key_deadline(service, key.created_at()).is_some_and(|end| end <= now) {
        return Ok(None);
    }
    if service.config.usage_tracking {
        let valid = Outcome::Answered(VerifyCode::Valid);
        service.usage.record(key.key_id(), valid, now);
    }
    Ok(Some(Actor::root_key(key, client_ip)))
}

/// When `root_key_max_age_seconds` ends a root key created at `created_at`: that long
/// after (a rotation's successor starts again); `None` without the setting.
pub(crate) fn root_key_deadline(service: &Service, created_at: Timestamp) -> Option<Timestamp> {
    service
        .config
        .root_key_max_age()
        .map(|age| created_at + age)
}

/// The request's cost, once each cost and the named-limit list are within bounds.
/// Most verifications in one [`verify_batch`].
pub const MAX_BATCH: usize = 100;

/// Verifies each of `requests` in order, exactly as [`verify`] verifies one, shaping
/// each verdict with `answer` (`POST /v1/keys/verify/batch`). Every item is checked
/// first: a malformed item refuses the whole batch, naming it (`items[3]: …`), before
/// any key is looked at or any limit consumed.
pub async fn verify_batch<R>(
    service: &Service,
    actor: &Actor,
    requests: &[VerifyRequest],
    mut answer: impl FnMut(&Verdict<'_>) -> R,
) -> Result<Vec<R>> {
    if requests.is_empty() || requests.len() > MAX_BATCH {
        return Err(ServiceError::invalid(format!(
            "items: 1 to {MAX_BATCH} verifications, not {}",
            requests.len()
        )));
    }
    for (i, request) in requests.iter().enumerate() {
        check_request(request).map_err(|e| e.at_item("items", i))?;
    }
    let mut out = Vec::with_capacity(requests.len());
    for request in requests {
        out.push(verify(service, actor, request, &mut answer).await?);
    }
    Ok(out)
}

/// The request's own rules (scopes, permission query, cost, named limits); its cost and
/// parsed query.
fn check_request(request: &VerifyRequest) -> Result<(u64, Option<Query<'_>>)> {
    validate::scopes(&request.scopes)?;
    let query = request
        .permissions
        .as_deref()
        .map(Query::parse)
        .transpose()
        .map_err(|e| ServiceError::invalid(format!("permissions: the query {e}")))?;
    Ok((checked_cost(request)?, query))
}

fn checked_cost(request: &VerifyRequest) -> Result<u64> {
    let cost = request.cost.unwrap_or(1);
    let named = request.ratelimits.as_deref().unwrap_or_default();
    if named.len() > MAX_NAMED_LIMITS {
        return Err(ServiceError::invalid(format!(
            "at most {MAX_NAMED_LIMITS} named rate limits"
        )));
    }
    if std::iter::once(cost)
        .chain(named.iter().filter_map(|n| n.cost))
        .any(|c| c > MAX_COST)
    {
        return Err(ServiceError::invalid(format!(
            "cost must be at most {MAX_COST}"
        )));
    }
    Ok(cost)
}

/// What a verification asks of a matched key beyond its own state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    scopes: &'a [String],
    /// The client's address, checked against the IP allowlists; `None` skips that
    /// check (a key's own state, [`key_state_code`]), `Some(None)` is a call that gave
    /// no address.
    client_ip: Option<Option<IpAddr>>,
}

/// A verification's result before limits: the code and, once the secret matched, the key.
#[derive(Debug, Clone)]
pub(crate) struct Matched {
    code: VerifyCode,
    key: Option<Arc<VerifyRecord>>,
    /// The id of a stored key that was presented with a wrong secret (for its usage
    /// counts and failed-verification alerts; the caller is told NOT_FOUND).
    wrong_secret_for: Option<String>,
}

impl Matched {
    pub(crate) fn rejected(code: VerifyCode) -> Self {
        Self {
            code,
            key: None,
            wrong_secret_for: None,
        }
    }
}

/// Steps 3-5 for a key in Keyhaven's format. `visible` decides whether the caller may
/// learn about the key's keyspace at all; outside it the key is NOT_FOUND.
async fn match_native(
    service: &Service,
    parsed: &ParsedKey<'_>,
    asked: &Asked<'_>,
    visible: impl FnOnce(&str) -> bool,
    now: Timestamp,
) -> Result<Matched> {
    let record = service
        .cache
        .get(service.store.as_ref(), parsed.key_id())
        .await?;
    let stored = record.as_ref().map(|r| r.verifier());
    let matched = service
        .peppers
        .verify(parsed.key_id(), parsed.secret(), stored)
        .map_err(|e| ServiceError::Unexpected(e.into()))?;
    let (record, rehash) = match (matched, record) {
        (Verification::Valid { rehash }, Some(record))
            if record.keyspace_prefix() == parsed.prefix()
                && record.import().is_none()
                && visible(record.keyspace_id()) =>
        {
            (record, rehash)
        }
        (Verification::Invalid, Some(record)) if record.keyspace_prefix() == parsed.prefix() => {
            return Ok(Matched {
                wrong_secret_for: Some(record.key_id().to_owned()),
                ..Matched::rejected(VerifyCode::NotFound)
            });
        }
        _ => return Ok(Matched::rejected(VerifyCode::NotFound)),
    };
    if rehash {
        spawn_rehash(service, &record, parsed.secret());
    }
    Ok(apply_policy(record, asked, now))
}

/// A non-native key: an imported key, or MALFORMED.
async fn match_imported(
    service: &Service,
    key: &str,
    asked: &Asked<'_>,
    visible: impl FnOnce(&str) -> bool,
    now: Timestamp,
) -> Result<Matched, ServiceError> {
    if !service.has_imported_keys() || key.is_empty() || key.len() > MAX_IMPORTED_KEY_LEN {
        return Ok(Matched::rejected(VerifyCode::Malformed));
    }
    let store = service.store.as_ref();
    for (format, lookup) in compat::lookups(key, &service.peppers) {
        let Some(key_id) = service.cache.import_lookup(store, &lookup).await? else {
            continue;
        };
        let Some(record) = service.cache.get(store, &key_id).await? else {
            continue;
        };
        let Some(import) = record.import() else {
            continue;
        };
        let secret = SecretStr::new(key);
        let (matched, upgrade, rehash) = match &import.digest {
            Some(digest) => {
                // The pepper the import was stored under; an unknown version never matches.
                let ok = ImportFormat::parse(&import.format) == Some(format)
                    && service
                        .peppers
                        .get(record.verifier().version())
                        .is_some_and(|pepper| format.matches(key, digest, pepper));
                (ok, ok, false)
            }
            None => match service
                .peppers
                .verify(record.key_id(), secret, Some(record.verifier()))
                .map_err(|e| ServiceError::Unexpected(e.into()))?
            {
                Verification::Valid { rehash } => (true, false, rehash),
                Verification::Invalid => (false, false, false),
            },
        };
        if !matched || !visible(record.keyspace_id()) {
            return Ok(Matched::rejected(VerifyCode::NotFound));
        }
        if upgrade {
            // First successful verify of an imported key: store the native verifier of the
            // whole key string and forget the old digest.
            let to = service.peppers.verifier(record.key_id(), secret);
            let key_id = record.key_id().to_owned();
            let service = service.clone();
            tokio::spawn(async move {
                match service.store.complete_import(&key_id, &to).await {
                    Ok(_) => service.cache.invalidate(&key_id),
                    Err(e) => {
                        tracing::warn!(key_id, error = %e, "upgrading an imported key failed")
                    }
                }
            });
        } else if rehash {
            spawn_rehash(service, &record, secret);
        }
        return Ok(apply_policy(record, asked, now));
    }
    Ok(Matched::rejected(VerifyCode::Malformed))
}

/// The secret matched under an older pepper: store it under the newest, once, off the
/// request's path. The new verifier is computed here, where the secret is.
fn spawn_rehash(service: &Service, record: &VerifyRecord, secret: SecretStr<'_>) {
    let to = service.peppers.verifier(record.key_id(), secret);
    let from = record.verifier().version().get();
    let key_id = record.key_id().to_owned();
    let service = service.clone();
    tokio::spawn(async move {
        match service.store.rehash_key(&key_id, from, &to).await {
            Ok(_) => service.cache.invalidate(&key_id),
            Err(e) => {
                tracing::warn!(key_id, error = %e, "re-hashing a key to the newest pepper failed")
            }
        }
    });
}

/// What a stored key's own state says now, before any scope or address is asked for:
/// VALID, EXPIRED, REVOKED or DISABLED (the rule verification applies after the secret
/// matched).
pub(crate) fn key_state_code(record: Arc<VerifyRecord>, now: Timestamp) -> VerifyCode {
    let asked = Asked {
        scopes: &[],
        client_ip: None,
    };
    apply_policy(record, &asked, now).code
}

/// Step 5: the policy decision for a key whose secret matched.
pub(crate) fn apply_policy(
    record: Arc<VerifyRecord>,
    asked: &Asked<'_>,
    now: Timestamp,
) -> Matched {
    let ip_admitted = asked
        .client_ip
        .is_none_or(|client_ip| ip_allowlist::admitted(record.ip_allowlists(), client_ip));
    let code = policy::decide(
        KeyState {
            enabled: record.enabled(),
            revoked: record.revoked(),
            expires_at: record.effective_expiry().map(|t| t.unix_timestamp()),
            grace_until: record.rotation().map(|r| r.grace_until.unix_timestamp()),
            scopes: record.scopes(),
            ip_admitted,
        },
        asked.scopes,
        now.unix_timestamp(),
    );
    Matched {
        code,
        key: Some(record),
        wrong_secret_for: None,
    }
}

/// Per-code counters and the latency histogram, registered once: looking a metric up
/// by name and labels on every verify was a measurable share of its cost.
struct VerifyMetrics {
    by_code: Vec<(VerifyCode, metrics::Counter)>,
    duration: metrics::Histogram,
}

impl VerifyMetrics {
    fn get() -> &'static Self {
        static METRICS: OnceLock<VerifyMetrics> = OnceLock::new();
        METRICS.get_or_init(|| VerifyMetrics {
            by_code: VerifyCode::ALL
                .into_iter()
                .map(|code| {
                    let counter =
                        metrics::counter!(crate::metrics::VERIFICATIONS, "code" => code.as_str());
                    (code, counter)
                })
                .collect(),
            duration: metrics::histogram!(crate::metrics::VERIFY_DURATION),
        })
    }

    fn record(&self, code: VerifyCode, start: Instant) {
        if let Some((_, counter)) = self.by_code.iter().find(|(c, _)| *c == code) {
            counter.increment(1);
        }
        self.duration.record(start.elapsed().as_secs_f64());
    }
}
