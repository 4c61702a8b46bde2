//! `/v1/webhooks`: endpoints that receive events, their delivery log and manual
//! re-sends. The signing secret is returned once, at creation; it is stored sealed.
//!
//! A webhook with a `keyspace_id` receives only that keyspace's events; one without
//! receives every event and can be managed only by an unrestricted root key. The
//! operations are [`keyhaven_service::webhooks`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::validate::rfc3339;
use keyhaven_service::webhooks::{self, CreateWebhook, UpdateWebhook};
use keyhaven_store::{Attempt, Delivery, DeliveryStatus, Webhook};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiPath, ApiQuery, IdempotencyKey, JsonBody};
use crate::pagination::{List, page_request};
use crate::respond::{answer, json_response, render, to_body};
use crate::state::AppState;

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
    let idem = Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = webhooks::create(&state, &auth, body.value, &idem, |hook, secret| {
        let mut created = CreatedWebhook {
            secret: secret.expose_secret().to_owned(),
            webhook: WebhookView::from(hook),
        };
        let rendered = render(StatusCode::CREATED, &created);
        zeroize::Zeroize::zeroize(&mut created.secret);
        rendered
    })
    .await?;
    Ok(answer(done))
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
    let page = webhooks::list(&state, &auth, page).await?;
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
    let hook = webhooks::find(&state, &auth, &id).await?;
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
    let after = webhooks::update(&state, &auth, &id, body.value).await?;
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
    webhooks::delete(&state, &auth, &id).await?;
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
    let status = webhooks::deliveries::status(params.status.as_deref())?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let page = webhooks::deliveries::list(&state, &auth, &id, status, page).await?;
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
    let (found, attempts) = webhooks::deliveries::get(&state, &auth, &id, &delivery_id).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&DeliveryView::new(&found, Some(&attempts)))?,
    ))
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
    let after = webhooks::deliveries::resend(&state, &auth, &id, &delivery_id).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        to_body(&DeliveryView::new(&after, None))?,
    ))
}
