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
    /// Rate limits applied to this call (none yet).
    pub ratelimits: Vec<Value>,
    /// Remaining uses under a quota; `null` when the key has none.
    pub remaining: Option<u64>,
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
    let now = crate::clock::now();
    let checked = crate::verify::check(
        &state,
        req.key.expose_secret(),
        &req.scopes,
        |ks| auth.sees_keyspace(ks),
        now,
    )
    .await?;
    let code = checked.code;
    let response = match checked.key {
        Some(found) => {
            state.usage.record(&found.key.key_id, code, now);
            let key = &found.key;
            VerifyResponse {
                valid: code == VerifyCode::Valid,
                code: code.as_str().to_owned(),
                key_id: Some(key.key_id.clone()),
                keyspace_id: Some(key.keyspace_id.clone()),
                keyspace: Some(found.keyspace_name.clone()),
                owner: key.owner_id.as_ref().map(|id| VerifyOwner {
                    id: id.clone(),
                    external_id: found.owner_external_id.clone(),
                }),
                name: key.name.clone(),
                scopes: Some(key.scopes.clone()),
                meta: Some(key.meta.clone()),
                expires_at: key.expires_at.map(rfc3339),
                ratelimits: Vec::new(),
                remaining: None,
            }
        }
        None => VerifyResponse {
            valid: false,
            code: code.as_str().to_owned(),
            key_id: None,
            keyspace_id: None,
            keyspace: None,
            owner: None,
            name: None,
            scopes: None,
            meta: None,
            expires_at: None,
            ratelimits: Vec::new(),
            remaining: None,
        },
    };
    metrics::counter!(crate::metrics::VERIFICATIONS, "code" => code.as_str()).increment(1);
    metrics::histogram!(crate::metrics::VERIFY_DURATION).record(start.elapsed().as_secs_f64());
    Ok(json_response(StatusCode::OK, to_body(&response)?))
}
