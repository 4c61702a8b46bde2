//! Usage: verifications by outcome, per key, owner or keyspace, in minute, hour or day
//! buckets; and totals for many keys in one call (a dashboard's table). The reads are
//! [`keyhaven_service::usage_report`].
//!
//! Counts reach the database within `usage_flush_interval_ms` of the verification. Each
//! granularity is kept for its own retention (`usage_*_retention_*`); buckets older
//! than that read as zero.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_service::usage_report::{self, Counts, Series, SeriesParams, TotalsParams};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::{UsageTarget, from_unix};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::{ApiPath, ApiQuery};
use crate::respond::{json_response, to_body};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Bucket {
    /// Start of the bucket.
    pub start: String,
    pub total: u64,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub counts: Counts,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageSeries {
    pub granularity: String,
    pub from: String,
    pub to: String,
    /// Every bucket of the range, oldest first (empty ones too).
    pub data: Vec<Bucket>,
    pub total: u64,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub totals: Counts,
}

impl From<&Series> for UsageSeries {
    fn from(s: &Series) -> Self {
        Self {
            granularity: s.granularity.as_str().to_owned(),
            from: rfc3339(from_unix(s.from)),
            to: rfc3339(from_unix(s.to)),
            data: s
                .buckets
                .iter()
                .map(|b| Bucket {
                    start: rfc3339(from_unix(b.start)),
                    total: b.counts.values().sum(),
                    counts: b.counts.clone(),
                })
                .collect(),
            total: s.totals.values().sum(),
            totals: s.totals.clone(),
        }
    }
}

/// A series, answered.
async fn answer(
    state: &AppState,
    auth: &RootAuth,
    target: UsageTarget<'_>,
    params: &SeriesParams,
) -> Result<Response, ApiError> {
    let series = usage_report::series(state, auth, target, params).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&UsageSeries::from(&series))?,
    ))
}

#[utoipa::path(get, path = "/v1/keys/{key_id}/usage", tag = "usage", operation_id = "key_usage_get",
    params(("key_id" = String, Path), SeriesParams),
    responses(
        (status = 200, description = "The key's verifications by outcome, per bucket.",
            body = UsageSeries),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn key(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<SeriesParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysRead)?;
    answer(&state, &auth, UsageTarget::Key(&key_id), &params).await
}

#[utoipa::path(get, path = "/v1/owners/{id}/usage", tag = "usage", operation_id = "owner_usage_get",
    params(("id" = String, Path), SeriesParams),
    responses(
        (status = 200, description = "The owner's verifications by outcome, per bucket.",
            body = UsageSeries),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn owner(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<SeriesParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersRead)?;
    auth.require(Scope::KeysRead)?;
    answer(&state, &auth, UsageTarget::Owner(&id), &params).await
}

#[utoipa::path(get, path = "/v1/keyspaces/{id}/usage", tag = "usage",
    operation_id = "keyspace_usage_get",
    params(("id" = String, Path), SeriesParams),
    responses(
        (status = 200, description = "The keyspace's verifications by outcome, per bucket.",
            body = UsageSeries),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn keyspace(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<SeriesParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysRead)?;
    answer(&state, &auth, UsageTarget::Keyspace(&id), &params).await
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyTotals {
    pub key_id: String,
    pub total: u64,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub counts: Counts,
    pub last_used_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageTotals {
    /// The buckets the totals were read from: the finest whose retention covers
    /// `from`. `from` and `to` are aligned to it.
    pub granularity: String,
    pub from: String,
    pub to: String,
    pub data: Vec<KeyTotals>,
}

#[utoipa::path(get, path = "/v1/keys/usage", tag = "usage",
    operation_id = "usage_totals_get", params(TotalsParams),
    responses(
        (status = 200, body = UsageTotals,
            description = "Verification totals of each listed key this root key may see."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn totals(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<TotalsParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysRead)?;
    let totals = usage_report::totals(&state, &auth, &params).await?;
    let data = totals
        .keys
        .into_iter()
        .map(|k| KeyTotals {
            key_id: k.key_id,
            total: k.counts.values().sum(),
            counts: k.counts,
            last_used_at: k.last_used_at.map(rfc3339),
        })
        .collect();
    let body = UsageTotals {
        granularity: totals.granularity.as_str().to_owned(),
        from: rfc3339(from_unix(totals.from)),
        to: rfc3339(from_unix(totals.to)),
        data,
    };
    Ok(json_response(StatusCode::OK, to_body(&body)?))
}
