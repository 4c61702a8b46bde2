//! `/v1/keyspaces`: families of keys sharing a prefix. The reserved root keyspace is
//! invisible here; a keyspace-restricted root key sees only its own keyspaces. The
//! operations are [`keyhaven_service::keyspaces`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::branding::BrandingBody;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::keyspaces::{self, AlertsBody, CreateKeyspace, UpdateKeyspace};
use keyhaven_service::leaks::LeakPolicyName;
use keyhaven_service::limits::spec::{RateLimitBody, rate_limit_views};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::Keyspace;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiPath, ApiQuery, IdempotencyKey, JsonBody};
use crate::pagination::{List, page_request};
use crate::respond::{answer, json_response, render, to_body};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyspaceView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    /// Keys stop verifying (EXPIRED) this many seconds after creation.
    pub max_key_age_seconds: Option<i64>,
    /// Grace period of a rotation that names none.
    pub default_grace_seconds: Option<i64>,
    /// Keys this close to their (effective) expiry are listed by
    /// `GET /v1/keys/expiring` and get a `key.expiring` event (default 7 days).
    pub expiry_warning_seconds: Option<i64>,
    /// The strength of new keys' secrets: 22 bytes (30 characters) or 32 (44).
    pub secret_bytes: u8,
    /// Longest lifetime of a signed token minted from a key of the keyspace.
    pub token_max_ttl_seconds: i64,
    /// Default rate limits of every key in the keyspace.
    pub ratelimits: Vec<RateLimitBody>,
    /// Anomaly alert thresholds (`null` fields take the server's defaults).
    pub alerts: AlertsBody,
    /// How the customer portal looks to this keyspace's customers.
    pub branding: BrandingBody,
    /// What happens to a key reported as leaked.
    pub leak_policy: LeakPolicyName,
    /// Networks every key of the keyspace may be used from, in CIDR form; empty for
    /// any address.
    pub ip_allowlist: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Keyspace> for KeyspaceView {
    fn from(k: &Keyspace) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            max_key_age_seconds: k.policy.max_key_age,
            default_grace_seconds: k.policy.default_grace,
            expiry_warning_seconds: k.policy.expiry_warning,
            secret_bytes: k.policy.secret_length.bytes(),
            token_max_ttl_seconds: k
                .policy
                .token_max_ttl
                .unwrap_or(keyhaven_store::DEFAULT_TOKEN_MAX_TTL),
            ratelimits: rate_limit_views(&k.ratelimits),
            alerts: AlertsBody::of(&k.alerts),
            branding: BrandingBody::of(&k.branding),
            leak_policy: k.leak_policy.into(),
            ip_allowlist: crate::respond::allowlist_view(k.ip_allowlist.as_ref()),
            created_at: rfc3339(k.created_at),
            updated_at: rfc3339(k.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[utoipa::path(post, path = "/v1/keyspaces", tag = "keyspaces", operation_id = "keyspaces_create",
    request_body = CreateKeyspace,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    responses(
        (status = 201, description = "The keyspace, created.", body = KeyspaceView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    body: JsonBody<CreateKeyspace>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = keyspaces::create(&state, &auth, body.value, &idem, |ks| {
        render(StatusCode::CREATED, &KeyspaceView::from(ks))
    })
    .await?;
    Ok(answer(done))
}

#[utoipa::path(get, path = "/v1/keyspaces", tag = "keyspaces",
    operation_id = "keyspaces_list", params(ListParams),
    responses(
        (status = 200, description = "A page of keyspaces.", body = List<KeyspaceView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesRead)?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let page = keyspaces::list(&state, &auth, page).await?;
    let list = List::new(
        page.items.iter().map(KeyspaceView::from).collect(),
        page.next,
    );
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/keyspaces/{id}", tag = "keyspaces", operation_id = "keyspaces_get",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The keyspace.", body = KeyspaceView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesRead)?;
    let ks = keyspaces::find(&state, &auth, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&KeyspaceView::from(&ks))?,
    ))
}

#[utoipa::path(patch, path = "/v1/keyspaces/{id}", tag = "keyspaces",
    operation_id = "keyspaces_update",
    params(("id" = String, Path)), request_body = UpdateKeyspace,
    responses(
        (status = 200, description = "The keyspace, updated.", body = KeyspaceView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
    body: JsonBody<UpdateKeyspace>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeyspacesWrite)?;
    let after = keyspaces::update(&state, &auth, &id, body.value).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&KeyspaceView::from(&after))?,
    ))
}

#[utoipa::path(delete, path = "/v1/keyspaces/{id}", tag = "keyspaces",
    operation_id = "keyspaces_delete",
    params(("id" = String, Path)),
    responses(
        (status = 204, description = "The keyspace was deleted."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::KeyspacesWrite)?;
    keyspaces::delete(&state, &auth, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
