//! The local cache of verify answers, kept coherent by the server's change stream
//! (`GET /v1/changes`, followed by [`crate::follow`]). The rules are those of the
//! `keyhaven proxy` node (`crates/server/src/gateway/remote.rs`), which this mirrors:
//!
//! - Only a VALID answer with no rate limit and no quota (`ratelimits` empty,
//!   `remaining` null), to a call that named no limits, is kept: every call of a limited
//!   key goes to the server, which counts it. (A call naming some limits gets an answer
//!   listing only those: a key with other limits would look unlimited.)
//! - Entries are keyed by the SHA-256 of the presented key and the client address (the
//!   key itself is never kept; a key with an IP allowlist is valid from some addresses
//!   only) and hold the whole answer, so a call asking other scopes is decided here with
//!   the server's scope rule ([`keyhaven_core::policy::scopes_grant`]): covered, or
//!   INSUFFICIENT_SCOPES.
//! - An entry never outlives the key's `expires_at` or rotation `grace_until`, nor the
//!   cache's time to live.
//! - A `key` event drops that key's entries; `all`, `reset` and any unknown event drop
//!   everything. An answer fetched while an event arrived (the epoch changed between
//!   before and after the call) is not kept.
//! - Entries are served only while the stream has sent a `heartbeat` or `reset` within
//!   half of the coherence bound (the server's `cache_coherence_ms`, 1 s by default): a
//!   silent stream means every call goes to the server (fail closed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyhaven_core::policy::scopes_grant;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::types::{VerifyCode, VerifyOptions, VerifyResponse};

/// How the cache behaves; see [`crate::ClientBuilder::cache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// Whether verify answers are cached at all (default true).
    pub enabled: bool,
    /// Most answers kept (default 100,000).
    pub capacity: u64,
    /// Longest an answer is kept (default 60 s).
    pub ttl: Duration,
    /// The server's `cache_coherence_ms` (default 1 s): cached answers are served only
    /// while the change stream has vouched within half of it.
    pub coherence: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity: 100_000,
            ttl: Duration::from_secs(60),
            coherence: Duration::from_millis(1_000),
        }
    }
}

impl CacheOptions {
    /// No cache: every call goes to the server.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

/// What the cache has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls that went to the server (not cached, or the stream not vouching).
    pub misses: u64,
    /// Answers kept.
    pub inserts: u64,
    /// Invalidations received from the stream (`key`, `all`, `reset`, unknown).
    pub invalidations: u64,
    /// Whether cached answers may be served now.
    pub coherent: bool,
}

#[derive(Debug)]
pub(crate) struct VerifyCache {
    entries: Cache<[u8; 32], Arc<Entry>>,
    /// Keys whose signed tokens are answered offline: each the server's VALID answer to
    /// one of its tokens, kept like an entry (unlimited key, no event since).
    vouched_keys: Cache<(String, Option<std::net::IpAddr>), Arc<VerifyResponse>>,
    /// Bumped by every invalidation: an answer is kept only if it is unchanged from
    /// before the call.
    epoch: AtomicU64,
    origin: Instant,
    /// When the stream last vouched (heartbeat or reset), in ms after `origin`; 0 never.
    heard_ms: AtomicU64,
    coherence: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    invalidations: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    response: Arc<VerifyResponse>,
    /// The key stops verifying then (expiry or rotation grace), in ms after `origin`.
    until_ms: Option<u64>,
}

/// Taken before a call to the server: the epoch and whether the stream vouched then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    epoch: u64,
    coherent: bool,
}

/// The SHA-256 of a presented key and the client address it came from (a key with an
/// IP allowlist is valid from some addresses only): the cache's only trace of the key.
pub(crate) fn digest(key: &str, client_ip: Option<std::net::IpAddr>) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(key.as_bytes());
    hash.update([0]);
    if let Some(ip) = client_ip {
        hash.update(ip.to_string().as_bytes());
    }
    hash.finalize().into()
}

impl VerifyCache {
    pub fn new(options: &CacheOptions) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(options.capacity)
                .time_to_live(options.ttl)
                .support_invalidation_closures()
                .build(),
            vouched_keys: Cache::builder()
                .max_capacity(options.capacity)
                .time_to_live(options.ttl)
                .support_invalidation_closures()
                .build(),
            epoch: AtomicU64::new(0),
            origin: Instant::now(),
            heard_ms: AtomicU64::new(0),
            coherence: options.coherence,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn coherence(&self) -> Duration {
        self.coherence
    }

