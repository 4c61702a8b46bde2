//! `/v1/keys`: create (the only time the plaintext is returned), list, get, patch,
//! revoke, rotate, reveal, import, delete. The rules are the service's
//! ([`keyhaven_service::keys`]); these handlers check the root key's scope, call one
//! operation and shape its answer ([`views`]).

mod views;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::Scope;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::keys::{
    self, CreateKey, ImportRequest, KeySort, ListKeys, RevokeKey, RotateKey, UpdateKey,
};
use keyhaven_service::limits::spec::QuotaCtx;
use keyhaven_service::validate::rfc3339;
use secrecy::ExposeSecret;
use serde::Deserialize;
use utoipa::IntoParams;
use zeroize::{Zeroize, Zeroizing};

pub use self::views::{
    CreateKeysBatch, CreatedKey, CreatedKeys, ExpiringKeyView, ImportResponse, KeyView, RevealedKey,
};
use crate::auth::RootAuth;
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiPath, ApiQuery, IdempotencyKey, JsonBody};
use crate::pagination::{
    List, encode_cursor, encode_sorted_cursor, page_request, sorted_page_request,
};
use crate::respond::{answer, json_response, render, to_body};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub keyspace_id: Option<String>,
    pub owner_id: Option<String>,
    /// `created` (newest first, the default) or `last_used` (most recently used first,
    /// never-used keys last).
    pub sort: Option<String>,
    /// Keys whose id starts with this, whose name contains it (any case), or whose
    /// owner's external id is exactly it; 1-200 characters.
    #[param(max_length = 200)]
    pub search: Option<String>,
    /// `active`, `disabled`, `expired` or `revoked`: only keys in that state now.
    pub state: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExpiringParams {
    pub keyspace_id: Option<String>,
    /// At most this many, soonest first (1-500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[utoipa::path(post, path = "/v1/keys", tag = "keys",
    operation_id = "keys_create", request_body = CreateKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    responses(
        (status = 201, body = CreatedKey,
            description = "The key, created; `key` is its plaintext, shown only this once."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    body: JsonBody<CreateKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = keys::create(&state, &auth, body.value, &idem, |new| {
        CreatedKey::render(&state, new)
    })
    .await?;
    Ok(answer(done))
}

#[utoipa::path(post, path = "/v1/keys/batch", tag = "keys",
    operation_id = "keys_create_batch", request_body = CreateKeysBatch,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    responses(
        (status = 201, body = CreatedKeys,
            description = "Every key, created in one transaction, in the order asked; each `key` \
                is its plaintext, shown only this once. An item that cannot be made refuses \
                the whole batch (400, its index in `detail`), and nothing is created."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create_batch(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    body: JsonBody<CreateKeysBatch>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = keys::create_batch(&state, &auth, body.value.keys, &idem, |made| {
        CreatedKeys::render(&state, made)
    })
    .await?;
    Ok(answer(done))
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", operation_id = "keys_list", params(ListParams),
    responses(
        (status = 200, description = "A page of keys.", body = List<KeyView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysRead)?;
    let sort = KeySort::parse(params.sort.as_deref())?;
    let (last_used_before, page) = sorted_page_request(params.limit, params.cursor.as_deref())?;
    let query = ListKeys {
        keyspace_id: params.keyspace_id.as_deref(),
        owner_id: params.owner_id.as_deref(),
        sort,
        search: params.search.as_deref(),
        state: keys::parse_state(params.state.as_deref())?,
    };
    let listed = keys::list(&state, &auth, query, page, last_used_before).await?;
    let next_cursor = match (listed.page.next, listed.next_last_used) {
        (Some(seq), Some(last_used)) => Some(encode_sorted_cursor(last_used, seq)),
        (next, _) => next.map(encode_cursor),
    };
    let ctx = QuotaCtx::of(&state);
    let data = (listed.page.items.iter())
        .map(|k| KeyView::new(k, listed.prefixes.of(&k.keyspace_id), &ctx))
        .collect();
    let list = List { data, next_cursor };
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/keys/{key_id}", tag = "keys",
    operation_id = "keys_get", params(("key_id" = String, Path)),
    responses(
        (status = 200, description = "The key (never its secret).", body = KeyView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysRead)?;
    let found = keys::find(&state, &auth, &key_id).await?;
    let view = KeyView::of(&state, &found);
    Ok(json_response(StatusCode::OK, to_body(&view)?))
}

#[utoipa::path(patch, path = "/v1/keys/{key_id}", tag = "keys",
    operation_id = "keys_update", params(("key_id" = String, Path)),
    request_body = UpdateKey,
    responses(
        (status = 200, description = "The key, updated.", body = KeyView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
    body: JsonBody<UpdateKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let updated = keys::update(&state, &auth, &key_id, body.value).await?;
    let view = KeyView::of(&state, &updated);
    Ok(json_response(StatusCode::OK, to_body(&view)?))
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/revoke", tag = "keys", operation_id = "keys_revoke",
    params(("key_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    request_body = RevokeKey,
    responses(
        (status = 200, description = "The key, revoked.", body = KeyView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    ApiPath(key_id): ApiPath<String>,
    body: JsonBody<RevokeKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = keys::revoke(&state, &auth, &key_id, body.value, &idem, |k| {
        render(StatusCode::OK, &KeyView::of(&state, k))
    })
    .await?;
    Ok(answer(done))
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/rotate", tag = "keys", operation_id = "keys_rotate",
    params(("key_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    request_body = RotateKey,
    responses(
        (status = 201, body = CreatedKey,
            description = "The successor key; `key` is its plaintext, shown only this once."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    ApiPath(key_id): ApiPath<String>,
    body: JsonBody<RotateKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = keys::rotate(&state, &auth, &key_id, body.value, &idem, |new| {
        CreatedKey::render(&state, new)
    })
    .await?;
    Ok(answer(done))
}

#[utoipa::path(get, path = "/v1/keys/expiring", tag = "keys",
    operation_id = "expiring_keys_list", params(ExpiringParams),
    responses(
        (status = 200, body = List<ExpiringKeyView>,
            description = "Keys within their keyspace's expiry warning, soonest expiry first."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn expiring(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ExpiringParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysRead)?;
    let page = page_request(params.limit, None)?;
    let found = keys::expiring(&state, &auth, params.keyspace_id.as_deref(), page.limit).await?;
    let ctx = QuotaCtx::of(&state);
    let views: Vec<ExpiringKeyView> = (found.keys.iter())
        .map(|e| ExpiringKeyView {
            key: KeyView::new(&e.key, found.prefixes.of(&e.key.keyspace_id), &ctx),
            expires: rfc3339(e.expires),
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        to_body(&List::new(views, None))?,
    ))
}

#[utoipa::path(post, path = "/v1/keys/import", tag = "keys",
    operation_id = "keys_import", request_body = ImportRequest,
    responses(
        (status = 200, description = "What happened to each item: imported, skipped or rejected.",
            body = ImportResponse),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn import(
    State(state): State<AppState>,
    auth: RootAuth,
    body: JsonBody<ImportRequest>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let outcomes = keys::import(&state, &auth, body.value).await?;
    let response = ImportResponse::new(outcomes);
    Ok(json_response(StatusCode::OK, to_body(&response)?))
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/reveal", tag = "keys", operation_id = "keys_reveal",
    params(("key_id" = String, Path)),
    responses(
        (status = 200, description = "The key's plaintext (the reveal is audited).",
            body = RevealedKey),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn reveal(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysReveal)?;
    let revealed = keys::reveal(&state, &auth, &key_id).await?;
    let mut view = RevealedKey {
        key_id: revealed.key_id,
        key: revealed.plaintext.expose_secret().to_owned(),
    };
    let body = to_body(&view).map(Zeroizing::new);
    view.key.zeroize();
    Ok(json_response(StatusCode::OK, body?.to_vec()))
}

#[utoipa::path(delete, path = "/v1/keys/{key_id}", tag = "keys",
    operation_id = "keys_delete", params(("key_id" = String, Path)),
    responses(
        (status = 204, description = "The key was deleted."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::KeysWrite)?;
    keys::delete(&state, &auth, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
