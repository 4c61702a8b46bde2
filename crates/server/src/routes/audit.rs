//! `GET /v1/audit-events`: every admin mutation, newest first; `GET /v1/events`: the
//! event log. A keyspace-restricted root key sees only entries of its keyspaces (owner
//! events have no keyspace and are shown to unrestricted root keys only). The reads are
//! [`keyhaven_service::audit`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::audit::{self, AuditQuery, EventQuery};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::{AuditEvent, Event};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::ApiQuery;
use crate::pagination::{List, page_request};
use crate::respond::{json_response, to_body};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    pub id: String,
    pub occurred_at: String,
    /// Key id of the root key that made the change, or `cli`.
    pub actor: String,
    /// `keyspace.create`, `key.revoke`, …
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub keyspace_id: Option<String>,
    /// Fields set or changed (`{field: {from, to}}` for updates); never a secret.
    pub changes: Map<String, Value>,
    pub client_ip: Option<String>,
}

impl From<&AuditEvent> for AuditEventView {
    fn from(e: &AuditEvent) -> Self {
        Self {
            id: e.id.clone(),
            occurred_at: rfc3339(e.occurred_at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target_type: e.target_type.clone(),
            target_id: e.target_id.clone(),
            keyspace_id: e.keyspace_id.clone(),
            changes: e.changes.clone(),
            client_ip: e.client_ip.clone(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub keyspace_id: Option<String>,
    pub target_id: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    /// RFC 3339; events at or after.
    pub since: Option<String>,
    /// RFC 3339; events before.
    pub until: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit-events", tag = "audit",
    operation_id = "audit_events_list", params(ListParams),
    responses(
        (status = 200, description = "A page of audit events, newest first.",
            body = List<AuditEventView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::AuditRead)?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let query = AuditQuery {
        keyspace_id: params.keyspace_id,
        target_id: params.target_id,
        action: params.action,
        actor: params.actor,
        since: params.since,
        until: params.until,
    };
    let page = audit::list(&state, &auth, &query, page).await?;
    let list = List::new(
        page.items.iter().map(AuditEventView::from).collect(),
        page.next,
    );
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

/// An event of the append-only event log: `key.created`, `key.rotated`, `key.revoked`,
/// `key.expiring`, `key.leaked`, `usage.anomaly`, `ratelimit.exceeded` or
/// `verify.revoked_key_used`. Webhooks deliver `payload` as the message's `data`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Also the `webhook-id` of its deliveries.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub key_id: Option<String>,
    pub keyspace_id: Option<String>,
    pub payload: Map<String, Value>,
    pub created_at: String,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.clone(),
            kind: e.kind.clone(),
            key_id: e.key_id.clone(),
            keyspace_id: e.keyspace_id.clone(),
            payload: e.payload.clone(),
            created_at: rfc3339(e.created_at),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only events of this type, e.g. `key.revoked`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    pub key_id: Option<String>,
    pub keyspace_id: Option<String>,
    /// RFC 3339; events at or after.
    pub since: Option<String>,
    /// RFC 3339; events before.
    pub until: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", tag = "audit",
    operation_id = "events_list", params(EventParams),
    responses(
        (status = 200, description = "A page of the event log.", body = List<EventView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn events(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::AuditRead)?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let query = EventQuery {
        kind: params.kind,
        key_id: params.key_id,
        keyspace_id: params.keyspace_id,
        since: params.since,
        until: params.until,
    };
    let page = audit::events(&state, &auth, &query, page).await?;
    let data = page.items.iter().map(EventView::from).collect();
    Ok(json_response(
        StatusCode::OK,
        to_body(&List::new(data, page.next))?,
    ))
}
