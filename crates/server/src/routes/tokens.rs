//! Signed tokens: `POST /v1/tokens` (minted for the key presented as the bearer
//! credential, or by a root key with `tokens:write` for a named key) and
//! `GET /.well-known/jwks.json` (the public signing keys, no credential). The rules are
//! the service's ([`keyhaven_service::tokens`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use keyhaven_service::tokens::{self, KeyMinted, MintToken, Minted};
use keyhaven_service::validate::rfc3339;
use keyhaven_service::verify;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ClientIp, bearer_token};
use crate::error::{ApiError, ClientError, Problem, refusal};
use crate::extract::parse_json;
use crate::respond::{json_response, to_body};
use crate::state::AppState;

/// A minted token. The token is shown once; Keyhaven keeps no copy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub token: String,
    /// `jws` or `biscuit`.
    pub format: String,
    /// RFC 3339: the token stops verifying then.
    pub expires_at: String,
    /// The key the token was minted from.
    pub key_id: String,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    /// The token's id (`jti`).
    pub token_id: String,
    /// The signing key's version (a biscuit's root key id) and `kid`.
    pub signing_key: u32,
    pub kid: String,
}

fn created(state: &AppState, minted: &Minted) -> Result<Response, ApiError> {
    let kid = state
        .signing_keys()
        .and_then(|k| k.verifying().by_version(minted.signing_key))
        .map(|k| k.kid.clone())
        .unwrap_or_default();
    let view = TokenView {
        token: minted.token.expose_secret().to_owned(),
        format: minted.format.as_str().to_owned(),
        expires_at: rfc3339(minted.expires_at()),
        key_id: minted.claims.sub.clone(),
        scopes: minted.claims.scopes.clone(),
        audience: minted.claims.aud.clone(),
        token_id: minted.claims.jti.clone(),
        signing_key: minted.signing_key,
        kid,
    };
    let mut response = json_response(StatusCode::CREATED, to_body(&view)?);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", operation_id = "tokens_mint",
    request_body(content = Option<MintToken>, description = "Optional: lifetime, scopes, audience, format; `key_id` with a root key."),
    responses(
        (status = 201, description = "The token (shown once).", body = TokenView),
        (status = 401, description = "Not a working key (or a token, which never mints): nothing minted.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Scopes the key does not hold, or a root key without `tokens:write`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A root key named a key it cannot see.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A root key named a key that is revoked, disabled or expired.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts from this client or for this key id.", body = Problem, content_type = "application/problem+json"),
        ClientError),
    security(("api_key" = [])))]
pub async fn mint(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: MintToken = parse_json(&body)?;
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or_default();
    if let Some(actor) = verify::authenticate(&state, bearer, client_ip).await? {
        let minted = tokens::mint_for_key_id(&state, &actor, input).await?;
        return created(&state, &minted);
    }
    let presented = SecretString::from(bearer.to_owned());
    match tokens::mint_with_key(&state, presented, client_ip, input).await? {
        KeyMinted::Minted(minted) => created(&state, &minted),
        KeyMinted::Refused(_) => {
            let mut response = refusal(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Send a working key as `Authorization: Bearer <key>` (a token never mints \
                 another)."
                    .to_owned(),
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Ok(response)
        }
        KeyMinted::Limited(retry_after_us) => {
            let seconds = retry_after_us.map_or(60, |us| (us + 999_999) / 1_000_000);
            let mut response = refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many failed attempts; retry in {seconds} s."),
            );
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            Ok(response)
        }
    }
}

/// The JWKS: each signing key as an Ed25519 JWK (`kid` its RFC 7638 thumbprint), and
/// `keyhaven_biscuit_keys`, the biscuit root keys by root key id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JwksView {
    pub keys: Vec<serde_json::Value>,
    pub keyhaven_biscuit_keys: Vec<serde_json::Value>,
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens", operation_id = "tokens_jwks",
    responses(
        (status = 200, description = "The public token signing keys; verifiers cache it (max-age 5 minutes).", body = JwksView),
        (status = 503, description = "No signing keys are loaded.", body = Problem, content_type = "application/problem+json"),
        ClientError))]
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(keys) = state.signing_keys() else {
        return Err(ApiError::Unavailable(
            "no token signing keys are loaded".to_owned(),
        ));
    };
    let mut response = json_response(StatusCode::OK, keys.jwks().to_vec());
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}
