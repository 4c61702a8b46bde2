//! `POST /v1/keys/verify`: the hot path. See [`crate::verify`] for the steps; this
//! handler adds the response shape, usage counting and metrics.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_core::VerifyCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::keyspaces::rfc3339;
use super::*;
use crate::auth::Scope;
use crate::extract::JsonBody;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The whole key as presented by the caller.
    #[schema(value_type = String)]
    pub key: SecretString,
    /// Scopes the key must hold; otherwise the answer is INSUFFICIENT_SCOPES.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyRotation {
    /// The key that replaced this one: move the caller to it.
    pub successor_key_id: String,
    /// When this key stops verifying.
    pub grace_until: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyOwner {
    pub id: String,
    pub external_id: Option<String>,
}

/// Always 200. Fields beyond `valid` and `code` are filled only once the secret matched
/// (for NOT_FOUND and MALFORMED they are `null`, revealing nothing about any key); the
/// shape is the same for every code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    /// VALID, NOT_FOUND, MALFORMED, EXPIRED, REVOKED, DISABLED or INSUFFICIENT_SCOPES.
    pub code: String,
    pub key_id: Option<String>,
    pub keyspace_id: Option<String>,
    /// The keyspace's name.
    pub keyspace: Option<String>,
    pub owner: Option<VerifyOwner>,
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub meta: Option<Map<String, Value>>,
    pub expires_at: Option<String>,
    /// Set for a rotated key that still verifies during its grace period.
    pub rotation: Option<VerifyRotation>,
    /// Rate limits applied to this call (none yet).
    pub ratelimits: Vec<Value>,
    /// Remaining uses under a quota; `null` when the key has none.
    pub remaining: Option<u64>,
}

/// The answer as serialized: borrows from the cached record, so a verify copies no
/// scopes or meta. Same JSON as [`VerifyResponse`] (which documents it and parses it).
#[derive(Serialize)]
struct VerifyAnswer<'a> {
    valid: bool,
    code: &'static str,
    key_id: Option<&'a str>,
    keyspace_id: Option<&'a str>,
    keyspace: Option<&'a str>,
    owner: Option<OwnerRef<'a>>,
    name: Option<&'a str>,
    scopes: Option<&'a [String]>,
    meta: Option<&'a Map<String, Value>>,
    expires_at: Option<String>,
    rotation: Option<RotationRef<'a>>,
    ratelimits: [(); 0],
    remaining: Option<u64>,
}

#[derive(Serialize)]
struct RotationRef<'a> {
    successor_key_id: &'a str,
    grace_until: String,
}

#[derive(Serialize)]
struct OwnerRef<'a> {
    id: &'a str,
    external_id: Option<&'a str>,
}

/// Per-code counters and the latency histogram, registered once: looking a metric up
/// by name and labels on every verify was a measurable share of its cost.
struct VerifyMetrics {
    by_code: Vec<(VerifyCode, metrics::Counter)>,
    duration: metrics::Histogram,
}

fn verify_metrics() -> &'static VerifyMetrics {
    static METRICS: std::sync::OnceLock<VerifyMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| VerifyMetrics {
        by_code: VerifyCode::ALL
            .into_iter()
            .map(|code| {
                let counter =
                    metrics::counter!(crate::metrics::VERIFICATIONS, "code" => code.as_str());
                (code, counter)
            })
            .collect(),
        duration: metrics::histogram!(crate::metrics::VERIFY_DURATION),
    })
}

#[utoipa::path(post, path = "/v1/keys/verify", tag = "verify", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse), (status = "4XX", body = crate::error::Problem)),
    security(("root_key" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    auth: RootAuth,
    body: JsonBody<VerifyRequest>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysVerify)?;
    let start = Instant::now();
    let req = body.value;
    crate::routes::keys::validate_scopes(&req.scopes)?;
    let now = state.clock.now();
    let checked = crate::verify::check(
        &state,
        req.key.expose_secret(),
        &req.scopes,
        |ks| auth.sees_keyspace(ks),
        now,
    )
    .await?;
    let code = checked.code;
    let found = checked.key.as_deref();
    if let Some(found) = found {
        state.usage.record(&found.key.key_id, code, now);
    }
    let key = found.map(|f| &f.key);
    let answer = VerifyAnswer {
        valid: code == VerifyCode::Valid,
        code: code.as_str(),
        key_id: key.map(|k| k.key_id.as_str()),
        keyspace_id: key.map(|k| k.keyspace_id.as_str()),
        keyspace: found.map(|f| f.keyspace_name.as_str()),
        owner: found.and_then(|f| {
            f.key.owner_id.as_deref().map(|id| OwnerRef {
                id,
                external_id: f.owner_external_id.as_deref(),
            })
        }),
        name: key.and_then(|k| k.name.as_deref()),
        scopes: key.map(|k| k.scopes.as_slice()),
        meta: key.map(|k| &k.meta),
        expires_at: key.and_then(|k| k.expires_at.map(rfc3339)),
        rotation: key.and_then(|k| {
            k.rotation.as_ref().map(|r| RotationRef {
                successor_key_id: &r.successor,
                grace_until: rfc3339(r.grace_until),
            })
        }),
        ratelimits: [],
        remaining: None,
    };
    let body = to_body(&answer)?;
    let m = verify_metrics();
    if let Some((_, counter)) = m.by_code.iter().find(|(c, _)| *c == code) {
        counter.increment(1);
    }
    m.duration.record(start.elapsed().as_secs_f64());
    Ok(json_response(StatusCode::OK, body))
}
