//! The router and the server loop. `serve` takes an already-bound listener, so tests
//! bind `127.0.0.1:0` and read the port back.

use std::future::Future;

use anyhow::Context as _;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::routes::{
    audit, changes, credits, forward_auth, health, keys, keyspaces, leaks, owners, plans, portal,
    ratelimits, roles, root_keys, tokens, usage, verify, webhooks,
};
use crate::state::AppState;
use keyhaven_service::config::MetricsListen;

/// Body limit of `POST /v1/keys/import` and `POST /v1/keys/batch` (1,000 keys with room
/// for names and meta).
pub const IMPORT_BODY_LIMIT: usize = 4 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    // The process's metrics recorder, before anything registers a metric (a metric
    // registered with no recorder stays a no-op for good).
    crate::metrics::handle();
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
        .route("/v1/keys/verify/batch", post(verify::verify_batch))
        .route("/v1/ratelimits/limit", post(ratelimits::limit))
        .route("/v1/auth", any(forward_auth::forward_auth))
        .route("/v1/keys/self-revoke", post(leaks::self_revoke))
        .route("/v1/tokens", post(tokens::mint))
        .route("/.well-known/jwks.json", get(tokens::jwks))
        .route("/v1/changes", get(changes::stream))
        .route(
            "/v1/leaks/github",
            post(leaks::github).layer(DefaultBodyLimit::max(leaks::GITHUB_BODY_LIMIT)),
        )
        .route(
            "/v1/leaks/report",
            post(leaks::report).layer(DefaultBodyLimit::max(leaks::REPORT_BODY_LIMIT)),
        )
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
        .route("/v1/portal/sessions", post(portal::create))
        .route(
            "/v1/root-keys",
            get(root_keys::list).post(root_keys::create),
        )
        .route("/v1/root-keys/{key_id}", get(root_keys::get))
        .route("/v1/root-keys/{key_id}/revoke", post(root_keys::revoke))
        .route("/v1/root-keys/{key_id}/rotate", post(root_keys::rotate))
        .route(
            "/v1/keys/import",
            post(keys::import).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route(
            "/v1/keys/batch",
            post(keys::create_batch).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route(
            "/v1/keys/{key_id}",
            get(keys::get).patch(keys::update).delete(keys::delete),
        )
        .route("/v1/keys/{key_id}/revoke", post(keys::revoke))
        .route("/v1/keys/{key_id}/credits", post(credits::key))
        .route(
            "/v1/keyspaces/{id}/roles",
            post(roles::create).get(roles::list),
        )
        .route(
            "/v1/keyspaces/{id}/roles/{name}",
            get(roles::get).patch(roles::update).delete(roles::delete),
        )
        .route("/v1/owners/{id}/credits", post(credits::owner))
        .route(
            "/v1/ratelimits/overrides",
            put(ratelimits::set_override)
                .get(ratelimits::list_overrides)
                .delete(ratelimits::delete_override),
        )
        .route("/v1/plans", post(plans::create).get(plans::list))
        .route(
            "/v1/plans/{name}",
            get(plans::get).patch(plans::update).delete(plans::delete),
        )
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
    api.merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(crate::metrics::track))
        // Inside the request log, so a panic's 500 is logged with the request's id.
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn_with_state(state.clone(), request_log))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The span of a request: its method and its route (`/portal/start/{token}`), never the
/// path as sent, which may carry a portal link's token.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(no route)", |p| p.as_str());
    tracing::debug_span!("request", method = %request.method(), route)
}

/// The header that carries a request's id: taken from the client (or a proxy in front)
/// when it is a plain token of at most 64 characters, made up otherwise, and always
/// returned on the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request id of this process: a random prefix drawn at start and a counter (cheap on
/// the verify path, unique across restarts in practice).
fn new_request_id() -> String {
    static PREFIX: std::sync::LazyLock<u32> = std::sync::LazyLock::new(|| {
        let mut bytes = [0_u8; 4];
        getrandom::fill(&mut bytes).unwrap_or_default();
        u32::from_le_bytes(bytes)
    });
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:08x}-{n}", *PREFIX)
}

/// The request's id as its client sent it, if it is a plain token (never echoes anything
/// else into logs or headers).
fn given_request_id(request: &Request) -> Option<String> {
    let value = request.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    plain.then(|| value.to_owned())
}

