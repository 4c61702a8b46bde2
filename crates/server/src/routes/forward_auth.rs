//! `GET /v1/auth`: forward auth for a proxy already in front of an API (nginx
//! `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`). No root key: it answers
//! only about the key the request itself presents, under the `[gateway]` rules of the
//! configuration for the original method and path (`X-Forwarded-Method` /
//! `X-Original-Method`, `X-Forwarded-Uri` / `X-Original-URI`), or the scopes, cost and
//! limits named in its own query string (handy for one nginx `location` each).
//!
//! 200 with the caller's `X-Keyhaven-*` headers (for the proxy to pass upstream) and the
//! `RateLimit` headers; otherwise the gateway's refusal (401, 403, 429) as problem+json.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhaven_service::Actor;
use keyhaven_service::gateway::{Access, Admission, RouteLimit};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::ClientIp;
use crate::error::{ApiError, ClientError};
use crate::gateway;
use crate::state::AppState;

/// The original request's method or URI from the headers `names` (a proxy sets one or
/// both): `None` without any. Every value of both must agree: a proxy that sets one of
/// them may pass the client's own copy of the other on (nginx's `auth_request` does), and
/// a client must not choose what the rules decide for.
fn original<'h>(
    headers: &'h axum::http::HeaderMap,
    names: [&str; 2],
) -> Result<Option<&'h str>, ApiError> {
    let mut found: Option<&str> = None;
    for value in names.iter().flat_map(|name| headers.get_all(*name)) {
        let value = value.to_str().map_err(|_| {
            ApiError::bad_request(
                "invalid_original_request",
                format!("{} must be visible ASCII.", names.join(" and ")),
            )
        })?;
        match found {
            Some(seen) if seen != value => {
                return Err(ApiError::bad_request(
                    "conflicting_original_request",
                    format!(
                        "{} disagree: set them to the same value in the proxy, or set \
                         both.",
                        names.join(" and ")
                    ),
                ));
            }
            _ => found = Some(value),
        }
    }
    Ok(found)
}

/// Longest `scopes` or `ratelimits` value, in characters. Both at most, percent-encoded
/// from 4-byte characters, keep the request line under the 64 KiB an HTTP server reads
/// (beyond it hyper answers 414 itself, with no problem body).
const MAX_LIST_CHARS: usize = 2000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuthParams {
    /// Scopes the key must hold, comma-separated (instead of the matching route rule's).
    #[param(max_length = 2000)]
    pub scopes: Option<String>,
    /// Units taken from the key's limits and quota (instead of the route rule's; 0-1000).
    #[param(minimum = 0, maximum = 1000)]
    pub cost: Option<u64>,
    /// Named limits to take from, comma-separated, each `name` or `name:cost` (instead of
    /// the route rule's).
    #[param(max_length = 2000)]
    pub ratelimits: Option<String>,
}

#[utoipa::path(get, path = "/v1/auth", tag = "verify", operation_id = "auth_forward",
    params(AuthParams,
        ("X-Forwarded-Method" = Option<String>, Header, description = "The original request's method (Traefik, Caddy; nginx: X-Original-Method)."),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The original request's path and query (Traefik, Caddy; nginx: X-Original-URI)."),
    ),
    responses(
        (status = 200, description = "The key may make this request: the caller is in the `X-Keyhaven-Key-Id`, `-Keyspace-Id`, `-Owner-Id`, `-Owner-External-Id` and `-Scopes` headers."),
        (status = 401, description = "No key, or an unknown, revoked, expired or disabled one (`WWW-Authenticate: Bearer`).", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks a required scope.", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "A rate limit (`Retry-After`, `RateLimit`) or the quota is exhausted.", body = crate::error::Problem, content_type = "application/problem+json"),
        ClientError,
    ),
    security(("api_key" = [])))]
pub async fn forward_auth(
    State(state): State<AppState>,
    ClientIp(peer): ClientIp,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let params: AuthParams = match parts.uri.query() {
        Some(query) => serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?,
        None => AuthParams::default(),
    };
    for (name, value) in [
        ("scopes", &params.scopes),
        ("ratelimits", &params.ratelimits),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| v.chars().count() > MAX_LIST_CHARS)
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("{name}: at most {MAX_LIST_CHARS} characters"),
            ));
        }
    }
    let rules = &state.config.gateway;
    let method = match original(&parts.headers, ["x-forwarded-method", "x-original-method"])? {
        Some(method) => method,
        // A rule for some methods only would be decided for the auth request's own
        // method (nginx's subrequest is always a GET): a POST could pass as a GET.
        None if rules.routes.iter().any(|r| !r.methods.is_empty()) => {
            return Err(ApiError::bad_request(
                "missing_original_method",
                "Route rules name methods: send the original request's method in \
                 X-Forwarded-Method or X-Original-Method.",
            ));
        }
        None => parts.method.as_str(),
    };
    let overridden =
        params.scopes.is_some() || params.cost.is_some() || params.ratelimits.is_some();
    let uri = match original(&parts.headers, ["x-forwarded-uri", "x-original-uri"])? {
        Some(uri) => uri,
        // Route rules decide by the original path: without it they would all be
        // skipped in silence (a proxy set up without the header), so say so.
        None if !rules.routes.is_empty() && !overridden => {
            return Err(ApiError::bad_request(
                "missing_original_uri",
                "Route rules are configured: send the original request's path in \
                 X-Forwarded-Uri or X-Original-URI (or name scopes, cost or ratelimits \
                 in the query).",
            ));
        }
        None => "/",
    };
    let path = uri.split('?').next().unwrap_or("/");
    let Some(rule) = rules.access(method, path) else {
        return Ok(gateway::bad_path());
    };
    let scopes: Option<Vec<String>> = params.scopes.as_deref().map(split_list);
    let named: Option<Vec<RouteLimit>> = match params.ratelimits.as_deref() {
        Some(list) => Some(named_limits(list)?),
        None => None,
    };
    let access = Access {
        public: rule.public,
        scopes: scopes.as_deref().unwrap_or(rule.scopes),
        cost: params.cost.unwrap_or(rule.cost),
        ratelimits: named.as_deref().or(rule.ratelimits),
        permissions: rule.permissions,
        audience: rule.audience,
    };
    let authorizer = gateway::Authorizer::Local {
        service: state.clone(),
        actor: Actor::gateway(rules.keyspace_id.as_deref()),
    };
    let (admission, _) = gateway::admit(&authorizer, rules, access, &parts, peer).await?;
    Ok(match admission {
        Admission::Public => StatusCode::OK.into_response(),
        Admission::Allowed(identity) => {
            let mut response = StatusCode::OK.into_response();
            gateway::set_identity(response.headers_mut(), &identity);
            gateway::set_ratelimit(response.headers_mut(), &identity.limits);
            response
        }
        Admission::Refused(refusal) => gateway::refusal_response(&refusal),
    })
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `name` or `name:cost`, comma-separated.
fn named_limits(list: &str) -> Result<Vec<RouteLimit>, ApiError> {
    split_list(list)
        .into_iter()
        .map(|item| match item.split_once(':') {
            None => Ok(RouteLimit {
                name: item,
                cost: None,
            }),
            Some((name, cost)) => match cost.parse() {
                Ok(cost) => Ok(RouteLimit {
                    name: name.to_owned(),
                    cost: Some(cost),
                }),
                Err(_) => Err(ApiError::bad_request(
                    "invalid_query",
                    format!("ratelimits: `{item}` must be name or name:cost"),
                )),
            },
        })
        .collect()
}
