use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keyhaven_core::PepperSet;
use keyhaven_store::Store;

use crate::cache::KeyCache;
use crate::clock::Clock;
use crate::config::Config;
use crate::limits::Limiter;
use crate::usage::UsageRecorder;

/// The application: what every operation reaches (the store, the peppers, the verify
/// cache, limits, usage counting, the clock, the configuration). Front doors hold one
/// and pass it to operations. Cloning it is one reference-count update (the HTTP server
/// clones it several times per request, and per-field counters were a measurable cost
/// on the verify path).
#[derive(Clone, Debug)]
pub struct Service(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub peppers: Arc<PepperSet>,
    /// Master keys for recoverable keys; `None` disables them.
    pub master_keys: Option<PepperSet>,
    pub cache: KeyCache,
    pub usage: UsageRecorder,
    /// How far this node has judged usage for anomaly alerts.
    pub alerts: crate::alerts::AlertJudge,
    /// Rate limits, quotas and the failed-verification limiter.
    pub limits: Limiter,
    pub config: Config,
    /// This process's id among the nodes (Redis registrations, heartbeats).
    pub node_id: String,
    pub clock: Clock,
    /// GitHub's secret scanning public keys (`POST /v1/leaks/github`).
    pub github_keys: crate::github_keys::GithubKeys,
    /// Standalone limits' overrides, per namespace, as this node last read them.
    pub overrides: crate::ratelimits::cache::OverrideCache,
    /// The token signing keys, once loaded ([`crate::tokens::install`]); without them
    /// no token is minted or accepted.
    pub tokens: std::sync::OnceLock<Arc<crate::signing_keys::SigningKeys>>,
    /// Whether any imported key exists: until one does, a non-native key string is
    /// MALFORMED without a database lookup.
    imported_keys: AtomicBool,
}

impl Deref for Service {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    /// The token signing keys, if loaded.
    pub fn signing_keys(&self) -> Option<&Arc<crate::signing_keys::SigningKeys>> {
        self.tokens.get()
    }

    pub fn has_imported_keys(&self) -> bool {
        self.imported_keys.load(Ordering::Relaxed)
    }

    pub fn note_imported_keys(&self) {
        self.imported_keys.store(true, Ordering::Relaxed);
    }

    /// Reads from the store whether imported keys exist (at start).
    pub async fn load_import_flag(&self) -> Result<(), keyhaven_store::StoreError> {
        if self.store.has_imported_keys().await? {
            self.note_imported_keys();
        }
        Ok(())
    }
}

impl Service {
    pub fn new(store: Arc<dyn Store>, peppers: PepperSet, config: Config) -> anyhow::Result<Self> {
        Self::with_parts(store, peppers, None, config, Clock::System)
    }

    /// A state with master keys for recoverable keys, whose notion of "now" comes from
    /// `clock` (tests pass a manual one).
    pub fn with_parts(
        store: Arc<dyn Store>,
        peppers: PepperSet,
        master_keys: Option<PepperSet>,
        config: Config,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let cache = if store.has_change_feed() {
            KeyCache::shared(
                config.cache_capacity,
                config.cache_ttl(),
                config.cache_coherence(),
            )
        } else {
            KeyCache::new(config.cache_capacity, config.cache_ttl())
        };
        // Other nodes' override edits reach this one within the coherence bound; on
        // SQLite (another process on the same file) within the cache TTL, as keys do.
        let overrides = crate::ratelimits::cache::OverrideCache::new(if store.has_change_feed() {
            config.cache_coherence()
        } else {
            config.cache_ttl()
        });
        let node_id = crate::ids::new_id("node")?;
        let limits = Limiter::new(&config, node_id.clone())?;
        let github_keys = crate::github_keys::GithubKeys::new(
            config.leaks_github_public_keys_file.clone(),
            config.leaks_github_public_keys_url.clone(),
        );
        Ok(Self(Arc::new(Shared {
            store,
            peppers: Arc::new(peppers),
            master_keys,
            cache,
            usage: UsageRecorder::default(),
            alerts: crate::alerts::AlertJudge::default(),
            limits,
            config,
            node_id,
            clock,
            github_keys,
            overrides,
            tokens: std::sync::OnceLock::new(),
            imported_keys: AtomicBool::new(false),
        })))
    }
}
