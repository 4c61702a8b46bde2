//! The customer portal: `/portal/…`. A customer arrives through a single-use link made
//! by the company's backend (`POST /v1/portal/sessions`), and manages one owner's keys in
//! the keyspaces and with the permissions the link granted. The actor is
//! `portal:<owner id>`; keys of anyone else answer the same 404 as keys that do not
//! exist.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keyhaven_service::ServiceError;
use keyhaven_service::actor::PortalPermission;
use keyhaven_service::sessions::{self, SessionToken};
use keyhaven_store::Branding;

use super::html;
use super::session::{self, Customer, PORTAL_COOKIE, PortalForm};
use crate::state::AppState;

mod pages;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
        .route("/portal/", get(pages::home))
        .route("/portal/start/{token}", get(start))
        .route("/portal/keys", post(pages::create))
        .route("/portal/keys/{id}", get(pages::key))
        .route("/portal/keys/{id}/name", post(pages::rename))
        .route("/portal/keys/{id}/rotate", post(pages::rotate))
        .route("/portal/keys/{id}/revoke", post(pages::revoke))
        .route("/portal/logout", post(logout))
        .route(
            "/portal/{*rest}",
            get(|| async { fail(ServiceError::NotFound) }),
        )
}

fn fail(e: ServiceError) -> Response {
    html::service_error(e, "/portal/")
}

/// Refuses what the link did not grant.
fn require(customer: &Customer, permission: PortalPermission) -> Result<(), ServiceError> {
    if customer.grant.allows(permission) {
        Ok(())
    } else {
        Err(ServiceError::MissingScope(permission.as_str()))
    }
}

/// The look of the portal: the branding of the first keyspace the link names.
async fn branding(state: &AppState, customer: &Customer) -> Branding {
    match customer.grant.keyspace_ids.first() {
        Some(id) => state
            .store
            .keyspace(id)
            .await
            .ok()
            .flatten()
            .map(|ks| ks.branding)
            .unwrap_or_default(),
        None => Branding::default(),
    }
}

/// Opening a portal link: it dies now, and a session starts if it was live.
async fn start(
    State(state): State<AppState>,
    Path(token): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let dead = || {
        html::message_page(
            StatusCode::GONE,
            "This link has expired or was already used",
            "For your security, a key management link works once and only for a few minutes. \
             Go back to your account and open the key management page again.",
        )
    };
    let Some(link) = SessionToken::parse(&token) else {
        return dead();
    };
    match sessions::open_portal_link(&state, &link, session::client_ip(&parts)).await {
        Ok(Some(session_token)) => {
            let cookie = session::set_cookie(
                &state,
                PORTAL_COOKIE,
                Some(session_token.expose()),
                "/portal",
                "Lax",
            );
            let mut response = Redirect::to("/portal/").into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Ok(None) => dead(),
        Err(e) => fail(e),
    }
}

async fn logout(State(state): State<AppState>, form: PortalForm) -> Response {
    if let Err(e) = sessions::sign_out(
        &state,
        &form.customer.actor,
        &form.customer.grant.owner_id,
        &form.customer.token,
    )
    .await
    {
        return fail(e);
    }
    let clear = session::set_cookie(&state, PORTAL_COOKIE, None, "/portal", "Lax");
    let mut response = html::message_page(
        StatusCode::OK,
        "You are signed out",
        "Open the key management page from your account again to continue.",
    );
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}
