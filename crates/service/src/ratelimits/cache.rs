//! A node's copy of standalone limits' overrides per namespace (see [`super::overrides`]),
//! each namespace kept for at most `ttl`, and the lookup of the override that applies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyhaven_core::wildcard;
use keyhaven_store::{RateLimitDef, RatelimitOverride};

/// One namespace's overrides as a node keeps them for lookups.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    exact: HashMap<String, RateLimitDef>,
    /// Most specific first.
    patterns: Vec<(String, RateLimitDef)>,
}

impl Loaded {
    pub(crate) fn of(all: Vec<RatelimitOverride>) -> Self {
        let mut loaded = Self::default();
        for o in all {
            if wildcard::is_pattern(&o.identifier) {
                loaded.patterns.push((o.identifier, o.limit));
            } else {
                loaded.exact.insert(o.identifier, o.limit);
            }
        }
        loaded.patterns.sort_by(|(a, _), (b, _)| {
            (wildcard::specificity(b).cmp(&wildcard::specificity(a))).then_with(|| a.cmp(b))
        });
        loaded
    }

    pub(crate) fn find(&self, identifier: &str) -> Option<&RateLimitDef> {
        self.exact.get(identifier).or_else(|| {
            (self.patterns.iter())
                .find(|(pattern, _)| wildcard::matches(pattern, identifier))
                .map(|(_, limit)| limit)
        })
    }
}

/// Most namespaces a node keeps (callers choose namespaces: past this, it starts over).
const MAX_CACHED_NAMESPACES: usize = 10_000;

/// This node's copy of overrides per namespace, each kept for at most `ttl`.
#[derive(Debug)]
pub struct OverrideCache {
    ttl: Duration,
    namespaces: Mutex<HashMap<String, (Instant, Arc<Loaded>)>>,
    /// Raised by every [`OverrideCache::forget`]: a read that began before an edit
    /// through this node is not kept (it may hold the overrides from before).
    generation: AtomicU64,
}

impl OverrideCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            namespaces: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Read before reading the store; hand to [`OverrideCache::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<Loaded>)>> {
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The namespace's overrides, if read less than `ttl` ago.
    pub(crate) fn get(&self, namespace: &str) -> Option<Arc<Loaded>> {
        (self.lock().get(namespace))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, loaded)| loaded.clone())
    }

    /// Keeps `loaded` (read from the store after `generation` was taken) as the
    /// namespace's overrides from now, unless an edit came in between.
    pub(crate) fn put(&self, namespace: &str, loaded: Loaded, generation: u64) -> Arc<Loaded> {
        let loaded = Arc::new(loaded);
        let mut namespaces = self.lock();
        if self.generation() != generation {
            return loaded;
        }
        if namespaces.len() >= MAX_CACHED_NAMESPACES {
            namespaces.clear();
        }
        namespaces.insert(namespace.to_owned(), (Instant::now(), loaded.clone()));
        loaded
    }

    pub(crate) fn forget(&self, namespace: &str) {
        let mut namespaces = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        namespaces.remove(namespace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(identifier: &str, limit: u64) -> RatelimitOverride {
        RatelimitOverride {
            namespace: "login".into(),
            identifier: identifier.into(),
            limit: RateLimitDef {
                name: "login".into(),
                limit,
                duration_ms: 1_000,
                burst: None,
            },
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn exact_then_most_specific_pattern_then_alphabetical() {
        let loaded = Loaded::of(vec![
            o("*", 1),
            o("*@acme.com", 2),
            o("*@eu.acme.com", 3),
            o("ceo@acme.com", 4),
            o("a*@acme.com", 5),
            o("*a@acme.com", 6),
        ]);
        let limit = |id: &str| loaded.find(id).map(|l| l.limit);
        assert_eq!(limit("ceo@acme.com"), Some(4));
        assert_eq!(limit("bob@eu.acme.com"), Some(3));
        assert_eq!(limit("bob@acme.com"), Some(2));
        // `*a@acme.com` and `a*@acme.com` are as specific: the alphabetically first.
        assert_eq!(limit("ana@acme.com"), Some(6));
        assert_eq!(limit("someone@else.org"), Some(1));
        assert_eq!(Loaded::of(vec![o("x", 1)]).find("y"), None);
    }
}
