//! `POST /v1/ratelimits/limit`: standalone rate limits, for things that are not keys.
//! The rules are the service's ([`keyhaven_service::ratelimits`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
pub use keyhaven_service::ratelimits::MAX_IDENTIFIER_CHARS;
use keyhaven_service::ratelimits::{self, LimitRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::JsonBody;
use crate::respond::{Rfc3339Micros, ceil_ms, json_response, to_body};
use crate::state::AppState;

/// The limit's answer. Always 200: `success` says whether the call may proceed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitResponse {
    /// The call was counted and may proceed; `false` took nothing.
    pub success: bool,
    pub limit: u64,
    /// Units that could still be taken now.
    pub remaining: u64,
    /// When the limit is whole again (RFC 3339, milliseconds).
    #[schema(value_type = String)]
    pub reset_at: String,
    /// Milliseconds until this call would pass again: only when refused, and absent
    /// when it never can (its cost is above the limit's burst).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// [`LimitResponse`] as written.
#[derive(Serialize)]
struct LimitAnswer {
    success: bool,
    limit: u64,
    remaining: u64,
    reset_at: Rfc3339Micros,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

#[utoipa::path(post, path = "/v1/ratelimits/limit", tag = "ratelimits",
    operation_id = "ratelimits_limit", request_body = LimitRequest,
    responses(
        (status = 200, body = LimitResponse,
            description = "Whether the call may proceed, and what is left of the limit."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn limit(
    State(state): State<AppState>,
    auth: RootAuth,
    JsonBody { value: input, .. }: JsonBody<LimitRequest>,
) -> Result<Response, ApiError> {
    auth.require(Scope::RatelimitsLimit)?;
    let outcome = ratelimits::limit(&state, &auth, input).await?;
    let answer = LimitAnswer {
        success: outcome.success,
        limit: outcome.limit,
        remaining: outcome.remaining,
        reset_at: Rfc3339Micros(outcome.reset_at),
        retry_after_ms: outcome.retry_after.map(ceil_ms),
    };
    Ok(json_response(StatusCode::OK, to_body(&answer)?))
}
