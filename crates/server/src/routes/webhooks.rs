//! `/v1/webhooks`: endpoints that receive events, their delivery log and manual
//! re-sends. The signing secret is returned once, at creation; it is stored sealed.
//!
//! A webhook with a `keyspace_id` receives only that keyspace's events; one without
//! receives every event and can be managed only by an unrestricted root key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_store::{
    Attempt, Change, Delivery, DeliveryStatus, EVENT_TYPES, PageRequest, Webhook,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::keyspaces::{rfc3339, visible_keyspace};
use super::*;
use crate::auth::{RootAuth, Scope};
use crate::error::ClientError;
use crate::extract::{ApiPath, ApiQuery, JsonBody};
use keyhaven_service::webhooks::{SECRET_PURPOSE, signing, target};

/// Most event types one webhook lists.
pub const MAX_EVENT_TYPES: usize = 16;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    /// Event types delivered; `["*"]` for all.
    pub event_types: Vec<String>,
    /// Only events of this keyspace; `null` for all.
    pub keyspace_id: Option<String>,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Webhook> for WebhookView {
    fn from(h: &Webhook) -> Self {
        Self {
            id: h.id.clone(),
            url: h.url.clone(),
            description: h.description.clone(),
            event_types: h.event_types.clone(),
            keyspace_id: h.keyspace_id.clone(),
            enabled: h.enabled,
            created_at: rfc3339(h.created_at),
            updated_at: rfc3339(h.updated_at),
        }
    }
}

/// A new webhook with its signing secret, shown this once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    /// `whsec_…`: the Standard Webhooks signing secret. Store it now; it is never shown
    /// again.
    pub secret: String,
    #[serde(flatten)]
    pub webhook: WebhookView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http(s)://…`, at most 2048 characters, no credentials; a public address unless
    /// the server allows private targets.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// 1-16 event types to deliver (default `["*"]`, every type).
    #[schema(min_items = 1, max_items = 16)]
    pub event_types: Option<Vec<String>>,
    /// Deliver only this keyspace's events (required for a keyspace-restricted root key).
    pub keyspace_id: Option<String>,
    /// At most 500 characters without control characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// `http(s)://…`, at most 2048 characters, no credentials; a public address unless
    /// the server allows private targets.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    /// Replaces the event types: 1-16 (`["*"]` for every type).
    #[schema(min_items = 1, max_items = 16)]
    pub event_types: Option<Vec<String>>,
    /// At most 500 characters without control characters; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    /// A disabled webhook gets no new deliveries, and those waiting are paused.
    pub enabled: Option<bool>,
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// `pending`, `delivered` or `failed` (retries exhausted).
    pub status: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    pub attempted_at: String,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub webhook_id: String,
    /// The event, and the `webhook-id` header of every attempt.
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    /// When a pending delivery is next tried.
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
    /// Every attempt, oldest first (on `GET …/deliveries/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
}

fn millis(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Never shows the secret.
impl std::fmt::Debug for CreatedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedWebhook")
            .field("secret", &"[redacted]")
            .field("webhook", &self.webhook)
            .finish()
    }
}

impl DeliveryView {
    fn new(d: &Delivery, attempts: Option<&[Attempt]>) -> Self {
        Self {
            id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| millis(d.next_attempt_ms)),
            last_status_code: d.last_status,
            last_error: d.last_error.clone(),
            delivered_at: d.delivered_at_ms.map(millis),
            created_at: rfc3339(d.created_at),
            attempt_log: attempts.map(|list| {
                list.iter()
                    .map(|a| AttemptView {
                        attempt: a.attempt,
                        attempted_at: millis(a.attempted_ms),
                        status_code: a.status_code,
                        error: a.error.clone(),
                        duration_ms: a.duration_ms,
                    })
                    .collect()
            }),
        }
    }
}

fn validate_event_types(types: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let mut types = types.unwrap_or_else(|| vec!["*".to_owned()]);
    if types.is_empty() || types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::invalid(format!(
            "event_types must list 1 to {MAX_EVENT_TYPES} types"
        )));
    }
    if let Some(bad) = types
        .iter()
        .find(|t| *t != "*" && !EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "unknown event type `{}`; known types: *, {}",
            bad.chars().take(64).collect::<String>(),
            EVENT_TYPES.join(", ")
        )));
    }
    types.sort_unstable();
    types.dedup();
    Ok(types)
}

