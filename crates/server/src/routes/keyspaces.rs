//! `/v1/keyspaces`: families of keys sharing a prefix. The reserved root keyspace is
//! invisible here; a keyspace-restricted root key sees only its own keyspaces.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_core::Prefix;
use keyhaven_store::{AlertThresholds, Change, Keyspace, KeyspacePolicy};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::*;
use crate::auth::{RootAuth, Scope};
use crate::error::ClientError;
use crate::extract::{ApiPath, ApiQuery, JsonBody};
use keyhaven_service::limits::spec::{RateLimitBody, rate_limit_views, rate_limits};

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
    /// Default rate limits of every key in the keyspace.
    pub ratelimits: Vec<RateLimitBody>,
    /// Anomaly alert thresholds (`null` fields take the server's defaults).
    pub alerts: AlertsBody,
    pub created_at: String,
    pub updated_at: String,
}

/// When a key of the keyspace raises a `usage.anomaly` event. Judged per closed minute
/// from the flushed usage counters; one event per episode.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsBody {
    /// A minute with more than this many times the key's own baseline (its mean rate
    /// over the preceding `alert_baseline_minutes`) is a spike; 2-10000.
    #[schema(minimum = 2, maximum = 10000)]
    pub spike_factor: Option<u32>,
    /// Minutes with fewer verifications are never a spike; 1-10000000.
    #[schema(minimum = 1, maximum = 10000000)]
    pub spike_min_per_minute: Option<u64>,
    /// This many wrong secrets for one key id in a minute is a burst; 1-10000000.
    #[schema(minimum = 1, maximum = 10000000)]
    pub failed_per_minute: Option<u64>,
}

impl AlertsBody {
    fn thresholds(self) -> Result<AlertThresholds, ApiError> {
        const MAX: u64 = 10_000_000;
        if self
            .spike_factor
            .is_some_and(|f| !(2..=10_000).contains(&f))
        {
            return Err(ApiError::invalid(
                "alerts.spike_factor must be between 2 and 10000",
            ));
        }
        for (name, v) in [
            ("spike_min_per_minute", self.spike_min_per_minute),
            ("failed_per_minute", self.failed_per_minute),
        ] {
            if v.is_some_and(|v| !(1..=MAX).contains(&v)) {
                return Err(ApiError::invalid(format!(
                    "alerts.{name} must be between 1 and {MAX}"
                )));
            }
        }
        Ok(AlertThresholds {
            spike_factor: self.spike_factor,
            spike_min_per_minute: self.spike_min_per_minute,
            failed_per_minute: self.failed_per_minute,
        })
    }

    fn of(t: &AlertThresholds) -> Self {
        Self {
            spike_factor: t.spike_factor,
            spike_min_per_minute: t.spike_min_per_minute,
            failed_per_minute: t.failed_per_minute,
        }
    }
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
            ratelimits: rate_limit_views(&k.ratelimits),
            alerts: AlertsBody::of(&k.alerts),
            created_at: rfc3339(k.created_at),
            updated_at: rfc3339(k.updated_at),
        }
    }
}

