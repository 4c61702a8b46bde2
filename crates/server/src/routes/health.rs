//! `/healthz` (the process answers), `/readyz` (and its database does), `/metrics`.

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
        (status = 200, description = "The process is alive and its database answers.",
            body = Health),
        (status = 503, description = "The database does not answer (problem `not_ready`).",
            body = crate::error::Problem, content_type = crate::error::PROBLEM_CONTENT_TYPE),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => healthz().await,
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let mut problem = ApiError::Timeout.problem();
            problem.code = "not_ready".to_owned();
            problem.kind = "urn:keyhaven:problem:not_ready".to_owned();
            problem.detail = "The database does not answer.".to_owned();
            crate::error::problem_response(&problem)
        }
    }
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
