//! `/healthz` (the process answers), `/readyz` (it can serve: its database accepts
//! writes and, with several nodes, their changes reach it), `/metrics`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// The body of `/healthz` and of a ready `/readyz`: `{"status":"ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "health_get",
    responses((status = 200, description = "The process is alive.", body = Health)))]
pub async fn healthz() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readiness_get",
    responses(
        (status = 200, description = "Ready: the database accepts a write (a no-op update, \
            rolled back) and, with several nodes, the change feed delivered this node's \
            heartbeat lately.", body = Health),
        (status = 503, description = "Not ready (problem `not_ready`; `detail` says why).",
            body = crate::error::Problem, content_type = crate::error::PROBLEM_CONTENT_TYPE),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let not_ready = |detail: &str| {
        let mut problem = ApiError::Timeout.problem();
        problem.code = "not_ready".to_owned();
        problem.kind = "urn:keyhaven:problem:not_ready".to_owned();
        problem.detail = detail.to_owned();
        crate::error::problem_response(&problem)
    };
    if let Err(e) = state.store.check_writable().await {
        tracing::warn!(error = %e, "readiness check failed: the database accepts no write");
        return not_ready("The database does not accept writes.");
    }
    // The feed confirms a heartbeat every quarter of `cache_coherence_ms`; a node whose
    // feed has been silent for longer than that bound (or 2 s) serves stale records.
    let window = state
        .config
        .cache_coherence()
        .max(std::time::Duration::from_secs(2));
    if state.cache.feed_confirmed_within(window) == Some(false) {
        tracing::warn!("readiness check failed: the change feed is silent");
        return not_ready("The change feed from the other nodes is silent.");
    }
    healthz().await
}

#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics_get",
    responses((status = 200, description = "Metrics in the Prometheus text format (version 0.0.4).",
        body = String, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    let metrics = crate::metrics::handle();
    metrics.run_upkeep();
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn healthz_sends_the_documented_body() {
        let response = healthz().await;
        let sent = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let documented = serde_json::to_vec(&Health {
            status: HealthStatus::Ok,
        })
        .unwrap();
        assert_eq!(sent, documented);
    }
}
