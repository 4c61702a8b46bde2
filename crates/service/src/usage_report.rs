//! Reading usage back: verifications by outcome per key, owner or keyspace, in minute,
//! hour or day buckets; and totals for many keys at once (a dashboard's table). The
//! counting itself is [`crate::usage`].
//!
//! Counts reach the database within `usage_flush_interval_ms` of the verification.
//! Each granularity is kept for its own retention (`usage_*_retention_*`); buckets
//! older than that read as zero, so totals read the finest granularity still kept for
//! their start.

use std::collections::BTreeMap;

use keyhaven_core::KeyId;
use keyhaven_store::{Granularity, Timestamp, UsageRow, UsageTarget};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::actor::Actor;
use crate::error::{Result, ServiceError};
use crate::service::Service;
use crate::validate::query_time;
use crate::{keys, keyspaces, owners};

/// Most buckets one series answers with.
pub const MAX_BUCKETS: i64 = 1_500;
/// Most keys one totals call answers for.
pub const MAX_KEYS: usize = 100;

#[derive(Debug, Default, Deserialize, IntoParams)]
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

/// Counts by outcome: verify codes, plus `WRONG_SECRET` (the key id was presented with a
/// wrong secret; the caller was told NOT_FOUND, or RATE_LIMITED once such failures were
/// over budget). Outcomes with no verification are left out.
pub type Counts = BTreeMap<String, u64>;

/// One bucket of a series: its start (Unix seconds) and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCounts {
    pub start: i64,
    pub counts: Counts,
}

/// Every bucket of `[from, to)` (Unix seconds, aligned), oldest first, empty ones too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub granularity: Granularity,
    pub from: i64,
    pub to: i64,
    pub buckets: Vec<BucketCounts>,
    pub totals: Counts,
}

/// One key's counts over a totals range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCounts {
    pub key_id: String,
    pub counts: Counts,
    pub last_used_at: Option<Timestamp>,
}

/// Totals of the listed keys the actor may see, read from `granularity` buckets over
/// `[from, to)` (aligned to them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub granularity: Granularity,
    pub from: i64,
    pub to: i64,
    pub keys: Vec<KeyCounts>,
}

fn granularity(param: Option<&str>) -> Result<Granularity> {
    match param {
        None => Ok(Granularity::Hour),
        Some(g) => Granularity::parse(g).ok_or_else(|| {
            ServiceError::bad_request("invalid_query", "granularity must be minute, hour or day")
        }),
    }
}

fn instant(name: &str, value: Option<&str>) -> Result<Option<i64>> {
    Ok(query_time(name, value)?.map(Timestamp::unix_timestamp))
}

fn from_before_to() -> ServiceError {
    ServiceError::bad_request("invalid_query", "from must be before to")
}

/// The aligned `[from, to)` a request asks for.
fn range(
    g: Granularity,
    from: Option<&str>,
    to: Option<&str>,
    now: i64,
    default_buckets: i64,
) -> Result<(i64, i64)> {
    let step = g.seconds();
    let to = instant("to", to)?.unwrap_or(now);
    // Rounded up: the bucket holding `to` is included.
    let to = g.floor(to) + step;
    let from = match instant("from", from)? {
        Some(from) => g.floor(from),
        None => to - default_buckets * step,
    };
    if from >= to {
        return Err(from_before_to());
    }
    if (to - from) / step > MAX_BUCKETS {
        return Err(ServiceError::bad_request(
            "invalid_query",
            format!(
                "at most {MAX_BUCKETS} buckets per request: narrow the range or use a \
                 coarser granularity"
            ),
        ));
    }
    Ok((from, to))
}

fn series_of(g: Granularity, from: i64, to: i64, rows: &[UsageRow]) -> Series {
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
    let mut buckets = Vec::with_capacity(usize::try_from((to - from) / step).unwrap_or(0));
    let mut start = from;
    while start < to {
        let counts = by_bucket.remove(&start).unwrap_or_default();
        for (outcome, n) in &counts {
            *totals.entry(outcome.clone()).or_default() += n;
        }
        buckets.push(BucketCounts { start, counts });
        start += step;
    }
    Series {
        granularity: g,
        from,
        to,
        buckets,
        totals,
    }
}