    /// The stream vouched for everything up to now (a heartbeat or a reset).
    pub fn heard(&self) {
        self.heard_ms.store(self.now_ms().max(1), Ordering::Release);
    }

    /// Whether cached answers may be served now.
    pub fn coherent(&self) -> bool {
        let heard = self.heard_ms.load(Ordering::Acquire);
        let bound = u64::try_from(self.coherence.as_millis() / 2).unwrap_or(u64::MAX);
        heard > 0 && self.now_ms().saturating_sub(heard) <= bound
    }

    /// The stream broke: events may be in flight, so an answer fetched across the break
    /// is not kept (entries stay: the reconnected stream replays what was missed, or
    /// sends `reset`).
    pub fn lost(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops the entries of `key_id`.
    pub fn invalidate_key(&self, key_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        let key_id = key_id.to_owned();
        let vouched = key_id.clone();
        if self
            .vouched_keys
            .invalidate_entries_if(move |(k, _), _| *k == vouched)
            .is_err()
        {
            self.vouched_keys.invalidate_all();
        }
        let dropped = self.entries.invalidate_entries_if(move |_, entry| {
            entry.response.key_id.as_deref() == Some(key_id.as_str())
        });
        if dropped.is_err() {
            self.entries.invalidate_all();
        }
    }

    /// Drops every entry.
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.entries.invalidate_all();
        self.vouched_keys.invalidate_all();
    }