fn validate_description(d: Option<&str>) -> Result<(), ApiError> {
    match d {
        Some(d) if d.chars().count() > 500 || d.chars().any(char::is_control) => {
            Err(ApiError::invalid(
                "description must be at most 500 characters without control characters",
            ))
        }
        _ => Ok(()),
    }
}

fn validate_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    target::validate(url, state.config.webhook_allow_private_targets)
        .map(|_| ())
        .map_err(ApiError::invalid)
}

/// A webhook this root key may manage, or 404 (byte-identical to a missing one).
async fn visible_webhook(state: &AppState, auth: &RootAuth, id: &str) -> Result<Webhook, ApiError> {
    if !ids::is_plausible("wh", id) {
        return Err(ApiError::NotFound);
    }
    match state.store.webhook(id).await? {
        Some(h) if sees(auth, &h) => Ok(h),
        _ => Err(ApiError::NotFound),
    }
}

fn sees(auth: &RootAuth, hook: &Webhook) -> bool {
    match &hook.keyspace_id {
        Some(ks) => auth.sees_keyspace(ks),
        None => !auth.is_restricted(),
    }
}

fn fields(h: &Webhook) -> [(&'static str, Value); 5] {
    [
        ("url", json!(h.url)),
        ("event_types", json!(h.event_types)),
        ("keyspace_id", json!(h.keyspace_id)),
        ("description", json!(h.description)),
        ("enabled", json!(h.enabled)),
    ]
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    operation_id = "webhooks_create", request_body = CreateWebhook,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    responses(
        (status = 201, body = CreatedWebhook,
            description = "The webhook, created; its signing `secret` is shown only this once."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    body: JsonBody<CreateWebhook>,
) -> Result<Response, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let idem = Idempotent::new(&state, &auth, idem, body.request_hash());
    if let Some(replay) = idem.replay().await? {
        return Ok(replay);
    }
    let req = body.value;
    validate_url(&state, &req.url)?;
    validate_description(req.description.as_deref())?;
    let event_types = validate_event_types(req.event_types)?;
    match &req.keyspace_id {
        Some(ks) => {
            visible_keyspace(&state, &auth, ks)
                .await
                .map_err(|_| ApiError::invalid("keyspace_id names no keyspace"))?;
        }
        None if auth.is_restricted() => {
            return Err(ApiError::invalid(
                "a keyspace-restricted root key must give keyspace_id",
            ));
        }
        None => {}
    }
    let secret = signing::new_secret()?;
    let sealed_secret = keyhaven_service::idempotency::seal_for(
        SECRET_PURPOSE,
        &state.peppers,
        secret.expose_secret().as_bytes(),
    )?;
    let now = state.clock.now();
    let hook = Webhook {
        id: ids::new_id("wh")?,
        url: req.url,
        description: req.description,
        event_types,
        keyspace_id: req.keyspace_id,
        enabled: req.enabled.unwrap_or(true),
        sealed_secret,
        created_at: now,
        updated_at: now,
    };
    let mut response = CreatedWebhook {
        secret: secret.expose_secret().to_owned(),
        webhook: WebhookView::from(&hook),
    };
    let body = zeroize::Zeroizing::new(to_body(&response)?);
    zeroize::Zeroize::zeroize(&mut response.secret);
    let event = audit_event(
        &auth,
        "webhook.create",
        ("webhook", &hook.id),
        hook.keyspace_id.as_deref(),
        created(&fields(&hook)),
        now,
    )?;
    let saved = idem.record(StatusCode::CREATED, &body, now)?;
    let change = Change {
        audit: &event,
        idempotency: saved.as_ref(),
    };
    match state.store.create_webhook(&hook, change).await {
        Ok(()) => Ok(json_response(StatusCode::CREATED, body.to_vec())),
        Err(e) => idem.on_error(e).await,
    }
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    operation_id = "webhooks_list", params(ListParams),
    responses(
        (status = 200, description = "A page of webhooks.", body = List<WebhookView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let page = state.store.list_webhooks(auth.visible(), page).await?;
    let list = List::new(
        page.items.iter().map(WebhookView::from).collect(),
        page.next,
    );
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    operation_id = "webhooks_get", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The webhook.", body = WebhookView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let hook = visible_webhook(&state, &auth, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&WebhookView::from(&hook))?,
    ))
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    operation_id = "webhooks_update",
    params(("id" = String, Path)), request_body = UpdateWebhook,
    responses(
        (status = 200, description = "The webhook, updated.", body = WebhookView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
    body: JsonBody<UpdateWebhook>,
) -> Result<Response, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let before = visible_webhook(&state, &auth, &id).await?;
    let req = body.value;
    let mut after = before.clone();
    if let Some(url) = req.url {
        validate_url(&state, &url)?;
        after.url = url;
    }
    if let Some(types) = req.event_types {
        after.event_types = validate_event_types(Some(types))?;
    }
    if let Some(description) = req.description {
        validate_description(description.as_deref())?;
        after.description = description;
    }
    if let Some(enabled) = req.enabled {
        after.enabled = enabled;
    }
    let now = state.clock.now();
    after.updated_at = now;
    let changes: Vec<(&str, Value, Value)> = fields(&before)
        .into_iter()
        .zip(fields(&after))
        .map(|((name, from), (_, to))| (name, from, to))
        .collect();
    let event = audit_event(
        &auth,
        "webhook.update",
        ("webhook", &id),
        after.keyspace_id.as_deref(),
        diff(&changes),
        now,
    )?;
    state
        .store
        .update_webhook(&after, Change::audited(&event))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&WebhookView::from(&after))?,
    ))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    operation_id = "webhooks_delete", params(("id" = String, Path)),
    responses(
        (status = 204, description = "The webhook was deleted."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let hook = visible_webhook(&state, &auth, &id).await?;
    let event = audit_event(
        &auth,
        "webhook.delete",
        ("webhook", &id),
        hook.keyspace_id.as_deref(),
        created(&[("url", json!(hook.url))]),
        state.clock.now(),
    )?;
    state
        .store
        .delete_webhook(&id, Change::audited(&event))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    operation_id = "webhook_deliveries_list",
    params(("id" = String, Path), DeliveryParams),
    responses(
        (status = 200, description = "A page of the webhook's deliveries.",
            body = List<DeliveryView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let status = params
        .status
        .as_deref()
        .map(|s| {
            DeliveryStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "status must be pending, delivered or failed",
                )
            })
        })
        .transpose()?;
    let page: PageRequest = page_request(params.limit, params.cursor.as_deref())?;
    visible_webhook(&state, &auth, &id).await?;
    let page = state.store.list_deliveries(&id, status, page).await?;
    let list = List::new(
        page.items
            .iter()
            .map(|d| DeliveryView::new(d, None))
            .collect(),
        page.next,
    );
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries/{delivery_id}", tag = "webhooks",
    operation_id = "webhook_deliveries_get",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses(
        (status = 200, description = "The delivery, with every attempt.", body = DeliveryView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delivery(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath((id, delivery_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let (_, found) = visible_delivery(&state, &auth, &id, &delivery_id).await?;
    let attempts = state.store.delivery_attempts(&delivery_id).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&DeliveryView::new(&found, Some(&attempts)))?,
    ))
}

async fn visible_delivery(
    state: &AppState,
    auth: &RootAuth,
    id: &str,
    delivery_id: &str,
) -> Result<(Webhook, Delivery), ApiError> {
    let hook = visible_webhook(state, auth, id).await?;
    if !ids::is_plausible("dlv", delivery_id) {
        return Err(ApiError::NotFound);
    }
    let delivery = state
        .store
        .delivery(id, delivery_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((hook, delivery))
}

/// Puts a delivery back in the queue, due now, with a fresh retry period (whatever its
/// status: a delivered event can be sent again, under the same `webhook-id`).
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/resend", tag = "webhooks",
    operation_id = "webhook_deliveries_resend",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses(
        (status = 202, description = "The delivery, queued to be sent again now.",
            body = DeliveryView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn resend(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath((id, delivery_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let (hook, found) = visible_delivery(&state, &auth, &id, &delivery_id).await?;
    let now_ms = state.clock.now_micros() / 1_000;
    let event = audit_event(
        &auth,
        "webhook.resend",
        ("webhook", &id),
        hook.keyspace_id.as_deref(),
        created(&[
            ("delivery_id", json!(delivery_id)),
            ("event_id", json!(found.event_id)),
        ]),
        state.clock.now(),
    )?;
    state
        .store
        .resend_delivery(&id, &delivery_id, now_ms, Change::audited(&event))
        .await?;
    let after = state
        .store
        .delivery(&id, &delivery_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        to_body(&DeliveryView::new(&after, None))?,
    ))
}
