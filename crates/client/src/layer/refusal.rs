//! The layer's answers when a request may not pass, as Keyhaven's gateway gives them
//! (`docs/gateway.md`, "Refusals"): `application/problem+json` with a stable `code`,
//! `WWW-Authenticate` on 401, `Retry-After` on a rate-limited 429, and the IETF
//! `RateLimit` / `RateLimit-Policy` headers whenever limits applied. The same mapping
//! as the server's `keyhaven_service::gateway::Refusal`, kept here because the client
//! does not depend on the service crate.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::Problem;
use crate::types::{VerifyCode, VerifyRatelimit};

const PROBLEM_JSON: &str = "application/problem+json";

/// Why the layer refuses a request: no key (`None`), or the verify code.
pub(crate) fn refusal(code: Option<VerifyCode>, limits: &[VerifyRatelimit]) -> Response {
    let status = match code {
        Some(
            VerifyCode::InsufficientScopes
            | VerifyCode::InsufficientPermissions
            | VerifyCode::ForbiddenIp,
        ) => StatusCode::FORBIDDEN,
        Some(VerifyCode::RateLimited | VerifyCode::UsageExceeded) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    };
    let problem_code = code.map_or_else(
        || "missing_key".to_owned(),
        |c| c.as_str().to_ascii_lowercase(),
    );
    let detail = match code {
        None => "Send the API key in the Authorization header (Bearer) or X-API-Key.".to_owned(),
        Some(c) => format!("The key was refused: {}.", c.as_str()),
    };
    let mut response = problem(&Problem {
        kind: format!("urn:keyhaven:problem:{problem_code}"),
        title: title(code).to_owned(),
        status: status.as_u16(),
        detail,
        code: problem_code,
    });
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = match code {
            None => "Bearer realm=\"api\"",
            Some(_) => "Bearer realm=\"api\", error=\"invalid_token\"",
        };
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    if code == Some(VerifyCode::RateLimited)
        && let Some(secs) = retry_after_secs(limits)
    {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    set_ratelimit(headers, limits);
    response
}

/// 503 `unavailable`: Keyhaven could not decide (fail closed).
pub(crate) fn unavailable() -> Response {
    problem(&Problem {
        kind: "urn:keyhaven:problem:unavailable".to_owned(),
        title: "Service Unavailable".to_owned(),
        status: 503,
        detail: "The key service cannot be reached.".to_owned(),
        code: "unavailable".to_owned(),
    })
}

/// 500 `internal`: a handler asked for the caller with no layer in front of it.
pub(crate) fn no_layer() -> Response {
    problem(&Problem {
        kind: "urn:keyhaven:problem:internal".to_owned(),
        title: "Internal Server Error".to_owned(),
        status: 500,
        detail: "This route is not behind the Keyhaven layer.".to_owned(),
        code: "internal".to_owned(),
    })
}

fn problem(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

fn title(code: Option<VerifyCode>) -> &'static str {
    match code {
        None => "An API key is required",
        Some(VerifyCode::NotFound | VerifyCode::Malformed | VerifyCode::Unknown) => {
            "The API key is not valid"
        }
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

/// Seconds until an exceeded limit passes again (rounded up, at least 1): the longest
/// `retry_after_ms` among the exceeded limits; none when no exceeded limit ever passes.
fn retry_after_secs(limits: &[VerifyRatelimit]) -> Option<u64> {
    limits
        .iter()
        .filter(|l| l.exceeded)
        .filter_map(|l| l.retry_after_ms)
        .max()
        .map(|ms| ms.div_ceil(1000).max(1))
}

/// Sets `RateLimit-Policy` (every limit: `"name";q=<limit>;w=<window s>`) and
/// `RateLimit` (the one closest to exhaustion: `"name";r=<remaining>;t=<s to reset>`).
pub(crate) fn set_ratelimit(headers: &mut HeaderMap, limits: &[VerifyRatelimit]) {
    let Some(tightest) = limits.iter().min_by_key(|l| {
        (
            !l.exceeded,
            l.remaining.saturating_mul(1000) / l.limit.max(1),
        )
    }) else {
        return;
    };
    let policy = limits
        .iter()
        .map(|l| {
            format!(
                "\"{}\";q={};w={}",
                sf_string(&l.name),
                l.limit,
                l.duration_ms.div_ceil(1000).max(1)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let now = time::OffsetDateTime::now_utc();
    let reset_ms = time::OffsetDateTime::parse(
        &tightest.reset_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map_or(0, |at| {
        u64::try_from((at - now).whole_milliseconds().max(0)).unwrap_or(u64::MAX)
    });
    let current = format!(
        "\"{}\";r={};t={}",
        sf_string(&tightest.name),
        tightest.remaining,
        reset_ms.div_ceil(1000)
    );
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// A structured-field string's content: `"` and `\` escaped, anything outside visible
/// ASCII dropped.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LimitScope;

    fn limit(name: &str, limit: u64, remaining: u64, exceeded: bool) -> VerifyRatelimit {
        VerifyRatelimit {
            name: name.into(),
            scope: LimitScope::Key,
            limit,
            duration_ms: 60_000,
            remaining,
            reset_at: "2000-01-01T00:00:00.000Z".into(),
            retry_after_ms: exceeded.then_some(2_001),
            exceeded,
        }
    }

    fn header<'r>(r: &'r Response, name: &str) -> Option<&'r str> {
        r.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn refusals_answer_like_the_gateway() {
        let missing = refusal(None, &[]);
        assert_eq!(missing.status(), 401);
        assert_eq!(
            header(&missing, "www-authenticate"),
            Some("Bearer realm=\"api\"")
        );
        assert_eq!(header(&missing, "content-type"), Some(PROBLEM_JSON));
        let revoked = refusal(Some(VerifyCode::Revoked), &[]);
        assert_eq!(revoked.status(), 401);
        assert_eq!(
            header(&revoked, "www-authenticate"),
            Some("Bearer realm=\"api\", error=\"invalid_token\"")
        );
        let scopes = refusal(Some(VerifyCode::InsufficientScopes), &[]);
        assert_eq!(scopes.status(), 403);
        assert!(header(&scopes, "www-authenticate").is_none());
        let limited = refusal(
            Some(VerifyCode::RateLimited),
            &[limit("a", 1, 0, true), limit("b", 10, 4, false)],
        );
        assert_eq!(limited.status(), 429);
        assert_eq!(header(&limited, "retry-after"), Some("3"));
        assert_eq!(
            header(&limited, "ratelimit-policy"),
            Some("\"a\";q=1;w=60, \"b\";q=10;w=60")
        );
        assert_eq!(header(&limited, "ratelimit"), Some("\"a\";r=0;t=0"));
        let quota = refusal(Some(VerifyCode::UsageExceeded), &[]);
        assert_eq!(quota.status(), 429);
        assert!(header(&quota, "retry-after").is_none());
        assert_eq!(unavailable().status(), 503);
    }

    #[test]
    fn limit_names_are_safe_structured_field_strings() {
        assert_eq!(sf_string("a\"b\\c\u{e9}"), "a\\\"b\\\\c");
    }
}
