//! The stateless proxy node (`keyhaven proxy --server URL`): verification through a
//! central Keyhaven's `POST /v1/keys/verify`, with a local cache of admissions kept
//! coherent by its change stream (`GET /v1/changes`).
//!
//! What is cached, and why that is safe:
//! - Only a VALID answer for a key with no rate limit and no quota, to a request whose
//!   route names no limits (its answer would list only those): every request of a
//!   limited key goes to the central server, which counts it. A cached admission is
//!   keyed by the SHA-256 of the presented key and the client's address (the node keeps
//!   no key; a key with an IP allowlist is valid from some addresses only) and holds the
//!   caller's identity and scopes, so a route asking other scopes is decided locally
//!   with the same scope rule (`keyhaven_core::policy::scopes_grant`).
//! - It is dropped by the stream's `key` event for its key id, and every one by `all`
//!   and `reset`. A verification that raced with an event is not cached (an epoch taken
//!   before the call must be unchanged when it returns), so a revocation is never
//!   overwritten by an answer from before it.
//! - It is served only while the stream has spoken (an event or a heartbeat) within
//!   half of `cache_coherence_ms` (the server sends a heartbeat every quarter, and its
//!   own feed may lag by up to half: so nothing is served staler than the bound); keep
//!   the node's `cache_coherence_ms` equal to the server's. A silent or broken stream
//!   means every request goes to the
//!   central server until it speaks again (fail closed). It never outlives the key's
//!   expiry or rotation grace, nor `cache_ttl_ms`.
//!
//! Cached admissions are not counted in the central server's usage (`last_used_at`,
//! usage charts): a deployment that needs exact usage per key sets `cache_ttl_ms` low
//! or gives its keys a rate limit.

use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyhaven_core::VerifyCode;
use keyhaven_core::policy::scopes_grant;
use keyhaven_service::gateway::{self, Access, Admission, Identity, LimitState, Refusal};
use moka::sync::Cache;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A central Keyhaven and this node's cache of its answers.
#[derive(Debug)]
pub struct Remote {
    http: reqwest::Client,
    server: String,
    root_key: SecretString,
    cache: Cache<[u8; 32], Cached>,
    /// Bumped by every invalidation; a verification caches its answer only if it is
    /// unchanged from before the call.
    epoch: AtomicU64,
    origin: Instant,
    /// When the stream last spoke, in ms after `origin` (0: never).
    heard_ms: AtomicU64,
    coherence: Duration,
}

#[derive(Debug, Clone)]
struct Cached {
    identity: Arc<Identity>,
    /// The key stops verifying then (expiry or rotation grace), in ms after `origin`.
    until_ms: Option<u64>,
}

