use std::sync::Arc;

use keyhaven_core::PepperSet;
use keyhaven_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::cache::KeyCache;
use crate::config::Config;
use crate::usage::UsageRecorder;

/// What every handler can reach. Cheap to clone: all shared behind `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub peppers: Arc<PepperSet>,
    pub cache: Arc<KeyCache>,
    pub usage: Arc<UsageRecorder>,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("peppers", &self.peppers)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, peppers: PepperSet, config: Config) -> Self {
        let cache = KeyCache::new(config.cache_capacity, config.cache_ttl());
        Self {
            store,
            peppers: Arc::new(peppers),
            cache: Arc::new(cache),
            usage: Arc::new(UsageRecorder::default()),
            config: Arc::new(config),
            metrics: crate::metrics::handle(),
        }
    }
}
