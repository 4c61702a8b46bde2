//! `POST /v1/keys/verify`: the hot path. The decision is the service's
//! ([`keyhaven_service::verify`], one file, top to bottom); this handler checks the root
//! key's scope and writes the verdict as JSON, borrowing from the cached record.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_core::VerifyCode;
use keyhaven_service::cache::VerifyRecord;
use keyhaven_service::limits::{Applied, LimitScope};
use keyhaven_service::validate::rfc3339;
use keyhaven_service::verify::{self, Verdict};
pub use keyhaven_service::verify::{MAX_BATCH, MAX_COST, MAX_NAMED_LIMITS, VerifyRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::{RootAuth, Scope};
use crate::error::{ApiError, ClientError};
use crate::extract::JsonBody;
use crate::respond::{Rfc3339Micros, ceil_ms, json_response, to_body};
use crate::state::AppState;

/// One rate limit as applied to this call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyRatelimit {
    pub name: String,
    /// `key` (this key's own bucket), `owner` (shared by all the owner's keys) or
    /// `client` (the failed-verification limiter's per-address budget).
    pub scope: LimitScope,
    pub limit: u64,
    pub duration_ms: u64,
    /// Units that could still be taken now.
    pub remaining: u64,
    /// When the limit is whole again (RFC 3339, milliseconds).
    pub reset_at: String,
    /// Milliseconds until this call would pass again: only on an exceeded limit, and
    /// absent when it never can (its cost is above the limit's burst).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    pub exceeded: bool,
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
    /// VALID, NOT_FOUND, MALFORMED, EXPIRED, REVOKED, DISABLED, FORBIDDEN_IP,
    /// INSUFFICIENT_SCOPES, INSUFFICIENT_PERMISSIONS, RATE_LIMITED or USAGE_EXCEEDED.
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
    /// Rate limits applied to this call, once the secret matched and the key is
    /// otherwise usable; or, for a failure answered RATE_LIMITED by the
    /// failed-verification limiter, that limiter (`failed_verifications`).
    pub ratelimits: Vec<VerifyRatelimit>,
    /// Remaining uses under the key's (or its owner's, whichever is lower) quota after
    /// this call; `null` when there is none.
    pub remaining: Option<u64>,
    /// For INSUFFICIENT_PERMISSIONS only: the permissions of the query the key lacks,
    /// in the order written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_permissions: Option<Vec<String>>,
    /// Present (`true`) when a signed token was verified rather than the key itself:
    /// `scopes` are then the token's and `expires_at` its expiry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token: bool,
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
    ratelimits: Ratelimits<'a>,
    remaining: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_permissions: Option<&'a [String]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    token: bool,
}

/// The applied limits, serialized straight from the decision.
struct Ratelimits<'a>(&'a [Applied<'a>]);

impl Serialize for Ratelimits<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ratelimit_ref))
    }
}

/// [`VerifyRatelimit`] as serialized, borrowing its name.
#[derive(Serialize)]
struct RatelimitRef<'a> {
    name: &'a str,
    scope: LimitScope,
    limit: u64,
    duration_ms: u64,
    remaining: u64,
    reset_at: Rfc3339Micros,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    exceeded: bool,
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

fn ratelimit_ref<'a>(a: &Applied<'a>) -> RatelimitRef<'a> {
    RatelimitRef {
        name: a.name,
        scope: a.scope,
        limit: a.limit,
        duration_ms: a.duration_ms,
        remaining: a.remaining,
        reset_at: Rfc3339Micros(a.reset_at),
        retry_after_ms: a.retry_after.map(ceil_ms),
        exceeded: a.exceeded,
    }
}

#[utoipa::path(post, path = "/v1/keys/verify", tag = "verify",
    operation_id = "keys_verify", request_body = VerifyRequest,
    responses(
        (status = 200, body = VerifyResponse,
            description = "The verdict: `valid` and `code` say whether the key may be used."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    auth: RootAuth,
    body: JsonBody<VerifyRequest>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysVerify)?;
    let body = verify::verify(&state, &auth, &body.value, |v| {
        to_body(&VerifyAnswer::of(v))
    })
    .await??;
    Ok(json_response(StatusCode::OK, body))
}

/// `POST /v1/keys/verify/batch`: up to [`MAX_BATCH`] verifications.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBatchRequest {
    /// Each one a `POST /v1/keys/verify` body (1-100).
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<VerifyRequest>,
}

/// The answers, in the order of the items.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyBatchResponse {
    /// Each one exactly what `POST /v1/keys/verify` answers for its item.
    pub results: Vec<VerifyResponse>,
}

#[utoipa::path(post, path = "/v1/keys/verify/batch", tag = "verify",
    operation_id = "keys_verify_batch", request_body = VerifyBatchRequest,
    responses(
        (status = 200, body = VerifyBatchResponse,
            description = "One verdict per item, in order; each item is verified exactly \
            as `POST /v1/keys/verify` verifies it (limits, quota, usage and the \
            failed-verification limiter included)."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn verify_batch(
    State(state): State<AppState>,
    auth: RootAuth,
    body: JsonBody<VerifyBatchRequest>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysVerify)?;
    let answers = verify::verify_batch(&state, &auth, &body.value.items, |v| {
        to_body(&VerifyAnswer::of(v))
    })
    .await?;
    // `{"results":[…]}` from the answers as written, each one a single verify's bytes.
    let mut body = b"{\"results\":[".to_vec();
    for (i, answer) in answers.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&answer?);
    }
    body.extend_from_slice(b"]}");
    Ok(json_response(StatusCode::OK, body))
}

impl<'a> VerifyAnswer<'a> {
    fn of(verdict: &'a Verdict<'a>) -> Self {
        let found = verdict.key;
        Self {
            valid: verdict.code == VerifyCode::Valid,
            code: verdict.code.as_str(),
            key_id: found.map(VerifyRecord::key_id),
            keyspace_id: found.map(VerifyRecord::keyspace_id),
            keyspace: found.map(VerifyRecord::keyspace_name),
            owner: found.and_then(|f| {
                f.owner_id().map(|id| OwnerRef {
                    id,
                    external_id: f.owner_external_id(),
                })
            }),
            name: found.and_then(VerifyRecord::name),
            scopes: match verdict.token {
                Some(token) => found.map(|_| token.scopes.as_slice()),
                None => found.map(VerifyRecord::scopes),
            },
            meta: found.map(VerifyRecord::meta),
            // When it stops verifying: its own expiry, or sooner by its keyspace's or
            // plan's maximum age (caches keep an answer no longer than this).
            // A token's: its own expiry (never later than the key's).
            expires_at: match verdict.token {
                Some(token) => found.map(|_| rfc3339(keyhaven_store::from_unix(token.exp))),
                None => found.and_then(|f| f.effective_expiry().map(rfc3339)),
            },
            rotation: found.and_then(|k| {
                k.rotation().map(|r| RotationRef {
                    successor_key_id: &r.successor,
                    grace_until: rfc3339(r.grace_until),
                })
            }),
            ratelimits: Ratelimits(&verdict.limits.ratelimits),
            remaining: verdict.limits.remaining,
            missing_permissions: (verdict.code == VerifyCode::InsufficientPermissions)
                .then_some(verdict.missing_permissions),
            token: verdict.token.is_some(),
        }
    }
}