/// The usage series of a key, owner or keyspace the actor may see (`NotFound`
/// otherwise; owners need an actor not limited to keyspaces).
#[tracing::instrument(skip_all)]
pub async fn series(
    service: &Service,
    actor: &Actor,
    target: UsageTarget<'_>,
    params: &SeriesParams,
) -> Result<Series> {
    match target {
        UsageTarget::Key(id) => {
            keys::find(service, actor, id).await?;
        }
        UsageTarget::Owner(id) => {
            owners::find(service, actor, id).await?;
        }
        UsageTarget::Keyspace(id) => {
            actor.require_all_owners("keys:read (keyspace usage)")?;
            keyspaces::find(service, actor, id).await?;
        }
    }
    let g = granularity(params.granularity.as_deref())?;
    let default_buckets = match g {
        Granularity::Minute => 60,
        Granularity::Hour => 24,
        Granularity::Day => 30,
    };
    let now = service.clock.now().unix_timestamp();
    let (from, to) = range(
        g,
        params.from.as_deref(),
        params.to.as_deref(),
        now,
        default_buckets,
    )?;
    let rows = service.store.usage_series(target, g, from, to).await?;
    Ok(series_of(g, from, to, &rows))
}

/// Totals of each listed key the actor may see; the others are left out as if they did
/// not exist.
#[tracing::instrument(skip_all)]
pub async fn totals(service: &Service, actor: &Actor, params: &TotalsParams) -> Result<Totals> {
    let mut ids: Vec<&str> = params.key_ids.split(',').map(str::trim).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_KEYS || ids.iter().any(|id| id.is_empty()) {
        return Err(ServiceError::bad_request(
            "invalid_query",
            format!("key_ids must list 1 to {MAX_KEYS} key ids, comma-separated"),
        ));
    }
    let now = service.clock.now().unix_timestamp();
    let to = instant("to", params.to.as_deref())?.unwrap_or(now);
    let from = instant("from", params.from.as_deref())?.unwrap_or(to - 86_400);
    if from >= to {
        return Err(from_before_to());
    }
    // The finest granularity still kept for `from`.
    let g = Granularity::ALL
        .into_iter()
        .find(|g| from >= now.saturating_sub(service.config.usage_retention_secs(*g)))
        .unwrap_or(Granularity::Day);
    let (from, to) = (g.floor(from), g.floor(to - 1) + g.seconds());
    let mut visible = Vec::with_capacity(ids.len());
    for id in ids {
        if KeyId::parse(id).is_none() {
            continue;
        }
        // From the database, not the verify cache: a cached record's last use is as old
        // as the record, and this answer must agree with the key's own (`GET /v1/keys/{id}`).
        if let Some(k) = service.store.key_for_verify(id).await?
            && actor.sees_keyspace(&k.key.keyspace_id)
            && actor.sees_owner(k.key.owner_id.as_deref())
        {
            visible.push(k);
        }
    }
    let key_ids: Vec<String> = visible.iter().map(|k| k.key.key_id.clone()).collect();
    let rows = service.store.usage_totals(&key_ids, g, from, to).await?;
    let keys = visible
        .iter()
        .map(|k| KeyCounts {
            key_id: k.key.key_id.clone(),
            counts: rows
                .iter()
                .filter(|r| r.key_id == k.key.key_id)
                .map(|r| (r.outcome.clone(), r.count))
                .collect(),
            last_used_at: k.key.last_used_at,
        })
        .collect();
    Ok(Totals {
        granularity: g,
        from,
        to,
        keys,
    })
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
        let row = |bucket, outcome: &str, count| UsageRow {
            bucket,
            outcome: outcome.into(),
            count,
        };
        let rows = [
            row(120, "VALID", 3),
            row(120, "REVOKED", 1),
            row(240, "VALID", 2),
        ];
        let s = series_of(Granularity::Minute, 60, 300, &rows);
        let totals: Vec<u64> = s.buckets.iter().map(|b| b.counts.values().sum()).collect();
        assert_eq!(totals, vec![0, 4, 0, 2]);
        assert_eq!(s.totals.values().sum::<u64>(), 6);
        assert_eq!(s.totals.get("VALID"), Some(&5));
    }
}
