//! `/v1/portal/sessions`: a company's backend asks for a customer portal link for one
//! of its owners, to hand to that (signed-in) customer. The operation is
//! [`keyhaven_service::portal::create_link`]; the portal itself is served under
//! `/portal/`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::portal::{self, CreatePortalSession};
use keyhaven_service::validate::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::JsonBody;
use crate::respond::{json_response, to_body};
use crate::state::AppState;

/// A portal link. It works once: opening it starts the customer's session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PortalSessionView {
    /// Send the customer here (e.g. redirect them). Treat it as a secret until used.
    pub url: String,
    /// The link is dead after this if not opened.
    pub expires_at: String,
}

#[utoipa::path(post, path = "/v1/portal/sessions", tag = "portal", operation_id = "portal_sessions_create",
    request_body = CreatePortalSession,
    responses(
        (status = 201, body = PortalSessionView,
            description = "A single-use link to the customer portal for the owner."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    body: JsonBody<CreatePortalSession>,
) -> Result<Response, ApiError> {
    auth.require(Scope::PortalWrite)?;
    let link = portal::create_link(&state, &auth, body.value).await?;
    let view = PortalSessionView {
        url: link.url,
        expires_at: rfc3339(link.expires_at),
    };
    Ok(json_response(StatusCode::CREATED, to_body(&view)?))
}
