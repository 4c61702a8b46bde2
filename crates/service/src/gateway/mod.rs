//! The gateway's decision: whether a request to someone else's API may pass, and what the
//! API behind is told about its caller. One rule for every gateway front door: the
//! reverse proxy (`keyhaven serve --proxy-listen`), forward auth (`GET /v1/auth` for
//! nginx, Traefik, Caddy) and Envoy's external authorization all call [`authorize`].
//!
//! 1. The route rule for the request's method and path ([`Rules::access`]): public, or
//!    the scopes, cost and named limits its key must pass.
//! 2. The key, from the configured header, `Authorization: Bearer` or `X-API-Key`
//!    ([`Rules::presented_key`]); never the URL.
//! 3. The verification itself: [`crate::verify::verify`], with the same cache, limits,
//!    quotas, usage and events as `POST /v1/keys/verify`.
//! 4. The [`Admission`]: the caller's [`Identity`] for the upstream's `X-Keyhaven-*`
//!    headers, or a [`Refusal`] with its status and limits.
//!
//! No HTTP types here: front doors hand over header values and shape the answer.

/// The configuration of a proxy listener (`[[proxy]]`).
pub mod listener {
    pub use crate::config::proxy::ProxyConfig;
}

use std::net::IpAddr;
use std::ops::ControlFlow;

use keyhaven_core::VerifyCode;
use secrecy::SecretString;

use crate::actor::Actor;
pub use crate::config::routes::{
    API_KEY_HEADER, Access, BEARER_HEADER, RouteLimit, RouteRule, Rules, bearer_token,
};
use crate::error::Result;
use crate::limits::{Applied, NamedCost};
use crate::service::Service;
use crate::verify::{self, VerifyRequest};

/// The headers the upstream gets about the caller; a client's own `X-Keyhaven-*`
/// headers are stripped before these are set.
pub const KEY_ID_HEADER: &str = "x-keyhaven-key-id";
pub const KEYSPACE_ID_HEADER: &str = "x-keyhaven-keyspace-id";
pub const OWNER_ID_HEADER: &str = "x-keyhaven-owner-id";
pub const OWNER_EXTERNAL_ID_HEADER: &str = "x-keyhaven-owner-external-id";
pub const SCOPES_HEADER: &str = "x-keyhaven-scopes";
/// The prefix of every header the gateway sets (and strips from clients).
pub const HEADER_PREFIX: &str = "x-keyhaven-";

/// Whether a client header could be read as one of the gateway's identity headers:
/// `X-Keyhaven-*` in any case, and also spelled with underscores (`X_Keyhaven_Key_Id`),
/// which CGI, PHP, WSGI and Rack servers read as the same `HTTP_X_KEYHAVEN_KEY_ID`.
pub fn is_identity_header(name: &str) -> bool {
    name.len() >= HEADER_PREFIX.len()
        && name
            .bytes()
            .zip(HEADER_PREFIX.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
}

/// Whether a request may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A public route: no key asked for, none checked.
    Public,
    /// The key verified: the caller.
    Allowed(Identity),
    Refused(Refusal),
}

/// Who is calling, as the upstream is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub key_id: String,
    pub keyspace_id: String,
    pub owner_id: Option<String>,
    pub owner_external_id: Option<String>,
    pub scopes: Vec<String>,
    /// The limits this request was counted against.
    pub limits: Vec<LimitState>,
}

/// Why a request may not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `None`: no key was presented.
    pub code: Option<VerifyCode>,
    pub limits: Vec<LimitState>,
}

/// One rate limit after this request, for the `RateLimit` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitState {
    pub name: String,
    pub limit: u64,
    pub window_ms: u64,
    pub remaining: u64,
    /// Milliseconds until the limit is whole again.
    pub reset_ms: u64,
    /// For an exceeded limit: milliseconds until the same request would pass, if ever.
    pub retry_after_ms: Option<u64>,
    pub exceeded: bool,
}

/// What is decided before any key is looked at: a public route passes, a request
/// without a key is refused; otherwise the key to verify. Every authorizer (this
/// process's, a proxy node's) starts here.
pub fn key_to_verify<'k>(
    access: &Access<'_>,
    key: Option<&'k str>,
) -> ControlFlow<Admission, &'k str> {
    if access.public {
        return ControlFlow::Break(Admission::Public);
    }
    match key {
        Some(key) => ControlFlow::Continue(key),
        None => ControlFlow::Break(Admission::Refused(Refusal {
            code: None,
            limits: Vec::new(),
        })),
    }
}

