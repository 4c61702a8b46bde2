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

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use keyhaven_store::{KeyForVerify, Store, StoreError};
use moka::sync::Cache;

pub type CachedKey = Option<Arc<KeyForVerify>>;

#[derive(Debug)]
pub struct KeyCache {
    entries: Cache<String, CachedKey>,
    /// Import lookup → key id. A lookup never moves to another key while that key
    /// exists, so entries only go stale when keys are deleted or imported, and both
    /// clear this map.
    imports: Cache<String, Option<String>>,
    epoch: Mutex<u64>,
}

impl KeyCache {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            imports: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            epoch: Mutex::new(0),
        }
    }

    fn epoch(&self) -> MutexGuard<'_, u64> {
        self.epoch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The record for `key_id`, from memory when cached, else from the store.
    pub async fn get(&self, store: &dyn Store, key_id: &str) -> Result<CachedKey, StoreError> {
        if let Some(hit) = self.entries.get(key_id) {
            return Ok(hit);
        }
        metrics::counter!("keyhaven_key_cache_misses_total").increment(1);
        self.fill(&self.entries, key_id, async {
            Ok(store.key_for_verify(key_id).await?.map(Arc::new))
        })
        .await
    }

    /// Loads a missing entry and caches it unless an invalidation happened meanwhile
    /// (the epoch check and the insert share the lock the invalidations take).
    async fn fill<V: Clone + Send + Sync + 'static>(
        &self,
        cache: &Cache<String, V>,
        key: &str,
        load: impl std::future::Future<Output = Result<V, StoreError>>,
    ) -> Result<V, StoreError> {
        let before = *self.epoch();
        let loaded = load.await?;
        let epoch = self.epoch();
        if *epoch == before {
            cache.insert(key.to_owned(), loaded.clone());
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
        if let Some(hit) = self.imports.get(lookup) {
            return Ok(hit);
        }
        self.fill(&self.imports, lookup, store.key_id_by_import_lookup(lookup))
            .await
    }

    /// After keys were imported or deleted.
    pub fn invalidate_imports(&self) {
        self.invalidate_with(|| self.imports.invalidate_all());
    }

    pub fn invalidate(&self, key_id: &str) {
        self.invalidate_with(|| self.entries.invalidate(key_id));
    }

    /// For changes that touch many keys at once (an owner's external id, a keyspace).
    pub fn invalidate_all(&self) {
        self.invalidate_with(|| self.entries.invalidate_all());
    }
}
