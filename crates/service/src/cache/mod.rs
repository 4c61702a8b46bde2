//! The verify path's record cache: key id → what verification needs, including "no such
//! key" (so a flood of unknown ids does not reach the database more than once each).
//!
//! Correctness rule: every mutation calls [`KeyCache::invalidate`] (or
//! [`KeyCache::invalidate_all`]) after its commit and before it answers, so the next
//! verify on this node sees it. A fill that raced with a mutation must not put the stale
//! record back: fills remember the invalidation epoch from before their database read and
//! are dropped if any invalidation happened meanwhile. The epoch check and the insert
//! happen under the same lock as the epoch bump, so there is no window between them.
//! Entries also expire after a TTL, bounding staleness if another process (the CLI, a
//! second node) changes the database.
//!
//! Several nodes (PostgreSQL): other nodes' changes arrive through the store's change
//! feed (`coherence.rs` applies them with the same `invalidate*` calls). A record may be
//! served only while this node can vouch that nothing newer was missed: the entry was
//! loaded, or the feed was last confirmed live, within `cache_coherence_ms`. A feed is
//! confirmed by a heartbeat this node sends through it: when it comes back, everything
//! committed before it was sent has been applied. So when the feed silently stops, cached
//! records are re-read after at most that bound.
//!
//! Records are kept as [`VerifyRecord`]s (`record.rs`), whose keyspace, owner and
//! grants are shared; the map is `quick_cache`'s, whose per-entry overhead is a few
//! words (a million cached keys must fit in a few hundred MB). Staleness is bounded by
//! the TTL checked on every read; expired entries are replaced on their next read, or
//! evicted when the cache is full.
//!
//! Every invalidation is also published to [`Changes`], the change stream remote caches
//! follow (`GET /v1/changes`): hooking the cache captures local mutations and other
//! nodes' changes alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keyhaven_core::format::KEY_ID_LEN;
use keyhaven_store::{Store, StoreError};
use quick_cache::sync::Cache;

use crate::changes::{Change, Changes};

mod record;

pub use record::VerifyRecord;

pub type CachedKey = Option<Arc<VerifyRecord>>;

/// A native key id: the records' map key (other ids are read from the store each time).
type IdKey = [u8; KEY_ID_LEN];

/// A cached value and when it was read from the store.
#[derive(Debug, Clone)]
struct Entry<V> {
    value: V,
    loaded: Instant,
}

#[derive(Debug)]
pub struct KeyCache {
    entries: Cache<IdKey, Entry<CachedKey>>,
    /// The keyspace, owner and grants records share.
    parts: record::Parts,
    ttl: Duration,
    /// `false` with a capacity of 0: every read goes to the store.
    caching: bool,
    /// Import lookup → key id. A lookup never moves to another key while that key
    /// exists, so entries only go stale when keys are deleted or imported, and both
    /// clear this map.
    imports: Cache<String, Entry<Option<String>>>,
    epoch: Mutex<u64>,
    /// Set when other nodes share the database.
    coherence: Option<Coherence>,
    /// Where invalidations are published for remote caches.
    changes: Changes,
}

/// How far this node can vouch for its cache (see the module documentation).
#[derive(Debug)]
struct Coherence {
    bound: Duration,
    origin: Instant,
    /// When the last confirmed heartbeat was sent, in µs after `origin` (0: never).
    confirmed_us: AtomicU64,
}