/// The central server's verify answer: the fields a gateway needs.
#[derive(Debug, Deserialize)]
struct Answer {
    code: String,
    key_id: Option<String>,
    keyspace_id: Option<String>,
    owner: Option<AnswerOwner>,
    scopes: Option<Vec<String>>,
    expires_at: Option<String>,
    rotation: Option<AnswerRotation>,
    #[serde(default)]
    ratelimits: Vec<AnswerLimit>,
    remaining: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct AnswerOwner {
    id: String,
    external_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AnswerRotation {
    grace_until: String,
}

#[derive(Debug, Deserialize)]
struct AnswerLimit {
    name: String,
    limit: u64,
    duration_ms: u64,
    remaining: u64,
    reset_at: String,
    retry_after_ms: Option<u64>,
    exceeded: bool,
}

impl Remote {
    /// A node verifying through `server` (its base URL) with `root_key` (scope
    /// `keys:verify`), caching for at most `ttl` and trusting its cache only within
    /// `coherence` of the stream's last word.
    pub fn new(
        server: &str,
        root_key: SecretString,
        capacity: u64,
        ttl: Duration,
        coherence: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            http,
            server: server.trim_end_matches('/').to_owned(),
            root_key,
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            epoch: AtomicU64::new(0),
            origin: Instant::now(),
            heard_ms: AtomicU64::new(0),
            coherence,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The stream spoke (an event or a heartbeat).
    pub fn heard(&self) {
        self.heard_ms.store(self.now_ms().max(1), Ordering::Release);
    }

    /// Whether cached admissions may be served now.
    fn coherent(&self) -> bool {
        let heard = self.heard_ms.load(Ordering::Acquire);
        let bound = u64::try_from(self.coherence.as_millis() / 2).unwrap_or(u64::MAX);
        heard > 0 && self.now_ms().saturating_sub(heard) <= bound
    }

    /// Drops the cached admissions of `key_id`.
    pub fn invalidate_key(&self, key_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let key_id = key_id.to_owned();
        let _ = self
            .cache
            .invalidate_entries_if(move |_, cached| cached.identity.key_id == key_id);
    }

    /// Drops every cached admission.
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    /// Fails unless the central server answers a verification with this root key.
    pub async fn check(&self) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/v1/keys/verify", self.server))
            .bearer_auth(self.root_key.expose_secret())
            .json(&json!({"key": "-"}))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {}", self.server, e.without_url()))?;
        match response.status().as_u16() {
            200 => Ok(()),
            401 => anyhow::bail!("{} refused the root key", self.server),
            403 => anyhow::bail!("the root key lacks the scope keys:verify"),
            status => anyhow::bail!("{} answered {status} to a verification", self.server),
        }
    }

    /// The bound of the cache's staleness (`cache_coherence_ms`).
    pub fn coherence(&self) -> Duration {
        self.coherence
    }

    /// The change stream's URL.
    pub fn changes_url(&self) -> String {
        format!("{}/v1/changes", self.server)
    }

    pub fn root_key(&self) -> &SecretString {
        &self.root_key
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Decides a request: from the cache when it may, else by the central server.
    pub async fn authorize(
        &self,
        access: Access<'_>,
        key: Option<&str>,
        client_ip: Option<IpAddr>,
    ) -> Result<Admission, ApiError> {
        let key = match gateway::key_to_verify(&access, key) {
            ControlFlow::Continue(key) => key,
            ControlFlow::Break(decided) => return Ok(decided),
        };
        // Keyed by the address too: a key with an IP allowlist is valid only from some;
        // and by the listener's token audience: a token is valid for its audience only.
        let mut hash = Sha256::new();
        hash.update(key.as_bytes());
        hash.update([0]);
        if let Some(ip) = client_ip {
            hash.update(ip.to_string().as_bytes());
        }
        hash.update([0]);
        if let Some(audience) = access.audience {
            hash.update(audience.as_bytes());
        }
        let digest: [u8; 32] = hash.finalize().into();
        if self.coherent()
            && access.permissions.is_none()
            && let Some(hit) = self.cache.get(&digest)
            && hit.until_ms.is_none_or(|until| self.now_ms() < until)
        {
            cache_hits().increment(1);
            let granted = &hit.identity.scopes;
            if access.scopes.iter().all(|s| scopes_grant(granted, s)) {
                return Ok(Admission::Allowed((*hit.identity).clone()));
            }
            return Ok(Admission::Refused(Refusal {
                code: Some(VerifyCode::InsufficientScopes),
                limits: Vec::new(),
            }));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let coherent_before = self.coherent();
        let answer = self.verify(access, key, client_ip).await?;
        let now = time::OffsetDateTime::now_utc();
        let limits: Vec<LimitState> = answer.ratelimits.iter().map(|l| l.state(now)).collect();
        let code = VerifyCode::ALL
            .into_iter()
            .find(|c| c.as_str() == answer.code)
            .ok_or_else(|| unavailable("the central server answered an unknown code"))?;
        let (VerifyCode::Valid, Some(key_id), Some(keyspace_id)) =
            (code, &answer.key_id, &answer.keyspace_id)
        else {
            return Ok(Admission::Refused(Refusal {
                code: Some(code),
                limits,
            }));
        };
        let identity = Identity {
            key_id: key_id.clone(),
            keyspace_id: keyspace_id.clone(),
            owner_id: answer.owner.as_ref().map(|o| o.id.clone()),
            owner_external_id: answer.owner.as_ref().and_then(|o| o.external_id.clone()),
            scopes: answer.scopes.clone().unwrap_or_default(),
            limits,
        };
        // A route naming some limits gets an answer listing only those: a key with other
        // limits would look unlimited, so such an answer is never cached.
        // A cached admission knows the key's scopes, not its permissions.
        let cacheable = access.ratelimits.is_none()
            && access.permissions.is_none()
            && answer.ratelimits.is_empty()
            && answer.remaining.is_none();
        if cacheable && coherent_before {
            let until = [
                answer.expires_at.as_deref(),
                answer.rotation.as_ref().map(|r| r.grace_until.as_str()),
            ]
            .into_iter()
            .flatten()
            .filter_map(|t| ms_until(t, now))
            .min()
            .map(|ms| self.now_ms().saturating_add(ms));
            let cached = Cached {
                identity: Arc::new(identity.clone()),
                until_ms: until,
            };
            // Inserted, then checked: an invalidation between the two either bumped the
            // epoch before the check (and the entry goes again here) or came after the
            // insert (and removed it itself).
            self.cache.insert(digest, cached);
            if self.epoch.load(Ordering::Acquire) != epoch {
                self.cache.invalidate(&digest);
            }
        }
        Ok(Admission::Allowed(identity))
    }

    async fn verify(
        &self,
        access: Access<'_>,
        key: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Answer, ApiError> {
        let body = json!({
            "key": key,
            "scopes": access.scopes,
            "cost": access.cost,
            "ratelimits": access.ratelimits.map(|named| named.iter()
                .map(|n| json!({"name": n.name, "cost": n.cost}))
                .collect::<Vec<_>>()),
            "client_ip": client_ip,
            "permissions": access.permissions,
            "audience": access.audience,
        });
        let response = self
            .http
            .post(format!("{}/v1/keys/verify", self.server))
            .bearer_auth(self.root_key.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e.without_url(), "the central server cannot be reached");
                unavailable("the key service cannot be reached")
            })?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "the central server refused a verification");
            return Err(unavailable("the key service refused to verify"));
        }
        response.json().await.map_err(|e| {
            tracing::warn!(error = %e.without_url(), "unreadable answer from the central server");
            unavailable("the key service answered something unreadable")
        })
    }
}

impl AnswerLimit {
    fn state(&self, now: time::OffsetDateTime) -> LimitState {
        LimitState {
            name: self.name.clone(),
            limit: self.limit,
            window_ms: self.duration_ms,
            remaining: self.remaining,
            reset_ms: ms_until(&self.reset_at, now).unwrap_or(0),
            retry_after_ms: self.retry_after_ms,
            exceeded: self.exceeded,
        }
    }
}

/// Milliseconds from `now` to RFC 3339 time `at` (0 when past; `None` if unreadable).
fn ms_until(at: &str, now: time::OffsetDateTime) -> Option<u64> {
    let at =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    let ms = (at - now).whole_milliseconds().max(0);
    Some(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// `keyhaven_proxy_cache_hits_total`, registered once.
fn cache_hits() -> &'static metrics::Counter {
    static HITS: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    HITS.get_or_init(|| metrics::counter!("keyhaven_proxy_cache_hits_total"))
}

fn unavailable(detail: &str) -> ApiError {
    ApiError::Unavailable(detail.to_owned())
}
