//! Usage: verifications by outcome, per key, owner or keyspace, in minute, hour or day
//! buckets; and totals for many keys in one call (a dashboard's table).
//!
//! Counts reach the database within `usage_flush_interval_ms` of the verification. Each
//! granularity is kept for its own retention (`usage_*_retention_*`); buckets older
//! than that read as zero.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_core::KeyId;
use keyhaven_store::{Granularity, Timestamp, UsageRow, UsageTarget};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::keyspaces::{rfc3339, visible_keyspace};
use super::*;
use crate::auth::{RootAuth, Scope};
use crate::error::ClientError;
use crate::extract::{ApiPath, ApiQuery};

/// Most buckets one series answers with.
pub const MAX_BUCKETS: i64 = 1_500;
/// Most keys one totals call answers for.
pub const MAX_KEYS: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SeriesParams {
    /// RFC 3339; the first bucket holds this instant (default: 24 buckets before `to`
    /// for hours, 60 for minutes, 30 for days).
    pub from: Option<String>,
    /// RFC 3339; buckets end here, rounded up to a bucket boundary (default: now).
    pub to: Option<String>,
    /// `minute`, `hour` (default) or `day`.
    pub granularity: Option<String>,
}

/// Counts by outcome: verify codes, plus `WRONG_SECRET` (the key id was presented with a
/// wrong secret; the caller was told NOT_FOUND, or RATE_LIMITED once such failures were
/// over budget). Outcomes with no verification are left out.
pub type Counts = BTreeMap<String, u64>;

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

fn granularity(param: Option<&str>) -> Result<Granularity, ApiError> {
    match param {
        None => Ok(Granularity::Hour),
        Some(g) => Granularity::parse(g).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "granularity must be minute, hour or day")
        }),
    }
}

fn instant(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            Timestamp::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| {
                    ApiError::bad_request("invalid_query", format!("{name} must be RFC 3339"))
                })
        })
        .transpose()
}

/// The aligned `[from, to)` a request asks for.
fn range(
    g: Granularity,
    from: Option<&str>,
    to: Option<&str>,
    now: i64,
    default_buckets: i64,
) -> Result<(i64, i64), ApiError> {
    let step = g.seconds();
    let to = instant("to", to)?.unwrap_or(now);
    // Rounded up: the bucket holding `to` is included.
    let to = g.floor(to) + step;
    let from = match instant("from", from)? {
        Some(from) => g.floor(from),
        None => to - default_buckets * step,
    };
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_query",
            "from must be before to",
        ));
    }
    if (to - from) / step > MAX_BUCKETS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "at most {MAX_BUCKETS} buckets per request: narrow the range or use a \
                 coarser granularity"
            ),
        ));
    }
    Ok((from, to))
}

fn series(g: Granularity, from: i64, to: i64, rows: &[UsageRow]) -> UsageSeries {
    let step = g.seconds();
    let mut by_bucket: BTreeMap<i64, Counts> = BTreeMap::new();
    for row in rows {
        *by_bucket
            .entry(row.bucket)
            .or_default()
            .entry(row.outcome.clone())
            .or_default() += row.count;
    }
    let mut totals = Counts::new();
    let mut data = Vec::with_capacity(usize::try_from((to - from) / step).unwrap_or(0));
    let mut bucket = from;
    while bucket < to {
        let counts = by_bucket.remove(&bucket).unwrap_or_default();
        for (outcome, n) in &counts {
            *totals.entry(outcome.clone()).or_default() += n;
        }
        data.push(Bucket {
            start: rfc3339(keyhaven_store::from_unix(bucket)),
            total: counts.values().sum(),
            counts,
        });
        bucket += step;
    }
    UsageSeries {
        granularity: g.as_str().to_owned(),
        from: rfc3339(keyhaven_store::from_unix(from)),
        to: rfc3339(keyhaven_store::from_unix(to)),
        total: totals.values().sum(),
        totals,
        data,
    }
}

