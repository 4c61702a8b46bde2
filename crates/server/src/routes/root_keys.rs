//! `/v1/root-keys`: the admin API's own credentials, managed through it. Only a root key
//! not limited to keyspaces may; it creates keys no broader than itself. The operations
//! are [`keyhaven_service::root_keys`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::root_keys::{self, CreateRootKey, RotateRootKey};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::{KeyRecord, ROOT_PREFIX};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiPath, ApiQuery, JsonBody};
use crate::pagination::{List, page_request};
use crate::respond::{json_response, to_body};
use crate::state::AppState;

/// A root key as the API shows it: never its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RootKeyView {
    pub key_id: String,
    /// `kh_root_<key id>_…<last 4>`.
    pub start: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    /// The keyspaces it is limited to; `null` for all.
    pub keyspace_ids: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    /// Set once rotated: the successor's key id.
    pub rotated_to: Option<String>,
    /// When a rotated key stops working.
    pub grace_until: Option<String>,
    pub rotated_from: Option<String>,
    pub last_used_at: Option<String>,
    pub created_at: String,
}

impl From<&KeyRecord> for RootKeyView {
    fn from(k: &KeyRecord) -> Self {
        Self {
            key_id: k.key_id.clone(),
            start: keyhaven_core::format::display_form(ROOT_PREFIX, &k.key_id, &k.last4),
            name: k.name.clone(),
            scopes: k.scopes.clone(),
            keyspace_ids: k.allowed_keyspaces.clone(),
            expires_at: k.expires_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            revoked_reason: k.revoked_reason.clone(),
            rotated_to: k.rotation.as_ref().map(|r| r.successor.clone()),
            grace_until: k.rotation.as_ref().map(|r| rfc3339(r.grace_until)),
            rotated_from: k.rotated_from.clone(),
            last_used_at: k.last_used_at.map(rfc3339),
            created_at: rfc3339(k.created_at),
        }
    }
}

/// A root key just made: its plaintext, shown this once, and its record.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedRootKey {
    /// The plaintext root key. Keyhaven keeps only a peppered HMAC: it cannot show it again.
    pub key: String,
    #[serde(flatten)]
    pub record: RootKeyView,
}

impl std::fmt::Debug for CreatedRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedRootKey")
            .field("key", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

fn created(key: &keyhaven_core::GeneratedKey, record: &KeyRecord) -> Result<Response, ApiError> {
    let mut view = CreatedRootKey {
        key: key.key().expose_secret().to_owned(),
        record: RootKeyView::from(record),
    };
    let body = to_body(&view);
    zeroize::Zeroize::zeroize(&mut view.key);
    Ok(json_response(StatusCode::CREATED, body?))
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

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRootKey {
    /// Why (kept in the audit log), 1-200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub reason: Option<String>,
}

#[utoipa::path(get, path = "/v1/root-keys", tag = "root-keys", operation_id = "root_keys_list",
    params(ListParams),
    responses((status = 200, description = "A page of root keys, newest first.", body = List<RootKeyView>), ClientError),
    security(("root_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::RootKeysRead)?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let page = root_keys::list(&state, &auth, page).await?;
    let list = List::new(
        page.items.iter().map(RootKeyView::from).collect(),
        page.next,
    );
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/root-keys/{key_id}", tag = "root-keys", operation_id = "root_keys_get",
    params(("key_id" = String, Path, description = "The root key's id")),
    responses((status = 200, description = "The root key.", body = RootKeyView), ClientError),
    security(("root_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::RootKeysRead)?;
    let found = root_keys::find(&state, &auth, &key_id).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&RootKeyView::from(&found.key))?,
    ))
}

#[utoipa::path(post, path = "/v1/root-keys", tag = "root-keys", operation_id = "root_keys_create",
    request_body = CreateRootKey,
    responses((status = 201, body = CreatedRootKey,
        description = "The root key, created; `key` is its plaintext, shown only this once."), ClientError),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    body: JsonBody<CreateRootKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::RootKeysWrite)?;
    let (key, record) = root_keys::create_as(&state, &auth, body.value).await?;
    created(&key, &record)
}

#[utoipa::path(post, path = "/v1/root-keys/{key_id}/revoke", tag = "root-keys", operation_id = "root_keys_revoke",
    params(("key_id" = String, Path, description = "The root key's id")),
    request_body = RevokeRootKey,
    responses((status = 200, description = "The root key, revoked: refused from its next call on.", body = RootKeyView), ClientError),
    security(("root_key" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
    body: JsonBody<RevokeRootKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::RootKeysWrite)?;
    root_keys::revoke(&state, &auth, &key_id, body.value.reason).await?;
    let found = root_keys::find(&state, &auth, &key_id).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&RootKeyView::from(&found.key))?,
    ))
}

#[utoipa::path(post, path = "/v1/root-keys/{key_id}/rotate", tag = "root-keys", operation_id = "root_keys_rotate",
    params(("key_id" = String, Path, description = "The root key's id")),
    request_body = RotateRootKey,
    responses((status = 201, body = CreatedRootKey,
        description = "The successor, created; `key` is its plaintext, shown only this once. The old key works until `grace_until`."), ClientError),
    security(("root_key" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
    body: JsonBody<RotateRootKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::RootKeysWrite)?;
    let (key, record) = root_keys::rotate(&state, &auth, &key_id, body.value).await?;
    created(&key, &record)
}
