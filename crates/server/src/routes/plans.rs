//! `/v1/plans`: deployment-wide templates of limits, quota, scopes, roles, permissions
//! and maximum key age that keys and owners name. The operations are
//! [`keyhaven_service::plans`]; a plan edit reaches every key on it within the
//! cache-coherence bound.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::limits::spec::{QuotaBody, RateLimitBody, quota_body, rate_limit_views};
use keyhaven_service::plans::{self, CreatePlan, UpdatePlan};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::Plan;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiPath, IdempotencyKey, JsonBody};
use crate::pagination::List;
use crate::respond::{answer, json_response, render, to_body};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    pub name: String,
    pub description: Option<String>,
    /// Rate limits of every key on the plan (shared by the keys of an owner on it).
    pub ratelimits: Vec<RateLimitBody>,
    /// What a counter starts from when a key or owner joins the plan, and its refill.
    pub quota: Option<QuotaBody>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub max_key_age_seconds: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Plan> for PlanView {
    fn from(p: &Plan) -> Self {
        Self {
            name: p.name.clone(),
            description: p.description.clone(),
            ratelimits: rate_limit_views(&p.limits.ratelimits),
            quota: p.limits.quota.as_ref().map(quota_body),
            scopes: p.scopes.clone(),
            roles: p.grants.roles.clone(),
            permissions: p.grants.permissions.clone(),
            max_key_age_seconds: p.max_key_age,
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

#[utoipa::path(post, path = "/v1/plans", tag = "plans", operation_id = "plans_create",
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    request_body = CreatePlan,
    responses(
        (status = 201, description = "The plan.", body = PlanView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    body: JsonBody<CreatePlan>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = plans::create(&state, &auth, body.value, &idem, |p| {
        render(StatusCode::CREATED, &PlanView::from(p))
    })
    .await?;
    Ok(answer(done))
}

#[utoipa::path(get, path = "/v1/plans", tag = "plans", operation_id = "plans_list",
    responses(
        (status = 200, description = "Every plan, by name.", body = List<PlanView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list(State(state): State<AppState>, auth: RootAuth) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesRead)?;
    let all = plans::list(&state).await?;
    let list = List::new(all.iter().map(PlanView::from).collect(), None);
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/plans/{name}", tag = "plans", operation_id = "plans_get",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The plan.", body = PlanView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesRead)?;
    let plan = plans::find(&state, &name).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&PlanView::from(&plan))?,
    ))
}

#[utoipa::path(patch, path = "/v1/plans/{name}", tag = "plans", operation_id = "plans_update",
    params(("name" = String, Path)),
    request_body = UpdatePlan,
    responses(
        (status = 200, description = "The plan, updated.", body = PlanView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(name): ApiPath<String>,
    body: JsonBody<UpdatePlan>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesWrite)?;
    let plan = plans::update(&state, &auth, &name, body.value).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&PlanView::from(&plan))?,
    ))
}

#[utoipa::path(delete, path = "/v1/plans/{name}", tag = "plans", operation_id = "plans_delete",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "The plan was deleted."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::KeyspacesWrite)?;
    plans::delete(&state, &auth, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