    /// The server's answer to a token of `key_id` from the call's client address, if that
    /// key's tokens may be answered offline for a call with `options`: the stream vouches
    /// and nothing changed the key since. By address, as answers are: a key with an IP
    /// allowlist is valid from some addresses only.
    pub fn vouched_key(
        &self,
        key_id: &str,
        options: &VerifyOptions,
    ) -> Option<Arc<VerifyResponse>> {
        if !answerable(options) || !self.coherent() {
            return None;
        }
        let found = self
            .vouched_keys
            .get(&(key_id.to_owned(), options.client_ip));
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keeps the server's answer to a token (`response.token`) of an unlimited key, under
    /// the same rule as [`VerifyCache::offer`], so the key's other tokens are answered
    /// offline until an event names the key.
    pub fn offer_key(
        &self,
        ticket: Ticket,
        options: &VerifyOptions,
        response: &Arc<VerifyResponse>,
    ) {
        let keepable = options.ratelimits.is_none()
            && options.permissions.is_none()
            && response.token
            && response.valid
            && response.code == VerifyCode::Valid
            && response.ratelimits.is_empty()
            && response.remaining.is_none();
        let Some(key_id) = response
            .key_id
            .clone()
            .filter(|_| keepable && ticket.coherent)
        else {
            return;
        };
        let entry = (key_id, options.client_ip);
        self.vouched_keys.insert(entry.clone(), response.clone());
        if self.epoch.load(Ordering::Acquire) != ticket.epoch {
            self.vouched_keys.invalidate(&entry);
        }
    }

    /// The answer for `digest` under `options`, if the cache may give it: the stream
    /// vouches, the entry is there and its key still verifies.
    pub fn lookup(
        &self,
        digest: &[u8; 32],
        options: &VerifyOptions,
    ) -> Option<Arc<VerifyResponse>> {
        if !answerable(options) || !self.coherent() {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let Some(entry) = self
            .entries
            .get(digest)
            .filter(|e| e.until_ms.is_none_or(|until| self.now_ms() < until))
        else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        let granted = entry.response.scopes.as_deref().unwrap_or_default();
        if options.scopes.iter().all(|s| scopes_grant(granted, s)) {
            return Some(entry.response.clone());
        }
        let mut refused = (*entry.response).clone();
        refused.valid = false;
        refused.code = VerifyCode::InsufficientScopes;
        Some(Arc::new(refused))
    }

    pub fn ticket(&self) -> Ticket {
        Ticket {
            epoch: self.epoch.load(Ordering::Acquire),
            coherent: self.coherent(),
        }
    }

    /// Keeps `response` (the answer to a call with `options`) for `digest` if it may be
    /// kept: VALID, unlimited, to a call naming no limits, fetched while the stream
    /// vouched and no event arrived meanwhile.
    pub fn offer(
        &self,
        digest: [u8; 32],
        ticket: Ticket,
        options: &VerifyOptions,
        response: &Arc<VerifyResponse>,
    ) {
        let cacheable = options.ratelimits.is_none()
            && options.permissions.is_none()
            && response.valid
            && response.code == VerifyCode::Valid
            && response.key_id.is_some()
            && response.ratelimits.is_empty()
            && response.remaining.is_none();
        if !cacheable || !ticket.coherent {
            return;
        }
        let now = time::OffsetDateTime::now_utc();
        let ends = [
            response.expires_at.as_deref(),
            response.rotation.as_ref().map(|r| r.grace_until.as_str()),
        ];
        let mut until_ms = None;
        for at in ends.into_iter().flatten() {
            // A time the client cannot read: not cached rather than cached too long.
            let Some(ms) = ms_until(at, now) else { return };
            let until = self.now_ms().saturating_add(ms);
            until_ms = Some(until_ms.map_or(until, |u: u64| u.min(until)));
        }
        let entry = Arc::new(Entry {
            response: response.clone(),
            until_ms,
        });
        // Inserted, then checked: an invalidation between the two either bumped the
        // epoch before the check (and the entry goes again here) or came after the
        // insert (and removed it itself).
        self.entries.insert(digest, entry);
        if self.epoch.load(Ordering::Acquire) != ticket.epoch {
            self.entries.invalidate(&digest);
        } else {
            self.inserts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            coherent: self.coherent(),
        }
    }
}

/// Whether the cache may answer a call with these options, as the server would: the
/// server refuses (400) a cost above 1,000, more than 64 scopes, or a scope that is not
/// 1-100 characters of `[A-Za-z0-9_:.*/-]`, so those calls go to it.
fn answerable(options: &VerifyOptions) -> bool {
    // A cached answer does not know the key's permissions: a query goes to the server.
    options.permissions.is_none()
        && options.cost.is_none_or(|c| c <= 1_000)
        && options.scopes.len() <= 64
        && options.ratelimits.as_ref().is_none_or(|r| r.len() <= 32)
        && options.scopes.iter().all(|s| {
            (1..=100).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_:.*/-".contains(&b))
        })
}

/// Milliseconds from `now` to RFC 3339 time `at` (0 when past; `None` if unreadable).
fn ms_until(at: &str, now: time::OffsetDateTime) -> Option<u64> {
    let at =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    let ms = (at - now).whole_milliseconds().max(0);
    Some(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{VerifyRatelimit, VerifyRotation};

    fn valid(key_id: &str, scopes: &[&str]) -> Arc<VerifyResponse> {
        let mut r = VerifyResponse::refused(VerifyCode::Valid);
        r.valid = true;
        r.key_id = Some(key_id.into());
        r.keyspace_id = Some("ks_1".into());
        r.scopes = Some(scopes.iter().map(|s| (*s).to_owned()).collect());
        Arc::new(r)
    }

    fn cache() -> VerifyCache {
        let c = VerifyCache::new(&CacheOptions::default());
        c.heard();
        c
    }

    fn opts(scopes: &[&str]) -> VerifyOptions {
        VerifyOptions::new().scopes(scopes.iter().copied())
    }

    #[test]
    fn a_valid_unlimited_answer_is_served_with_the_scope_rule() {
        let c = cache();
        let d = digest("k1", None);
        c.offer(
            d,
            c.ticket(),
            &VerifyOptions::new(),
            &valid("id1", &["orders:*", "read"]),
        );
        c.entries.run_pending_tasks();
        assert!(c.lookup(&d, &opts(&[])).unwrap().valid);
        assert!(
            c.lookup(&d, &opts(&["orders:write", "read"]))
                .unwrap()
                .valid
        );
        let refused = c.lookup(&d, &opts(&["orders:"])).unwrap();
        assert_eq!(refused.code, VerifyCode::InsufficientScopes);
        assert!(!refused.valid);
        let refused = c.lookup(&d, &opts(&["admin"])).unwrap();
        assert_eq!(refused.code, VerifyCode::InsufficientScopes);
        // The server would refuse these requests: they go to it.
        assert!(c.lookup(&d, &opts(&["bad scope"])).is_none());
        assert!(c.lookup(&d, &VerifyOptions::new().cost(1_001)).is_none());
    }

    #[test]
    fn limited_refused_or_racing_answers_are_not_kept() {
        let c = cache();
        let mut limited = (*valid("id1", &[])).clone();
        limited.ratelimits.push(VerifyRatelimit {
            name: "r".into(),
            scope: crate::types::LimitScope::Key,
            limit: 1,
            duration_ms: 1_000,
            remaining: 0,
            reset_at: "2030-01-01T00:00:00.000Z".into(),
            retry_after_ms: None,
            exceeded: false,
        });
        c.offer(
            digest("a", None),
            c.ticket(),
            &VerifyOptions::new(),
            &Arc::new(limited),
        );
        let mut quota = (*valid("id2", &[])).clone();
        quota.remaining = Some(5);
        c.offer(
            digest("b", None),
            c.ticket(),
            &VerifyOptions::new(),
            &Arc::new(quota),
        );
        let revoked = Arc::new(VerifyResponse::refused(VerifyCode::Revoked));
        c.offer(
            digest("c", None),
            c.ticket(),
            &VerifyOptions::new(),
            &revoked,
        );
        let before = c.ticket();
        c.invalidate_key("other");
        c.offer(
            digest("d", None),
            before,
            &VerifyOptions::new(),
            &valid("id4", &[]),
        );
        let across_a_break = c.ticket();
        c.lost();
        c.offer(
            digest("f", None),
            across_a_break,
            &VerifyOptions::new(),
            &valid("id6", &[]),
        );
        let named = VerifyOptions::new().ratelimits(vec![crate::types::NamedCost::new("x", None)]);
        c.offer(digest("e", None), c.ticket(), &named, &valid("id5", &[]));
        for key in ["a", "b", "c", "d", "e", "f"] {
            assert!(c.lookup(&digest(key, None), &opts(&[])).is_none(), "{key}");
        }
    }

    #[test]
    fn events_drop_entries_and_silence_stops_serving() {
        let c = cache();
        c.offer(
            digest("a", None),
            c.ticket(),
            &VerifyOptions::new(),
            &valid("id1", &[]),
        );
        c.offer(
            digest("b", None),
            c.ticket(),
            &VerifyOptions::new(),
            &valid("id2", &[]),
        );
        c.invalidate_key("id1");
        c.entries.run_pending_tasks();
        assert!(c.lookup(&digest("a", None), &opts(&[])).is_none());
        assert!(c.lookup(&digest("b", None), &opts(&[])).is_some());
        c.invalidate_all();
        assert!(c.lookup(&digest("b", None), &opts(&[])).is_none());

        let silent = VerifyCache::new(&CacheOptions {
            coherence: Duration::from_millis(20),
            ..CacheOptions::default()
        });
        assert!(!silent.coherent(), "never heard");
        silent.heard();
        silent.offer(
            digest("a", None),
            silent.ticket(),
            &VerifyOptions::new(),
            &valid("id1", &[]),
        );
        assert!(silent.lookup(&digest("a", None), &opts(&[])).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(silent.lookup(&digest("a", None), &opts(&[])).is_none());
        let before = silent.ticket();
        silent.heard();
        silent.offer(
            digest("b", None),
            before,
            &VerifyOptions::new(),
            &valid("id2", &[]),
        );
        assert!(
            silent.lookup(&digest("b", None), &opts(&[])).is_none(),
            "fetched while the stream was silent"
        );
    }

    #[test]
    fn entries_end_with_the_key_expiry_or_grace() {
        let c = cache();
        let soon = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(40);
        let soon = soon
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut expiring = (*valid("id1", &[])).clone();
        expiring.expires_at = Some(soon.clone());
        c.offer(
            digest("a", None),
            c.ticket(),
            &VerifyOptions::new(),
            &Arc::new(expiring),
        );
        let mut rotated = (*valid("id2", &[])).clone();
        rotated.rotation = Some(VerifyRotation {
            successor_key_id: "id3".into(),
            grace_until: soon,
        });
        c.offer(
            digest("b", None),
            c.ticket(),
            &VerifyOptions::new(),
            &Arc::new(rotated),
        );
        let mut unreadable = (*valid("id4", &[])).clone();
        unreadable.expires_at = Some("tomorrow".into());
        c.offer(
            digest("c", None),
            c.ticket(),
            &VerifyOptions::new(),
            &Arc::new(unreadable),
        );
        assert!(c.lookup(&digest("a", None), &opts(&[])).is_some());
        assert!(c.lookup(&digest("b", None), &opts(&[])).is_some());
        assert!(c.lookup(&digest("c", None), &opts(&[])).is_none());
        std::thread::sleep(Duration::from_millis(60));
        c.heard();
        assert!(c.lookup(&digest("a", None), &opts(&[])).is_none());
        assert!(c.lookup(&digest("b", None), &opts(&[])).is_none());
    }
}
