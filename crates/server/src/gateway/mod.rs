//! The gateway's HTTP side: reading a request for [`keyhaven_service::gateway`]'s
//! decision and writing its answer. Used by the reverse proxy ([`proxy`]) and forward
//! auth (`GET /v1/auth`, in `routes/forward_auth.rs`).

pub mod envoy;
pub mod follow;
pub mod proxy;
pub mod remote;

use std::net::IpAddr;

use axum::http::header::{AUTHORIZATION, HeaderName, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use keyhaven_service::gateway::{self, Access, Admission, Identity, LimitState, Refusal, Rules};
use keyhaven_service::{Actor, Service};

use crate::error::{ApiError, Problem, problem_response};

/// Who decides: this process (`keyhaven serve`), or a central server through its verify
/// API (`keyhaven proxy`, with a cache kept coherent by the change stream).
#[derive(Debug, Clone)]
pub enum Authorizer {
    Local {
        service: Service,
        actor: Actor,
    },
    /// Through a central server; only keys of `keyspace` when given (others are
    /// answered as unknown keys).
    Remote {
        remote: std::sync::Arc<remote::Remote>,
        keyspace: Option<String>,
    },
}

impl Authorizer {
    async fn authorize(
        &self,
        access: Access<'_>,
        key: Option<&str>,
        client_ip: Option<IpAddr>,
    ) -> Result<Admission, ApiError> {
        match self {
            Self::Local { service, actor } => {
                Ok(gateway::authorize(service, actor, access, key, client_ip).await?)
            }
            Self::Remote { remote, keyspace } => {
                let admission = remote.authorize(access, key, client_ip).await?;
                Ok(match admission {
                    Admission::Allowed(identity)
                        if keyspace
                            .as_ref()
                            .is_some_and(|k| *k != identity.keyspace_id) =>
                    {
                        Admission::Refused(Refusal {
                            code: Some(keyhaven_core::VerifyCode::NotFound),
                            limits: Vec::new(),
                        })
                    }
                    other => other,
                })
            }
        }
    }
}

/// Decides a request from its head: the key from its headers, the client's address from
/// the socket (`peer`) or trusted `X-Forwarded-For` hops. Returns the decision and the
/// header that carried the key (to remove before forwarding).
pub async fn admit(
    authorizer: &Authorizer,
    rules: &Rules,
    access: Access<'_>,
    parts: &Parts,
    peer: Option<IpAddr>,
) -> Result<(Admission, Option<String>), ApiError> {
    let headers = &parts.headers;
    let presented = rules.presented_key(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    let forwarded_for = joined(headers, "x-forwarded-for");
    let client_ip = rules.client_ip(peer, forwarded_for.as_deref());
    let key = presented.as_ref().map(|(key, _)| *key);
    let admission = authorizer.authorize(access, key, client_ip).await?;
    Ok((admission, presented.map(|(_, header)| header)))
}

/// Every value of header `name`, joined with commas (`None` when absent).
pub fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Removes every `X-Keyhaven-*` header (a client must not claim an identity).
pub fn strip_identity(headers: &mut HeaderMap) {
    let ours: Vec<HeaderName> = headers
        .keys()
        .filter(|name| gateway::is_identity_header(name.as_str()))
        .cloned()
        .collect();
    for name in ours {
        headers.remove(name);
    }
}

/// Removes every header that can carry a key: the one the key came in (`used`), the
/// configured key header, `X-API-Key`, and `Authorization` when it is a bearer token
/// (other schemes, such as Basic for the API itself, pass). The API behind never sees
/// a key, not even a second one.
pub fn strip_keys(headers: &mut HeaderMap, rules: &Rules, used: Option<&str>) {
    if let Some(name) = used {
        headers.remove(name);
    }
    if let Some(name) = &rules.key_header {
        headers.remove(name.to_ascii_lowercase().as_str());
    }
    headers.remove(gateway::API_KEY_HEADER);
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| gateway::bearer_token(v).is_some());
    if bearer {
        headers.remove(AUTHORIZATION);
    }
}

/// Sets the caller's identity headers.
pub fn set_identity(headers: &mut HeaderMap, identity: &Identity) {
    for (name, value) in identity.headers() {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Sets `RateLimit-Policy` and `RateLimit` for `limits` (none without limits).
pub fn set_ratelimit(headers: &mut HeaderMap, limits: &[LimitState]) {
    if let Some((policy, current)) = gateway::ratelimit_headers(limits) {
        for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

/// The answer to a path that route rules cannot match safely (dot segments, an encoded
/// `/`; see `Rules::access`): 400, never a guess.
pub fn bad_path() -> Response {
    problem_response(&Problem {
        kind: "urn:keyhaven:problem:bad_path".to_owned(),
        title: "Bad Request".to_owned(),
        status: 400,
        detail: "The path holds dot segments, an encoded slash or bad percent-encoding; \
                 send it normalized."
            .to_owned(),
        code: "bad_path".to_owned(),
    })
}

/// The refusal as problem+json: 401 with `WWW-Authenticate: Bearer`, 403, or 429 with
/// `Retry-After`; the `RateLimit` headers whenever limits applied.
pub fn refusal_response(refusal: &Refusal) -> Response {
    let code = refusal.problem_code();
    let detail = match refusal.code {
        None => "Send the API key in the Authorization header (Bearer) or X-API-Key.".to_owned(),
        Some(c) => format!("The key was refused: {}.", c.as_str()),
    };
    let mut response = problem_response(&Problem {
        kind: format!("urn:keyhaven:problem:{code}"),
        title: refusal.title().to_owned(),
        status: refusal.status(),
        detail,
        code,
    });
    let headers = response.headers_mut();
    if refusal.status() == 401 {
        let challenge = match refusal.code {
            None => "Bearer realm=\"api\"",
            Some(_) => "Bearer realm=\"api\", error=\"invalid_token\"",
        };
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    if let Some(secs) = refusal.retry_after_secs() {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    set_ratelimit(headers, &refusal.limits);
    response
}