/// RFC 3339 in UTC, `2026-11-22T10:00:00Z`.
pub fn rfc3339(t: keyhaven_store::Timestamp) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyspace {
    /// Human-readable name, 1-200 characters without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Key prefix: 1-20 characters `[a-z][a-z0-9_]*`, unique; `kh` and `kh_*` are
    /// reserved.
    #[schema(min_length = 1, max_length = 20, pattern = "^[a-z][a-z0-9_]*$")]
    pub prefix: String,
    /// Keys stop verifying (EXPIRED) this many seconds after creation; 1 second to 100
    /// years.
    #[schema(minimum = 1, maximum = 3162240000_i64)]
    pub max_key_age_seconds: Option<i64>,
    /// Grace period of a rotation that names none; 0 to 100 years.
    #[schema(minimum = 0, maximum = 3162240000_i64)]
    pub default_grace_seconds: Option<i64>,
    /// Keys this close to their expiry are listed as expiring (default 7 days); 1
    /// second to 100 years.
    #[schema(minimum = 1, maximum = 3162240000_i64)]
    pub expiry_warning_seconds: Option<i64>,
    /// Default rate limits of every key (a key's or owner's limit of the same name
    /// takes precedence); at most 16.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub ratelimits: Vec<RateLimitBody>,
    #[serde(default)]
    pub alerts: AlertsBody,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyspace {
    /// 1-200 characters without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// 1 second to 100 years; `null` removes the limit.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3162240000_i64)]
    pub max_key_age_seconds: Option<Option<i64>>,
    /// 0 to 100 years; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 3162240000_i64)]
    pub default_grace_seconds: Option<Option<i64>>,
    /// 1 second to 100 years; `null` restores the default (7 days).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3162240000_i64)]
    pub expiry_warning_seconds: Option<Option<i64>>,
    /// Replaces the default rate limits (`[]` removes them); at most 16.
    #[schema(max_items = 16)]
    pub ratelimits: Option<Vec<RateLimitBody>>,
    /// Replaces the alert thresholds (fields left out take the server's defaults).
    pub alerts: Option<AlertsBody>,
}

/// Longest policy duration: 100 years.
pub const MAX_POLICY_SECONDS: i64 = 100 * 366 * 24 * 3600;

/// Each policy duration is 1 second to 100 years (grace may be 0).
fn validate_policy(p: &KeyspacePolicy) -> Result<(), ApiError> {
    const MAX: i64 = MAX_POLICY_SECONDS;
    let check = |name: &str, v: Option<i64>, min: i64| match v {
        Some(v) if !(min..=MAX).contains(&v) => Err(ApiError::invalid(format!(
            "{name} must be between {min} and {MAX} seconds"
        ))),
        _ => Ok(()),
    };
    check("max_key_age_seconds", p.max_key_age, 1)?;
    check("default_grace_seconds", p.default_grace, 0)?;
    check("expiry_warning_seconds", p.expiry_warning, 1)
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

fn validate_prefix(prefix: &str) -> Result<(), ApiError> {
    Prefix::new(prefix).map_err(|e| ApiError::invalid(format!("prefix: {e}")))?;
    if prefix.starts_with("kh_") || prefix == "kh" {
        return Err(ApiError::invalid(
            "prefix: `kh` and `kh_*` are reserved for Keyhaven",
        ));
    }
    Ok(())
}

/// A keyspace this root key may see, or 404.
pub async fn visible_keyspace(
    state: &AppState,
    auth: &RootAuth,
    id: &str,
) -> Result<Keyspace, ApiError> {
    if !ids::is_plausible("ks", id) || !auth.sees_keyspace(id) {
        return Err(ApiError::NotFound);
    }
    state.store.keyspace(id).await?.ok_or(ApiError::NotFound)
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
    if auth.is_restricted() {
        // A root key limited to some keyspaces cannot widen its own reach.
        return Err(ApiError::MissingScope(
            "keyspaces:write (unrestricted root key)",
        ));
    }
    let idem = Idempotent::new(&state, &auth, idem, body.request_hash());
    if let Some(replay) = idem.replay().await? {
        return Ok(replay);
    }
    let req = body.value;
    validate_name("name", &req.name)?;
    validate_prefix(&req.prefix)?;
    let now = state.clock.now();
    let policy = KeyspacePolicy {
        max_key_age: req.max_key_age_seconds,
        default_grace: req.default_grace_seconds,
        expiry_warning: req.expiry_warning_seconds,
    };
    validate_policy(&policy)?;
    let ks = Keyspace {
        id: ids::new_id("ks")?,
        name: req.name,
        prefix: req.prefix,
        policy,
        ratelimits: rate_limits(req.ratelimits)?,
        alerts: req.alerts.thresholds()?,
        created_at: now,
        updated_at: now,
    };
    let body = to_body(&KeyspaceView::from(&ks))?;
    let event = audit_event(
        &auth,
        "keyspace.create",
        ("keyspace", &ks.id),
        Some(&ks.id),
        created(&[
            ("name", json!(ks.name)),
            ("prefix", json!(ks.prefix)),
            ("max_key_age_seconds", json!(ks.policy.max_key_age)),
            ("default_grace_seconds", json!(ks.policy.default_grace)),
            ("expiry_warning_seconds", json!(ks.policy.expiry_warning)),
            (
                "ratelimits",
                if ks.ratelimits.is_empty() {
                    Value::Null
                } else {
                    json!(ks.ratelimits)
                },
            ),
            (
                "alerts",
                if ks.alerts == AlertThresholds::default() {
                    Value::Null
                } else {
                    json!(AlertsBody::of(&ks.alerts))
                },
            ),
        ]),
        now,
    )?;
    let record = idem.record(StatusCode::CREATED, &body, now)?;
    let change = Change {
        audit: &event,
        idempotency: record.as_ref(),
    };
    match state.store.create_keyspace(&ks, change).await {
        Ok(()) => Ok(json_response(StatusCode::CREATED, body)),
        Err(e) => idem.on_error(e).await,
    }
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
    let page = state.store.list_keyspaces(auth.visible(), page).await?;
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
    let ks = visible_keyspace(&state, &auth, &id).await?;
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
    let before = visible_keyspace(&state, &auth, &id).await?;
    let mut after = before.clone();
    let req = body.value;
    if let Some(name) = req.name {
        validate_name("name", &name)?;
        after.name = name;
    }
    if let Some(v) = req.max_key_age_seconds {
        after.policy.max_key_age = v;
    }
    if let Some(v) = req.default_grace_seconds {
        after.policy.default_grace = v;
    }
    if let Some(v) = req.expiry_warning_seconds {
        after.policy.expiry_warning = v;
    }
    if let Some(v) = req.ratelimits {
        after.ratelimits = rate_limits(v)?;
    }
    if let Some(v) = req.alerts {
        after.alerts = v.thresholds()?;
    }
    validate_policy(&after.policy)?;
    let now = state.clock.now();
    after.updated_at = now;
    let event = audit_event(
        &auth,
        "keyspace.update",
        ("keyspace", &id),
        Some(&id),
        diff(&[
            ("name", json!(before.name), json!(after.name)),
            (
                "max_key_age_seconds",
                json!(before.policy.max_key_age),
                json!(after.policy.max_key_age),
            ),
            (
                "default_grace_seconds",
                json!(before.policy.default_grace),
                json!(after.policy.default_grace),
            ),
            (
                "expiry_warning_seconds",
                json!(before.policy.expiry_warning),
                json!(after.policy.expiry_warning),
            ),
            (
                "ratelimits",
                json!(before.ratelimits),
                json!(after.ratelimits),
            ),
            (
                "alerts",
                json!(AlertsBody::of(&before.alerts)),
                json!(AlertsBody::of(&after.alerts)),
            ),
        ]),
        now,
    )?;
    state
        .store
        .update_keyspace(&after, Change::audited(&event))
        .await?;
    state.cache.invalidate_all();
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
    let ks = visible_keyspace(&state, &auth, &id).await?;
    let now = state.clock.now();
    let event = audit_event(
        &auth,
        "keyspace.delete",
        ("keyspace", &id),
        Some(&id),
        created(&[("name", json!(ks.name)), ("prefix", json!(ks.prefix))]),
        now,
    )?;
    state
        .store
        .delete_keyspace(&id, Change::audited(&event))
        .await?;
    state.cache.invalidate_all();
    Ok(StatusCode::NO_CONTENT)
}