impl KeyCache {
    /// A cache for a store no other node writes to (TTL only).
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self::build(capacity, ttl, None)
    }

    /// A cache for a store other nodes share: entries are served only within `bound` of
    /// their load or of the change feed's last confirmation ([`KeyCache::confirm`]).
    pub fn shared(capacity: u64, ttl: Duration, bound: Duration) -> Self {
        let coherence = Coherence {
            bound,
            origin: Instant::now(),
            confirmed_us: AtomicU64::new(0),
        };
        Self::build(capacity, ttl, Some(coherence))
    }

    fn build(capacity: u64, ttl: Duration, coherence: Option<Coherence>) -> Self {
        Self {
            entries: Cache::new(cache_size(capacity)),
            parts: record::Parts::default(),
            ttl,
            caching: capacity > 0,
            imports: Cache::new(cache_size(capacity)),
            epoch: Mutex::new(0),
            coherence,
            changes: Changes::new(),
        }
    }

    /// The stream of this cache's invalidations, for remote caches.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Whether other nodes share the store (and the change feed must be followed).
    pub fn is_shared(&self) -> bool {
        self.coherence.is_some()
    }

    /// A heartbeat sent at `sent` came back through the change feed: everything committed
    /// before then has been applied.
    pub fn confirm(&self, sent: Instant) {
        if let Some(c) = &self.coherence {
            let us = c.micros(sent).max(1);
            c.confirmed_us.fetch_max(us, Ordering::AcqRel);
        }
    }

    /// Whether this node's change feed has confirmed a heartbeat within `window` (`None`
    /// when the store has no feed: one node, nothing to follow).
    pub fn feed_confirmed_within(&self, window: Duration) -> Option<bool> {
        let c = self.coherence.as_ref()?;
        let confirmed = c.confirmed_us.load(Ordering::Acquire);
        Some(
            confirmed > 0
                && c.micros(Instant::now()).saturating_sub(confirmed) <= duration_us(window),
        )
    }

    /// The instant heartbeats are measured from, for encoding them ([`Self::confirm`]).
    pub fn heartbeat_origin(&self) -> Option<Instant> {
        self.coherence.as_ref().map(|c| c.origin)
    }

    /// Whether an entry loaded at `loaded` may still be served: within the TTL, and (other
    /// nodes sharing the store) vouched for.
    fn fresh(&self, loaded: Instant) -> bool {
        let now = Instant::now();
        let age = now.saturating_duration_since(loaded);
        if age > self.ttl {
            return false;
        }
        let Some(c) = &self.coherence else {
            return true;
        };
        if age <= c.bound {
            return true;
        }
        let confirmed = c.confirmed_us.load(Ordering::Acquire);
        confirmed > 0 && c.micros(now).saturating_sub(confirmed) <= duration_us(c.bound)
    }

    fn epoch(&self) -> MutexGuard<'_, u64> {
        self.epoch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The record for `key_id`, from memory when cached, else from the store.
    pub async fn get(&self, store: &dyn Store, key_id: &str) -> Result<CachedKey, StoreError> {
        let read = async {
            let found = store.key_for_verify(key_id).await?;
            Ok(found.map(|k| Arc::new(self.parts.record(k))))
        };
        let Ok(id) = IdKey::try_from(key_id.as_bytes()) else {
            return read.await;
        };
        if !self.caching {
            return read.await;
        }
        if let Some(hit) = self.entries.get(&id)
            && self.fresh(hit.loaded)
        {
            return Ok(hit.value);
        }
        metrics::counter!("keyhaven_key_cache_misses_total").increment(1);
        self.fill(&self.entries, id, read).await
    }

    /// Loads a missing entry and caches it unless an invalidation happened meanwhile
    /// (the epoch check and the insert share the lock the invalidations take).
    async fn fill<K: Eq + std::hash::Hash, V: Clone>(
        &self,
        cache: &Cache<K, Entry<V>>,
        key: K,
        load: impl std::future::Future<Output = Result<V, StoreError>>,
    ) -> Result<V, StoreError> {
        let before = *self.epoch();
        // Taken before the read: the entry is vouched for from here, never from later.
        let started = Instant::now();
        let loaded = load.await?;
        let epoch = self.epoch();
        if *epoch == before {
            let entry = Entry {
                value: loaded.clone(),
                loaded: started,
            };
            cache.insert(key, entry);
        }
        drop(epoch);
        Ok(loaded)
    }

    /// Bumps the epoch (so in-flight fills are dropped), then runs `drop_entries`.
    fn invalidate_with(&self, drop_entries: impl FnOnce()) {
        let mut epoch = self.epoch();
        *epoch = epoch.wrapping_add(1);
        drop_entries();
    }

    /// The key id stored under an import lookup, from memory when cached.
    pub async fn import_lookup(
        &self,
        store: &dyn Store,
        lookup: &str,
    ) -> Result<Option<String>, StoreError> {
        if let Some(hit) = self.imports.get(lookup)
            && self.fresh(hit.loaded)
        {
            return Ok(hit.value);
        }
        let read = store.key_id_by_import_lookup(lookup);
        if !self.caching {
            return read.await;
        }
        self.fill(&self.imports, lookup.to_owned(), read).await
    }

    /// After keys were imported or deleted.
    /// Published as `all`: a remote cache may hold an answer for a key string that now
    /// names another (or a newly imported) key.
    pub fn invalidate_imports(&self) {
        self.invalidate_with(|| self.imports.clear());
        self.changes.publish(Change::All);
    }

    pub fn invalidate(&self, key_id: &str) {
        self.invalidate_with(|| {
            if let Ok(id) = IdKey::try_from(key_id.as_bytes()) {
                self.entries.remove(&id);
            }
        });
        self.changes.publish(Change::Key(key_id.to_owned()));
    }

    /// For changes that touch many keys at once (an owner's external id, a keyspace).
    pub fn invalidate_all(&self) {
        self.invalidate_with(|| self.entries.clear());
        self.changes.publish(Change::All);
    }

    /// Drops records and import lookups: the change feed (re)started, so changes made
    /// before it could have been missed.
    pub fn invalidate_everything(&self) {
        self.invalidate_with(|| {
            self.entries.clear();
            self.imports.clear();
        });
        self.changes.publish(Change::Reset);
    }
}

impl Coherence {
    fn micros(&self, at: Instant) -> u64 {
        duration_us(at.saturating_duration_since(self.origin))
    }
}

/// `quick_cache` sizes its shards from the capacity; at least one entry.
fn cache_size(capacity: u64) -> usize {
    usize::try_from(capacity).unwrap_or(usize::MAX).max(1)
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
