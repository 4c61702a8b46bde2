//! The work a node does besides answering: usage and quota flushes, anomaly alerts,
//! expiry-warning events, purges, the change feed (other nodes' changes) and webhook
//! delivery. [`start`] runs it; [`Running::stop`] ends it and writes what is pending.

use std::time::Duration;

use keyhaven_store::Granularity;
use tokio::task::JoinHandle;

use crate::service::Service;

/// The background tasks of one node.
#[derive(Debug)]
pub struct Running {
    service: Service,
    /// The flush loop: told to stop and awaited, never aborted, since an abort in the
    /// middle of a flush would drop the uses it had taken out of memory.
    flushes: JoinHandle<()>,
    stop_flushes: tokio::sync::watch::Sender<bool>,
    /// Tasks that lose nothing when aborted (they re-read the store when they restart).
    tasks: Vec<JoinHandle<()>>,
}

/// Prepares the service for its first request and starts its background tasks.
pub async fn start(service: &Service) -> anyhow::Result<Running> {
    service.load_import_flag().await?;
    // Reach Redis (and count the nodes) before the first request, so shared limits are
    // decided in Redis from the start.
    service.limits.tick(service.clock.now_micros()).await;
    let (stop_flushes, stopping) = tokio::sync::watch::channel(false);
    let flushes = tokio::spawn(run(service.clone(), stopping));
    let tasks = vec![
        tokio::spawn(crate::coherence::follow(service.clone())),
        tokio::spawn(crate::coherence::heartbeat(service.clone())),
        tokio::spawn(crate::webhooks::delivery::run(service.clone())),
    ];
    Ok(Running {
        service: service.clone(),
        flushes,
        stop_flushes,
        tasks,
    })
}

impl Running {
    /// Stops the tasks and writes the usage counts and quota uses still in memory.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        // A flush under way finishes first; then the last one below writes the rest.
        let _ = self.stop_flushes.send(true);
        let _ = self.flushes.await;
        let state = &self.service;
        if let Err(e) = state.usage.flush(state.store.as_ref()).await {
            tracing::error!(error = %e, "final usage flush failed");
        }
        if let Err(e) = state.limits.quotas.flush(state.store.as_ref()).await {
            tracing::error!(error = %e, "final quota flush failed");
        }
    }
}

async fn run(state: Service, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(state.config.usage_flush_interval());
    let mut purge = tokio::time::interval(Duration::from_secs(3600));
    let mut limits = tokio::time::interval(Duration::from_secs(5));
    // With `quota_flush_interval_ms = 0` every use is written inline; this loop then
    // only catches what a failed inline write left pending.
    let mut quotas = tokio::time::interval(
        state
            .config
            .quota_flush_interval()
            .unwrap_or(Duration::from_secs(1)),
    );
    for timer in [&mut flush, &mut purge, &mut limits, &mut quotas] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = stopping.changed() => return,
            _ = quotas.tick() => {
                if let Err(e) = state.limits.quotas.flush(state.store.as_ref()).await {
                    metrics::counter!(crate::metrics::QUOTA_FLUSH_FAILURES).increment(1);
                    tracing::warn!(error = %e, "quota flush failed; will retry");
                }
            }
            _ = limits.tick() => {
                state.limits.tick(state.clock.now_micros()).await;
            }
            _ = flush.tick() => {
                // Read before the flush: every verification counted in a minute that
                // `now` has closed is then in this flush.
                let now = state.clock.now();
                let started = std::time::Instant::now();
                let flushed = state.usage.flush(state.store.as_ref()).await;
                let took = started.elapsed();
                crate::metrics::usage_flush(took);
                let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
                if let Ok(rows) = flushed
                    && rows > 0
                {
                    tracing::debug!(rows, took_ms, "usage flushed");
                }
                if let Ok(rows) = flushed
                    && took > state.config.usage_flush_interval()
                {
                    tracing::warn!(
                        rows,
                        took_ms,
                        "a usage flush took longer than usage_flush_interval_ms: \
                         verifications are being counted faster than the database takes them, \
                         so counts reach it late and wait in memory"
                    );
                }
                match flushed {
                    // Anomalies are judged from flushed counts, after this node's are in.
                    Ok(_) if state.config.usage_tracking => {
                        if let Err(e) = state.alerts.run(state.store.as_ref(), &state.config, now).await {
                            tracing::warn!(error = %e, "judging usage for alerts failed; will retry");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "usage flush failed; will retry"),
                }
                match state.store.record_expiring_events(state.clock.now()).await {
                    Ok(n) if n > 0 => tracing::info!(events = n, "keys entered their expiry warning window"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "recording key.expiring events failed"),
                }
                // Keys imported by `keyhaven import` (another process) become findable.
                if !state.has_imported_keys()
                    && let Err(e) = state.load_import_flag().await
                {
                    tracing::warn!(error = %e, "checking for imported keys failed");
                }
            }
            _ = purge.tick() => {
                let ttl = time::Duration::hours(
                    i64::try_from(state.config.idempotency_ttl_hours).unwrap_or(24),
                );
                match state.store.purge_idempotency(state.clock.now() - ttl).await {
                    Ok(n) if n > 0 => tracing::info!(purged = n, "expired idempotency records"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
                }
                // Replays are refused for 30 days; after that a repeat changes nothing
                // anyway (each key's first report is the one that acts).
                let replay_window = time::Duration::days(30);
                if let Err(e) = state.store.purge_leak_batches(state.clock.now() - replay_window).await {
                    tracing::warn!(error = %e, "leak batch purge failed");
                }
                purge_usage(&state).await;
                let now = state.clock.now();
                let window = time::Duration::minutes(
                    i64::try_from(state.config.login_failure_window_minutes).unwrap_or(15),
                );
                match state.store.purge_web(now, now - window).await {
                    Ok(n) if n > 0 => tracing::info!(purged = n, "expired sessions and sign-in failures"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "session purge failed"),
                }
            }
        }
    }
}

/// Deletes usage buckets past their retention.
async fn purge_usage(state: &Service) {
    let now = state.clock.now().unix_timestamp();
    for granularity in Granularity::ALL {
        let keep = state.config.usage_retention_secs(granularity);
        match state
            .store
            .purge_usage(granularity, now.saturating_sub(keep))
            .await
        {
            Ok(n) if n > 0 => {
                tracing::info!(
                    rows = n,
                    granularity = granularity.as_str(),
                    "expired usage"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "usage purge failed"),
        }
    }
}
