//! Leak response: `POST /v1/leaks/github` (GitHub's secret scanning partner protocol,
//! no root key: the batch is signed), `POST /v1/leaks/report` (a root key with
//! `leaks:write`) and `POST /v1/keys/self-revoke` (the key itself is the credential).
//! The rules are the service's ([`keyhaven_service::leaks`]).

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use keyhaven_service::leaks::github::{self, GithubVerdict, Refusal, Signed};
use keyhaven_service::leaks::{self, LeakLabel, LeakOutcome, ReportLeaks, SelfRevoke, SelfRevoked};
use keyhaven_service::validate::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ClientIp, RootAuth, Scope, bearer_token};
use crate::error::{ApiError, ClientError, Problem};
use crate::extract::{JsonBody, parse_json};
use crate::respond::{json_response, to_body};
use crate::state::AppState;

/// Body limit of `POST /v1/leaks/report` (10,000 keys with a long `url`).
pub const REPORT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Body limit of `POST /v1/leaks/github` (20,000 matches with their URLs).
pub const GITHUB_BODY_LIMIT: usize = 8 * 1024 * 1024;

use crate::error::refusal as refused;

#[utoipa::path(post, path = "/v1/leaks/github", tag = "leaks", operation_id = "leaks_github",
    request_body(content = Vec<github::GithubMatch>, description = "GitHub's secret scanning partner batch, signed by GitHub."),
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "The id of GitHub's key that signed the body."),
        ("Github-Public-Key-Signature" = String, Header, description = "Base64 ASN.1 DER ECDSA P-256 SHA-256 signature of the raw body."),
    ),
    responses(
        (status = 200, description = "One verdict per match, in order; true positives were acted on per their keyspace's leak policy.", body = Vec<GithubVerdict>),
        (status = 401, description = "Unsigned, badly signed, signed with an unknown key, or replayed: nothing changed.", body = Problem, content_type = "application/problem+json"),
        ClientError))]
pub async fn github(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Signed {
        key_id: header("github-public-key-identifier"),
        signature: header("github-public-key-signature"),
    };
    // Who signed it is checked before the body is read: an unsigned request costs no
    // upload.
    let keys = match github::signer(&state, signed).await? {
        Ok(keys) => keys,
        Err(refusal) => return Ok(refusal_response(refusal)),
    };
    let body = axum::body::to_bytes(body, GITHUB_BODY_LIMIT)
        .await
        .map_err(|e| {
            if crate::extract::stalled(&e) {
                ApiError::BodyTimeout(state.config.http_body_timeout_ms)
            } else {
                ApiError::PayloadTooLarge {
                    limit: GITHUB_BODY_LIMIT,
                }
            }
        })?;
    match github::handle(&state, signed, &keys, &body, client_ip).await? {
        Ok(verdicts) => Ok(json_response(StatusCode::OK, to_body(&verdicts)?)),
        Err(refusal) => Ok(refusal_response(refusal)),
    }
}

fn refusal_response(refusal: Refusal) -> Response {
    let code = match refusal {
        Refusal::NotConfigured => "github_not_configured",
        Refusal::Unsigned => "unsigned",
        Refusal::UnknownKey => "unknown_public_key",
        Refusal::BadSignature => "bad_signature",
        Refusal::Replayed => "replayed",
    };
    refused(StatusCode::UNAUTHORIZED, code, refusal.to_string())
}

/// One reported key as judged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeakResult {
    pub label: String,
    /// The key, for a true positive.
    pub key_id: Option<String>,
    /// What this report did: `revoked`, `disabled`, `notified` (policy `notify`),
    /// `unchanged` (it had already stopped working), `already_reported` (an earlier
    /// report acted), or `null` for a false positive.
    pub action: Option<String>,
}

impl From<&LeakOutcome> for LeakResult {
    fn from(o: &LeakOutcome) -> Self {
        Self {
            label: o.label.as_str().to_owned(),
            key_id: o.key_id.clone(),
            action: match (o.label, o.repeat, o.action) {
                (LeakLabel::FalsePositive, ..) => None,
                (_, true, _) => Some("already_reported".to_owned()),
                (_, false, action) => action.map(|a| a.as_str().to_owned()),
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeakResults {
    /// One result per reported key, in order.
    pub results: Vec<LeakResult>,
}

#[utoipa::path(post, path = "/v1/leaks/report", tag = "leaks", operation_id = "leaks_report",
    request_body = ReportLeaks,
    responses((status = 200, description = "One result per key, in order; true positives were acted on per their keyspace's leak policy.", body = LeakResults), ClientError),
    security(("root_key" = [])))]
pub async fn report(
    State(state): State<AppState>,
    auth: RootAuth,
    JsonBody { value: input, .. }: JsonBody<ReportLeaks>,
) -> Result<Response, ApiError> {
    auth.require(Scope::LeaksWrite)?;
    let outcomes = leaks::report_request(&state, &auth, Some(auth.id()), &input).await?;
    let results = LeakResults {
        results: outcomes.iter().map(LeakResult::from).collect(),
    };
    Ok(json_response(StatusCode::OK, to_body(&results)?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SelfRevokedView {
    pub key_id: String,
    pub revoked_at: String,
    /// It was already revoked before this request.
    pub already_revoked: bool,
}

#[utoipa::path(post, path = "/v1/keys/self-revoke", tag = "keys", operation_id = "keys_self_revoke",
    request_body(content = Option<SelfRevoke>, description = "Optional: why."),
    responses(
        (status = 200, description = "The presented key is revoked.", body = SelfRevokedView),
        (status = 401, description = "Not a working key: nothing changed.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts from this client or for this key id.", body = Problem, content_type = "application/problem+json"),
        ClientError),
    security(("api_key" = [])))]
pub async fn self_revoke(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: SelfRevoke = parse_json(&body)?;
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or_default();
    let answer = leaks::self_revoke(&state, token, client_ip, input).await?;
    Ok(match answer {
        SelfRevoked::Revoked {
            key_id,
            revoked_at,
            already,
        } => {
            let view = SelfRevokedView {
                key_id,
                revoked_at: rfc3339(revoked_at),
                already_revoked: already,
            };
            json_response(StatusCode::OK, to_body(&view)?)
        }
        SelfRevoked::Refused => {
            let mut response = refused(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Send the key to revoke as `Authorization: Bearer <key>`.".to_owned(),
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        SelfRevoked::Limited(limit) => {
            let seconds = limit
                .retry_after
                .map_or(60, |us| (us + 999_999) / 1_000_000);
            let mut response = refused(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many failed attempts; retry in {seconds} s."),
            );
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
    })
}