async fn answer(
    state: &AppState,
    target: UsageTarget<'_>,
    params: &SeriesParams,
) -> Result<Response, ApiError> {
    let g = granularity(params.granularity.as_deref())?;
    let default_buckets = match g {
        Granularity::Minute => 60,
        Granularity::Hour => 24,
        Granularity::Day => 30,
    };
    let now = state.clock.now().unix_timestamp();
    let (from, to) = range(
        g,
        params.from.as_deref(),
        params.to.as_deref(),
        now,
        default_buckets,
    )?;
    let rows = state.store.usage_series(target, g, from, to).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&series(g, from, to, &rows))?,
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
    super::keys::visible_key(&state, &auth, &key_id).await?;
    answer(&state, UsageTarget::Key(&key_id), &params).await
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
    super::owners::refuse_restricted(&auth)?;
    if !ids::is_plausible("own", &id) || state.store.owner(&id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    answer(&state, UsageTarget::Owner(&id), &params).await
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
    visible_keyspace(&state, &auth, &id).await?;
    answer(&state, UsageTarget::Keyspace(&id), &params).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TotalsParams {
    /// Comma-separated key ids, at most 100. Ids of keys that do not exist (or that
    /// this root key may not see) are left out of the answer.
    pub key_ids: String,
    /// RFC 3339 (default: 24 hours before `to`).
    pub from: Option<String>,
    /// RFC 3339 (default: now).
    pub to: Option<String>,
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
    let mut ids: Vec<&str> = params.key_ids.split(',').map(str::trim).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_KEYS || ids.iter().any(|id| id.is_empty()) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("key_ids must list 1 to {MAX_KEYS} key ids, comma-separated"),
        ));
    }
    let now = state.clock.now().unix_timestamp();
    let to = instant("to", params.to.as_deref())?.unwrap_or(now);
    let from = instant("from", params.from.as_deref())?.unwrap_or(to - 86_400);
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_query",
            "from must be before to",
        ));
    }
    // The finest granularity still kept for `from`.
    let g = Granularity::ALL
        .into_iter()
        .find(|g| from >= now.saturating_sub(state.config.usage_retention_secs(*g)))
        .unwrap_or(Granularity::Day);
    let (from, to) = (g.floor(from), g.floor(to - 1) + g.seconds());
    // Only keys this root key sees; the others are left out as if they did not exist.
    let mut visible = Vec::with_capacity(ids.len());
    for id in ids {
        if KeyId::parse(id).is_none() {
            continue;
        }
        if let Some(k) = state.cache.get(state.store.as_ref(), id).await?
            && auth.sees_keyspace(&k.key.keyspace_id)
        {
            visible.push(k);
        }
    }
    let key_ids: Vec<String> = visible.iter().map(|k| k.key.key_id.clone()).collect();
    let rows = state.store.usage_totals(&key_ids, g, from, to).await?;
    let data = visible
        .iter()
        .map(|k| {
            let counts: Counts = rows
                .iter()
                .filter(|r| r.key_id == k.key.key_id)
                .map(|r| (r.outcome.clone(), r.count))
                .collect();
            KeyTotals {
                key_id: k.key.key_id.clone(),
                total: counts.values().sum(),
                counts,
                last_used_at: k.key.last_used_at.map(rfc3339),
            }
        })
        .collect();
    let body = UsageTotals {
        granularity: g.as_str().to_owned(),
        from: rfc3339(keyhaven_store::from_unix(from)),
        to: rfc3339(keyhaven_store::from_unix(to)),
        data,
    };
    Ok(json_response(StatusCode::OK, to_body(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_align_to_buckets_and_are_bounded() {
        let now = 1_795_463_901; // 2026-11-23T19:58:21Z
        let (from, to) = range(Granularity::Hour, None, None, now, 24).unwrap();
        assert_eq!(to % 3_600, 0);
        assert!(to > now && to - now <= 3_600);
        assert_eq!(to - from, 24 * 3_600);
        let (from, to) = range(
            Granularity::Minute,
            Some("2026-11-23T10:00:30Z"),
            Some("2026-11-23T10:02:00Z"),
            now,
            60,
        )
        .unwrap();
        assert_eq!((to - from) / 60, 3, "10:00, 10:01 and 10:02");
        assert!(
            range(
                Granularity::Minute,
                Some("2026-01-01T00:00:00Z"),
                None,
                now,
                60
            )
            .is_err()
        );
        assert!(
            range(
                Granularity::Day,
                Some("2026-11-24T00:00:00Z"),
                Some("2026-11-23T00:00:00Z"),
                now,
                30
            )
            .is_err()
        );
        assert!(range(Granularity::Day, Some("yesterday"), None, now, 30).is_err());
    }

    #[test]
    fn a_series_lists_every_bucket_and_adds_up() {
        let rows = [
            UsageRow {
                bucket: 120,
                outcome: "VALID".into(),
                count: 3,
            },
            UsageRow {
                bucket: 120,
                outcome: "REVOKED".into(),
                count: 1,
            },
            UsageRow {
                bucket: 240,
                outcome: "VALID".into(),
                count: 2,
            },
        ];
        let s = series(Granularity::Minute, 60, 300, &rows);
        let totals: Vec<u64> = s.data.iter().map(|b| b.total).collect();
        assert_eq!(totals, vec![0, 4, 0, 2]);
        assert_eq!(s.total, 6);
        assert_eq!(s.totals.get("VALID"), Some(&5));
    }
}
