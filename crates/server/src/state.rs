use std::ops::Deref;
use std::sync::Arc;

use keyhaven_core::PepperSet;
use keyhaven_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::cache::KeyCache;
use crate::clock::Clock;
use crate::config::Config;
use crate::usage::UsageRecorder;

/// What every handler can reach. axum clones the state several times per request, so it
/// is one `Arc` (one reference-count update per clone, not one per field: on the verify
/// path those shared counters were a measurable cost under load).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub peppers: Arc<PepperSet>,
    /// Master keys for recoverable keys; `None` disables them.
    pub master_keys: Option<PepperSet>,
    pub cache: KeyCache,
    pub usage: UsageRecorder,
    pub config: Config,
    pub metrics: PrometheusHandle,
    pub clock: Clock,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, peppers: PepperSet, config: Config) -> Self {
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
    ) -> Self {
        let cache = KeyCache::new(config.cache_capacity, config.cache_ttl());
        Self(Arc::new(Shared {
            store,
            peppers: Arc::new(peppers),
            master_keys,
            cache,
            usage: UsageRecorder::default(),
            config,
            metrics: crate::metrics::handle(),
            clock,
        }))
    }
}
