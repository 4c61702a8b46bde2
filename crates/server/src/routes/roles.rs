//! `/v1/keyspaces/{id}/roles`: named sets of permissions in a keyspace. The operations
//! are [`keyhaven_service::roles`]; a role edit reaches every key with the role within
//! the cache-coherence bound.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::roles::{self, CreateRole, UpdateRole};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiPath, IdempotencyKey, JsonBody};
use crate::pagination::List;
use crate::respond::{answer, json_response, render, to_body};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleView {
    pub keyspace_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Role> for RoleView {
    fn from(r: &Role) -> Self {
        Self {
            keyspace_id: r.keyspace_id.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            permissions: r.permissions.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

#[utoipa::path(post, path = "/v1/keyspaces/{id}/roles", tag = "keyspaces",
    operation_id = "roles_create",
    params(("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    request_body = CreateRole,
    responses(
        (status = 201, description = "The role.", body = RoleView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    ApiPath(id): ApiPath<String>,
    body: JsonBody<CreateRole>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = roles::create(&state, &auth, &id, body.value, &idem, |r| {
        render(StatusCode::CREATED, &RoleView::from(r))
    })
    .await?;
    Ok(answer(done))
}

#[utoipa::path(get, path = "/v1/keyspaces/{id}/roles", tag = "keyspaces",
    operation_id = "roles_list", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The keyspace's roles, by name.", body = List<RoleView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesRead)?;
    let all = roles::list(&state, &auth, &id).await?;
    let list = List::new(all.iter().map(RoleView::from).collect(), None);
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/keyspaces/{id}/roles/{name}", tag = "keyspaces",
    operation_id = "roles_get",
    params(("id" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, description = "The role.", body = RoleView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesRead)?;
    let role = roles::find(&state, &auth, &id, &name).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&RoleView::from(&role))?,
    ))
}

#[utoipa::path(patch, path = "/v1/keyspaces/{id}/roles/{name}", tag = "keyspaces",
    operation_id = "roles_update",
    params(("id" = String, Path), ("name" = String, Path)),
    request_body = UpdateRole,
    responses(
        (status = 200, description = "The role, updated.", body = RoleView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath((id, name)): ApiPath<(String, String)>,
    body: JsonBody<UpdateRole>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesWrite)?;
    let role = roles::update(&state, &auth, &id, &name, body.value).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&RoleView::from(&role))?,
    ))
}

#[utoipa::path(delete, path = "/v1/keyspaces/{id}/roles/{name}", tag = "keyspaces",
    operation_id = "roles_delete",
    params(("id" = String, Path), ("name" = String, Path)),
    responses(
        (status = 204, description = "The role was deleted."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::KeyspacesWrite)?;
    roles::delete(&state, &auth, &id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
