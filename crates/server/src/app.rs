//! The router and the server loop. `serve` takes an already-bound listener, so tests
//! bind `127.0.0.1:0` and read the port back.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyhaven_store::Granularity;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::config::MetricsListen;
use crate::error::ApiError;
use crate::routes::{audit, health, keys, keyspaces, owners, usage, verify, webhooks};
use crate::state::AppState;

/// Body limit of `POST /v1/keys/import` (1,000 keys with room for names and meta).
pub const IMPORT_BODY_LIMIT: usize = 4 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let api = Router::new()
        .route(
            "/v1/keyspaces",
            post(keyspaces::create).get(keyspaces::list),
        )
        .route(
            "/v1/keyspaces/{id}",
            get(keyspaces::get)
                .patch(keyspaces::update)
                .delete(keyspaces::delete),
        )
        .route("/v1/owners", post(owners::create).get(owners::list))
        .route(
            "/v1/owners/{id}",
            get(owners::get)
                .patch(owners::update)
                .delete(owners::delete),
        )
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/keys/verify", post(verify::verify))
        .route("/v1/keys/expiring", get(keys::expiring))
        .route("/v1/keys/usage", get(usage::totals))
        .route("/v1/keys/{key_id}/usage", get(usage::key))
        .route("/v1/owners/{id}/usage", get(usage::owner))
        .route("/v1/keyspaces/{id}/usage", get(usage::keyspace))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}",
            get(webhooks::delivery),
        )
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/resend",
            post(webhooks::resend),
        )
        .route("/v1/events", get(audit::events))
        .route(
            "/v1/keys/import",
            post(keys::import).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route(
            "/v1/keys/{key_id}",
            get(keys::get).patch(keys::update).delete(keys::delete),
        )
        .route("/v1/keys/{key_id}/revoke", post(keys::revoke))
        .route("/v1/keys/{key_id}/rotate", post(keys::rotate))
        .route("/v1/keys/{key_id}/reveal", post(keys::reveal))
        .route("/v1/audit-events", get(audit::list))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi));
    let api = match state.config.metrics_listen {
        MetricsListen::Main => api.route("/metrics", get(health::metrics)),
        MetricsListen::Off | MetricsListen::Address(_) => api,
    };
    api.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The separate `/metrics` listener's router (`metrics_listen = "ADDR"`): nothing else.
fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Unexpected(anyhow::anyhow!("a request handler panicked")).into_response()
}

async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout(), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Serves until `shutdown` completes, then drains in-flight requests and flushes usage.
/// Background work (usage flushes, idempotency purges) runs while serving.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    state.load_import_flag().await?;
    // Reach Redis (and count the nodes) before the first request, so shared limits are
    // decided in Redis from the start.
    state.limits.tick(state.clock.now_micros()).await;
    let background = tokio::spawn(background(state.clone()));
    let follow = tokio::spawn(crate::coherence::follow(state.clone()));
    let heartbeat = tokio::spawn(crate::coherence::heartbeat(state.clone()));
    let webhooks = tokio::spawn(crate::webhooks::worker::run(state.clone()));
    let cap = crate::connections::connection_cap(state.config.max_connections);
    let limits = state.config.connection_limits("api", cap);
    tracing::info!(max_connections = cap, "connection limits set");
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = match state.config.metrics_listen {
        MetricsListen::Address(addr) => {
            let metrics_listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for /metrics on {addr}"))?;
            tracing::info!(addr = %addr, "metrics listening");
            Some(tokio::spawn(crate::connections::serve(
                metrics_listener,
                metrics_router(state.clone()),
                state.config.connection_limits("metrics", 64),
                async move {
                    let _ = metrics_stopped.await;
                },
            )))
        }
        MetricsListen::Main | MetricsListen::Off => None,
    };
    crate::connections::serve(listener, router(state.clone()), limits, shutdown).await;
    let _ = stop_metrics.send(());
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    background.abort();
    follow.abort();
    heartbeat.abort();
    webhooks.abort();
    if let Err(e) = state.usage.flush(state.store.as_ref()).await {
        tracing::error!(error = %e, "final usage flush failed");
    }
    if let Err(e) = state.limits.quotas.flush(state.store.as_ref()).await {
        tracing::error!(error = %e, "final quota flush failed");
    }
    Ok(())
}

async fn background(state: AppState) {
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
                match state.usage.flush(state.store.as_ref()).await {
                    // Anomalies are judged from flushed counts, after this node's are in.
                    Ok(_) if state.config.usage_tracking => {
                        if let Err(e) = state.alerts.run(&state, now).await {
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
                purge_usage(&state).await;
            }
        }
    }
}

/// Deletes usage buckets past their retention.
async fn purge_usage(state: &AppState) {
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

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining requests");
}

/// The status a probe of `/healthz` expects, for callers that wait for readiness.
pub const HEALTHY: StatusCode = StatusCode::OK;