/// Every request gets an id (`X-Request-Id` on the response). A request that failed
/// unexpectedly is logged at ERROR with its method, route template, status, id and the
/// cause; with `access_log` on (the default) every request also gets one INFO line:
/// method, route template (never the path as sent), status, latency, request id, and
/// the key id of the bearer key if one was presented (public: never its secret).
async fn request_log(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let request_id = given_request_id(&request).unwrap_or_else(new_request_id);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "(no route)".to_owned(), |p| p.as_str().to_owned());
    let key_id = state
        .config
        .access_log
        .then(|| {
            request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::auth::bearer_token)
                .and_then(|token| keyhaven_core::parse(token).ok())
                .map(|k| k.key_id().to_owned())
        })
        .flatten();
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    if let Some(crate::error::Failure(error)) = response.extensions_mut().remove() {
        tracing::error!(method = %method, route, status, request_id, error, "request failed");
    }
    if state.config.access_log {
        tracing::info!(
            method = %method,
            route,
            status,
            latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
            request_id,
            key_id = key_id.as_deref().unwrap_or("-"),
            "request"
        );
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
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
    crate::metrics::handle();
    let mut proxies = crate::gateway::proxy::bind_all(&state).await?;
    // Envoy's external authorization (gRPC over h2c) is served like a proxy listener.
    proxies.extend(crate::gateway::envoy::bind(&state).await?);
    let background = keyhaven_service::background::start(&state).await?;
    let cap = crate::connections::connection_cap(state.config.max_connections);
    let limits = crate::connections::ConnectionLimits::of(&state.config, "api", cap);
    tracing::info!(max_connections = cap, "connection limits set");
    // The gateway's listeners stop with the API's.
    let (stop_gateway, gateway_stopping) = tokio::sync::watch::channel(false);
    let gateway_servers = start_gateways(proxies, &state.config, cap, &gateway_stopping);
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
                crate::connections::ConnectionLimits::of(&state.config, "metrics", 64),
                async move {
                    let _ = metrics_stopped.await;
                },
            )))
        }
        MetricsListen::Main | MetricsListen::Off => None,
    };
    // Change streams never end by themselves: end them when the drain starts, or the
    // drain would wait for them forever.
    let streams = state.cache.changes().clone();
    let shutdown = async move {
        shutdown.await;
        streams.close();
    };
    crate::connections::serve(listener, router(state.clone()), limits, shutdown).await;
    let _ = stop_gateway.send(true);
    drain_gateways(gateway_servers).await;
    let _ = stop_metrics.send(());
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    background.stop().await;
    Ok(())
}

/// Serves each gateway listener (HTTP/1.1 and h2c) until `stopping` turns true.
fn start_gateways(
    listeners: Vec<(TcpListener, Router)>,
    config: &keyhaven_service::Config,
    cap: usize,
    stopping: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    listeners
        .into_iter()
        .map(|(listener, router)| {
            let limits = crate::connections::ConnectionLimits {
                http2: true,
                ..crate::connections::ConnectionLimits::of(config, "gateway", cap)
            };
            let mut stopping = stopping.clone();
            tokio::spawn(crate::connections::serve(
                listener,
                router,
                limits,
                async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                },
            ))
        })
        .collect()
}

/// How long a stopping gateway waits for its requests in flight (a long download, a
/// proxied event stream) before the process ends them by exiting.
const GATEWAY_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits for the gateway listeners to drain, at most [`GATEWAY_DRAIN`] in all.
async fn drain_gateways(servers: Vec<tokio::task::JoinHandle<()>>) {
    let all = async {
        for server in servers {
            let _ = server.await;
        }
    };
    if tokio::time::timeout(GATEWAY_DRAIN, all).await.is_err() {
        tracing::warn!("gateway requests still in flight after 30 s; stopping anyway");
    }
}

/// `keyhaven proxy`: a stateless gateway node. Its `config.proxy` listeners verify
/// through the central Keyhaven at `server` (with `root_key`, scope `keys:verify`),
/// caching admissions kept coherent by the server's change stream, until `shutdown`.
pub async fn proxy_node(
    config: keyhaven_service::Config,
    server: &str,
    root_key: secrecy::SecretString,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use crate::gateway::{Authorizer, follow, proxy, remote::Remote};
    crate::metrics::handle();
    let remote = std::sync::Arc::new(Remote::new(
        server,
        root_key,
        config.cache_capacity,
        config.cache_ttl(),
        config.cache_coherence(),
    )?);
    remote.check().await?;
    let follower = tokio::spawn(follow::follow(remote.clone()));
    let listeners = proxy::bind(&config.proxy, |config| Authorizer::Remote {
        remote: remote.clone(),
        keyspace: config.keyspace_id.clone(),
    })
    .await?;
    let cap = crate::connections::connection_cap(config.max_connections);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let servers = start_gateways(listeners, &config, cap, &stopping);
    shutdown.await;
    let _ = stop.send(true);
    drain_gateways(servers).await;
    follower.abort();
    Ok(())
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