/// Decides one request: `key` as presented (if any), under `access`, for a request from
/// `client_ip`. `actor` is the gateway's ([`Actor::gateway`]): it bounds the keyspaces
/// whose keys are accepted.
pub async fn authorize(
    service: &Service,
    actor: &Actor,
    access: Access<'_>,
    key: Option<&str>,
    client_ip: Option<IpAddr>,
) -> Result<Admission> {
    let key = match key_to_verify(&access, key) {
        ControlFlow::Continue(key) => key,
        ControlFlow::Break(decided) => return Ok(decided),
    };
    let request = VerifyRequest {
        key: SecretString::from(key),
        scopes: access.scopes.to_vec(),
        cost: Some(access.cost),
        ratelimits: access.ratelimits.map(|named| {
            named
                .iter()
                .map(|n| NamedCost {
                    name: n.name.clone(),
                    cost: n.cost,
                })
                .collect()
        }),
        permissions: access.permissions.map(str::to_owned),
        client_ip,
        audience: access.audience.map(str::to_owned),
    };
    let now_us = service.clock.now_micros();
    verify::verify(service, actor, &request, |verdict| {
        let limits: Vec<LimitState> = verdict
            .limits
            .ratelimits
            .iter()
            .map(|a| LimitState::of(a, now_us))
            .collect();
        match (verdict.code, verdict.key) {
            (VerifyCode::Valid, Some(found)) => Admission::Allowed(Identity {
                key_id: found.key_id().to_owned(),
                keyspace_id: found.keyspace_id().to_owned(),
                owner_id: found.owner_id().map(str::to_owned),
                owner_external_id: found.owner_external_id().map(str::to_owned),
                scopes: found.scopes().to_vec(),
                limits,
            }),
            (code, _) => Admission::Refused(Refusal {
                code: Some(code),
                limits,
            }),
        }
    })
    .await
}

impl LimitState {
    fn of(applied: &Applied<'_>, now_us: i64) -> Self {
        let ms = |us: i64| u64::try_from(us.max(0).saturating_add(999) / 1000).unwrap_or(0);
        Self {
            name: applied.name.to_owned(),
            limit: applied.limit,
            window_ms: applied.duration_ms,
            remaining: applied.remaining,
            reset_ms: ms(applied.reset_at.saturating_sub(now_us)),
            retry_after_ms: applied.retry_after.map(ms),
            exceeded: applied.exceeded,
        }
    }
}

impl Identity {
    /// The upstream's headers, lower-case names. A value outside visible ASCII (an
    /// owner's external id may hold anything) is percent-encoded, `%` included.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (KEY_ID_HEADER, self.key_id.clone()),
            (KEYSPACE_ID_HEADER, self.keyspace_id.clone()),
            (SCOPES_HEADER, self.scopes.join(",")),
        ];
        if let Some(owner) = &self.owner_id {
            out.push((OWNER_ID_HEADER, header_safe(owner)));
        }
        if let Some(external) = &self.owner_external_id {
            out.push((OWNER_EXTERNAL_ID_HEADER, header_safe(external)));
        }
        out
    }
}

impl Refusal {
    /// 401 for a missing, unknown or unusable key; 403 for missing scopes or an address
    /// outside the key's IP allowlist; 429 for an
    /// exhausted rate limit or quota.
    pub fn status(&self) -> u16 {
        match self.code {
            Some(
                VerifyCode::InsufficientScopes
                | VerifyCode::InsufficientPermissions
                | VerifyCode::ForbiddenIp,
            ) => 403,
            Some(VerifyCode::RateLimited | VerifyCode::UsageExceeded) => 429,
            _ => 401,
        }
    }

    /// The problem's `code`: `missing_key`, or the verify code in lower case.
    pub fn problem_code(&self) -> String {
        self.code.map_or_else(
            || "missing_key".to_owned(),
            |c| c.as_str().to_ascii_lowercase(),
        )
    }

    /// The problem's `title`.
    pub fn title(&self) -> &'static str {
        match self.code {
            None => "An API key is required",
            Some(VerifyCode::NotFound | VerifyCode::Malformed) => "The API key is not valid",
            Some(VerifyCode::Expired) => "The API key has expired",
            Some(VerifyCode::Revoked) => "The API key has been revoked",
            Some(VerifyCode::Disabled) => "The API key is disabled",
            Some(VerifyCode::InsufficientScopes) => "The API key lacks a required scope",
            Some(VerifyCode::ForbiddenIp) => "The API key may not be used from this address",
            Some(VerifyCode::InsufficientPermissions) => "The API key lacks a required permission",
            Some(VerifyCode::RateLimited) => "Too many requests",
            Some(VerifyCode::UsageExceeded) => "The API key's usage quota is exhausted",
            Some(VerifyCode::Valid) => "Refused",
        }
    }

    /// Seconds to wait before retrying (`Retry-After`), for a rate-limited request whose
    /// limit will pass again.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.limits
            .iter()
            .filter(|l| l.exceeded)
            .filter_map(|l| l.retry_after_ms)
            .max()
            .map(|ms| ms.div_ceil(1000).max(1))
    }
}

