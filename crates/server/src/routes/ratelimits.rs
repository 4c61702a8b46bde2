//! `POST /v1/ratelimits/limit`: standalone rate limits, for things that are not keys.
//! The rules are the service's ([`keyhaven_service::ratelimits`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
pub use keyhaven_service::ratelimits::MAX_IDENTIFIER_CHARS;
use keyhaven_service::ratelimits::overrides::{self, SetOverride};
use keyhaven_service::ratelimits::{self, LimitRequest};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::RatelimitOverride;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::List;
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

/// An override of a namespace's limit for an identifier or a pattern of them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OverrideView {
    pub namespace: String,
    /// The identifier, or a pattern where `*` is any run of characters.
    pub identifier: String,
    pub limit: u64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&RatelimitOverride> for OverrideView {
    fn from(o: &RatelimitOverride) -> Self {
        Self {
            namespace: o.namespace.clone(),
            identifier: o.identifier.clone(),
            limit: o.limit.limit,
            duration_ms: o.limit.duration_ms,
            burst: o.limit.burst,
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
        }
    }
}

#[utoipa::path(put, path = "/v1/ratelimits/overrides", tag = "ratelimits",
    operation_id = "ratelimits_set_override", request_body = SetOverride,
    responses(
        (status = 200, description = "The override, as stored.", body = OverrideView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn set_override(
    State(state): State<AppState>,
    auth: RootAuth,
    JsonBody { value: input, .. }: JsonBody<SetOverride>,
) -> Result<Response, ApiError> {
    auth.require(Scope::RatelimitsWrite)?;
    let stored = overrides::set(&state, &auth, input).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&OverrideView::from(&stored))?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NamespaceParams {
    /// The namespace whose overrides to list.
    pub namespace: String,
}

#[utoipa::path(get, path = "/v1/ratelimits/overrides", tag = "ratelimits",
    operation_id = "ratelimits_list_overrides", params(NamespaceParams),
    responses(
        (status = 200, description = "The namespace's overrides, by identifier.",
            body = List<OverrideView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list_overrides(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<NamespaceParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::RatelimitsRead)?;
    let all = overrides::list(&state, &auth, &params.namespace).await?;
    let list = List::new(all.iter().map(OverrideView::from).collect(), None);
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OverrideParams {
    /// The override's namespace.
    pub namespace: String,
    /// The override's identifier or pattern, exactly as set.
    pub identifier: String,
}

#[utoipa::path(delete, path = "/v1/ratelimits/overrides", tag = "ratelimits",
    operation_id = "ratelimits_delete_override", params(OverrideParams),
    responses(
        (status = 204, description = "The override was deleted."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delete_override(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<OverrideParams>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::RatelimitsWrite)?;
    overrides::delete(&state, &auth, &params.namespace, &params.identifier).await?;
    Ok(StatusCode::NO_CONTENT)
}
