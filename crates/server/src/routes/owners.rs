//! `/v1/owners`: the deployment's customers that keys belong to. Owners are
//! deployment-wide (one customer can hold keys in `acme_live` and `acme_test`), and
//! `external_id` — the id in the company's own database — is unique across the
//! deployment, so `GET /v1/owners?external_id=…` finds at most one. The operations are
//! [`keyhaven_service::owners`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::limits::spec::{QuotaCtx, QuotaView, RateLimitBody, rate_limit_views};
use keyhaven_service::owners::{self, CreateOwner, UpdateOwner};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::{Owner, QuotaTarget};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiPath, ApiQuery, IdempotencyKey, JsonBody};
use crate::pagination::{List, page_request};
use crate::respond::{answer, json_response, render, to_body};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OwnerView {
    pub id: String,
    pub external_id: String,
    pub name: Option<String>,
    pub meta: Map<String, Value>,
    /// Rate limits shared by all the owner's keys.
    pub ratelimits: Vec<RateLimitBody>,
    /// Uses shared by all the owner's keys.
    pub quota: Option<QuotaView>,
    /// Networks every key of the owner may be used from, in CIDR form; empty for any
    /// address.
    pub ip_allowlist: Vec<String>,
    /// Roles every key of the owner has (resolved in each key's keyspace).
    pub roles: Vec<String>,
    /// Permissions given directly (roles add theirs).
    pub permissions: Vec<String>,
    /// The plan the owner is on (`/v1/plans`), if any.
    pub plan: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl OwnerView {
    pub fn new(o: &Owner, ctx: &QuotaCtx<'_>) -> Self {
        Self {
            id: o.id.clone(),
            external_id: o.external_id.clone(),
            name: o.name.clone(),
            meta: o.meta.clone(),
            ratelimits: rate_limit_views(&o.limits.ratelimits),
            quota: ctx.view(QuotaTarget::Owner(o.id.clone()), o.limits.quota.as_ref()),
            ip_allowlist: crate::respond::allowlist_view(o.ip_allowlist.as_ref()),
            roles: o.grants.roles.clone(),
            permissions: o.grants.permissions.clone(),
            plan: o.grants.plan.clone(),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only the owner with this external id.
    pub external_id: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[utoipa::path(post, path = "/v1/owners", tag = "owners",
    operation_id = "owners_create", request_body = CreateOwner,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    responses(
        (status = 201, description = "The owner, created.", body = OwnerView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    body: JsonBody<CreateOwner>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = owners::create(&state, &auth, body.value, &idem, |owner| {
        render(
            StatusCode::CREATED,
            &OwnerView::new(owner, &QuotaCtx::of(&state)),
        )
    })
    .await?;
    Ok(answer(done))
}

#[utoipa::path(get, path = "/v1/owners", tag = "owners",
    operation_id = "owners_list", params(ListParams),
    responses(
        (status = 200, description = "A page of owners.", body = List<OwnerView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersRead)?;
    // Before the page's checks: a restricted root key is refused whatever it asks.
    owners::require_unrestricted(&auth)?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let ctx = QuotaCtx::of(&state);
    let view = |o: &Owner| OwnerView::new(o, &ctx);
    let list = match params.external_id {
        Some(external_id) => {
            let found = owners::by_external_id(&state, &auth, &external_id).await?;
            List::new(found.iter().map(view).collect(), None)
        }
        None => {
            let page = owners::list(&state, &auth, page).await?;
            List::new(page.items.iter().map(view).collect(), page.next)
        }
    };
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/owners/{id}", tag = "owners",
    operation_id = "owners_get", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The owner.", body = OwnerView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersRead)?;
    let owner = owners::find(&state, &auth, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&OwnerView::new(&owner, &QuotaCtx::of(&state)))?,
    ))
}

#[utoipa::path(patch, path = "/v1/owners/{id}", tag = "owners",
    operation_id = "owners_update", params(("id" = String, Path)),
    request_body = UpdateOwner,
    responses(
        (status = 200, description = "The owner, updated.", body = OwnerView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
    body: JsonBody<UpdateOwner>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersWrite)?;
    let after = owners::update(&state, &auth, &id, body.value).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&OwnerView::new(&after, &QuotaCtx::of(&state)))?,
    ))
}

#[utoipa::path(delete, path = "/v1/owners/{id}", tag = "owners",
    operation_id = "owners_delete", params(("id" = String, Path)),
    responses(
        (status = 204, description = "The owner was deleted."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::OwnersWrite)?;
    owners::delete(&state, &auth, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