/// The IETF rate-limit headers for `limits`
/// (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy` lists every limit
/// (`"name";q=<limit>;w=<window s>`), `RateLimit` the one closest to exhaustion
/// (`"name";r=<remaining>;t=<seconds to reset>`). `None` without limits.
pub fn ratelimit_headers(limits: &[LimitState]) -> Option<(String, String)> {
    let tightest = limits.iter().min_by_key(|l| {
        (
            !l.exceeded,
            l.remaining.saturating_mul(1000) / l.limit.max(1),
        )
    })?;
    let policy = limits
        .iter()
        .map(|l| {
            format!(
                "\"{}\";q={};w={}",
                sf_string(&l.name),
                l.limit,
                l.window_ms.div_ceil(1000).max(1)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let current = format!(
        "\"{}\";r={};t={}",
        sf_string(&tightest.name),
        tightest.remaining,
        tightest.reset_ms.div_ceil(1000)
    );
    Some((policy, current))
}

/// A structured-field string's content: `"` and `\` escaped, anything outside visible
/// ASCII dropped (limit names are plain already).
fn sf_string(s: &str) -> String {
    s.chars()
        .filter(|c| (' '..='~').contains(c))
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// `value` as a header value: bytes outside visible ASCII and `%` percent-encoded.
fn header_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(name: &str, limit: u64, remaining: u64, exceeded: bool) -> LimitState {
        LimitState {
            name: name.into(),
            limit,
            window_ms: 60_000,
            remaining,
            reset_ms: 1_500,
            retry_after_ms: exceeded.then_some(2_001),
            exceeded,
        }
    }

    #[test]
    fn ratelimit_headers_list_every_policy_and_the_tightest_limit() {
        assert_eq!(ratelimit_headers(&[]), None);
        let (policy, current) = ratelimit_headers(&[
            limit("requests", 100, 40, false),
            limit("burst", 10, 2, false),
        ])
        .unwrap();
        assert_eq!(policy, "\"requests\";q=100;w=60, \"burst\";q=10;w=60");
        assert_eq!(current, "\"burst\";r=2;t=2");
        let (_, current) = ratelimit_headers(&[
            limit("requests", 100, 0, true),
            limit("burst", 10, 0, false),
        ])
        .unwrap();
        assert_eq!(current, "\"requests\";r=0;t=2");
    }

    #[test]
    fn refusals_map_to_statuses_and_retry_after() {
        let refusal = |code| Refusal {
            code,
            limits: vec![limit("a", 1, 0, true), limit("b", 1, 0, false)],
        };
        assert_eq!(refusal(None).status(), 401);
        assert_eq!(refusal(None).problem_code(), "missing_key");
        assert_eq!(refusal(Some(VerifyCode::Revoked)).status(), 401);
        assert_eq!(refusal(Some(VerifyCode::InsufficientScopes)).status(), 403);
        assert_eq!(refusal(Some(VerifyCode::RateLimited)).status(), 429);
        assert_eq!(refusal(Some(VerifyCode::UsageExceeded)).status(), 429);
        assert_eq!(
            refusal(Some(VerifyCode::RateLimited)).problem_code(),
            "rate_limited"
        );
        assert_eq!(refusal(None).retry_after_secs(), Some(3));
    }

    #[test]
    fn identity_header_look_alikes_are_recognised() {
        for name in [
            "x-keyhaven-key-id",
            "X-Keyhaven-Scopes",
            "x_keyhaven_key_id",
            "X_KEYHAVEN-x",
        ] {
            assert!(is_identity_header(name), "{name}");
        }
        for name in ["x-keyhaven", "x-keyhave-n", "x-api-key", "keyhaven-key-id"] {
            assert!(!is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn identity_headers_are_safe_header_values() {
        let identity = Identity {
            key_id: "k1".into(),
            keyspace_id: "ks".into(),
            owner_id: Some("o1".into()),
            owner_external_id: Some("ümlaut 100%\r\nx".into()),
            scopes: vec!["a:read".into(), "b".into()],
            limits: vec![],
        };
        let headers = identity.headers();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(h, _)| *h == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get(SCOPES_HEADER), Some("a:read,b"));
        assert_eq!(
            get(OWNER_EXTERNAL_ID_HEADER),
            Some("%C3%BCmlaut 100%25%0D%0Ax")
        );
        assert!(headers.iter().all(|(h, _)| h.starts_with(HEADER_PREFIX)));
    }
}
