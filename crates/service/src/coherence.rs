//! Following other nodes' changes (PostgreSQL, several nodes on one database).
//!
//! Every mutation that changes how a key verifies commits an [`Invalidation`] with it;
//! [`follow`] applies each one to this node's cache as it arrives. [`heartbeat`] sends
//! this node a ping through the same channel every quarter of `cache_coherence_ms`; when
//! it comes back, the cache knows everything committed before it was sent has been
//! applied ([`KeyCache::confirm`](crate::cache::KeyCache::confirm)). If the feed breaks
//! or silently stops, confirmations stop and cached records are re-read once they are
//! older than `cache_coherence_ms`: that is the staleness bound when notifications fail.
//! A feed that (re)connects drops the whole cache first, since whatever was sent while
//! it was away is lost.

use std::time::{Duration, Instant};

use keyhaven_store::Invalidation;

use crate::service::Service;

/// Up (1) while the change feed is connected.
pub const FEED_UP: &str = "keyhaven_change_feed_up";
/// Times the change feed was lost (each one dropped the cache).
pub const FEED_LOST: &str = "keyhaven_change_feed_lost_total";

/// Applies the store's change feed to the cache until the task is aborted. Returns at
/// once for a store without one (SQLite).
pub async fn follow(state: Service) {
    if !state.cache.is_shared() {
        return;
    }
    let mut retry = Duration::from_millis(100);
    loop {
        match state.store.listen().await {
            Ok(None) => return,
            Ok(Some(mut feed)) => {
                retry = Duration::from_millis(100);
                resync(&state).await;
                metrics::gauge!(FEED_UP).set(1.0);
                tracing::info!("following the change feed");
                loop {
                    match feed.next().await {
                        Ok(Some(what)) => apply(&state, what).await,
                        Ok(None) => {
                            // Reconnected already: drop what may have changed meanwhile.
                            metrics::counter!(FEED_LOST).increment(1);
                            tracing::warn!("change feed reconnected; dropped the key cache");
                            resync(&state).await;
                        }
                        Err(e) => {
                            metrics::counter!(FEED_LOST).increment(1);
                            tracing::warn!(error = %e, "change feed lost; cached keys now expire after cache_coherence_ms");
                            break;
                        }
                    }
                }
                metrics::gauge!(FEED_UP).set(0.0);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the change feed; retrying");
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_secs(2));
    }
}

/// After the feed (re)connected: whatever was sent while it was away is lost.
async fn resync(state: &Service) {
    state.cache.invalidate_everything();
    if let Err(e) = state.load_import_flag().await {
        tracing::warn!(error = %e, "checking for imported keys failed");
    }
}

async fn apply(state: &Service, what: Invalidation) {
    match what {
        Invalidation::Key(key_id) => state.cache.invalidate(&key_id),
        // As the local handlers do for owner and keyspace changes: every record carries
        // its owner's and keyspace's settings.
        Invalidation::Owner(_) | Invalidation::Keyspace(_) => state.cache.invalidate_all(),
        Invalidation::Imports => {
            state.cache.invalidate_imports();
            if let Err(e) = state.load_import_flag().await {
                tracing::warn!(error = %e, "checking for imported keys failed");
            }
        }
        Invalidation::Ping(payload) => {
            if let Some(sent) = own_heartbeat(state, &payload) {
                state.cache.confirm(sent);
            }
        }
    }
}

/// Sends this node's heartbeat through the change feed until the task is aborted.
pub async fn heartbeat(state: Service) {
    let Some(origin) = state.cache.heartbeat_origin() else {
        return;
    };
    let period = (state.config.cache_coherence() / 4).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sent = Instant::now().saturating_duration_since(origin).as_micros();
        let ping = Invalidation::Ping(format!("{}:{sent}", state.node_id));
        if let Err(e) = state.store.publish(&ping).await {
            tracing::debug!(error = %e, "heartbeat not sent");
        }
    }
}

/// When this node sent `payload`, if it is this node's heartbeat.
fn own_heartbeat(state: &Service, payload: &str) -> Option<Instant> {
    let (node, sent) = payload.rsplit_once(':')?;
    if node != state.node_id {
        return None;
    }
    let origin = state.cache.heartbeat_origin()?;
    origin.checked_add(Duration::from_micros(sent.parse().ok()?))
}
