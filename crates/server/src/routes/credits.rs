//! `POST /v1/keys/{key_id}/credits` and `POST /v1/owners/{id}/credits`: a quota's
//! counter set, raised or lowered atomically. The rules are the service's
//! ([`keyhaven_service::credits`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::credits::{self, ChangeCredits, CreditsOf};
use keyhaven_service::idempotency::Idempotent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiPath, IdempotencyKey, JsonBody};
use crate::respond::{answer, render};
use crate::state::AppState;

/// The credits after the change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreditsView {
    /// Uses left in the quota (as stored; this node's live counter follows it at once).
    pub remaining: u64,
}

fn view(
    remaining: u64,
) -> Result<keyhaven_service::idempotency::Rendered, keyhaven_service::ServiceError> {
    render(StatusCode::OK, &CreditsView { remaining })
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/credits", tag = "keys",
    operation_id = "keys_credits",
    params(("key_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    request_body = ChangeCredits,
    responses(
        (status = 200, description = "The credits left.", body = CreditsView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn key(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    ApiPath(key_id): ApiPath<String>,
    body: JsonBody<ChangeCredits>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = credits::change(
        &state,
        &auth,
        CreditsOf::Key(&key_id),
        body.value,
        &idem,
        view,
    )
    .await?;
    Ok(answer(done))
}

#[utoipa::path(post, path = "/v1/owners/{id}/credits", tag = "owners",
    operation_id = "owners_credits",
    params(("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    request_body = ChangeCredits,
    responses(
        (status = 200, description = "The credits left.", body = CreditsView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn owner(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    ApiPath(id): ApiPath<String>,
    body: JsonBody<ChangeCredits>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = credits::change(
        &state,
        &auth,
        CreditsOf::Owner(&id),
        body.value,
        &idem,
        view,
    )
    .await?;
    Ok(answer(done))
}
