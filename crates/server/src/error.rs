//! Every error the API returns: RFC 9457 `application/problem+json` with a stable `code`.
//!
//! A 404 never names what was looked for, so an object another root key may not see
//! answers exactly like one that does not exist. 500s answer a generic body and log the
//! cause (which never holds a secret: secrets live in redacting types).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyhaven_service::ServiceError;
use keyhaven_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq, Eq)]
pub struct Problem {
    /// `urn:keyhaven:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable error code.
    pub code: String,
}

/// The 4xx answer every handler documents (`responses(..., ClientError)`): a problem
/// document, sent as `application/problem+json`.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = "4XX",
    description = "The request was refused; the RFC 9457 problem's `code` says why (e.g. \
                   `validation_failed`, `unauthorized`, `insufficient_scope`, `not_found`).",
    content_type = PROBLEM_CONTENT_TYPE
)]
pub struct ClientError(pub Problem);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed HTTP but its content is not acceptable.
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("missing or invalid root key")]
    Unauthorized,
    #[error("the root key lacks the scope {0}")]
    MissingScope(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{0}")]
    IdempotencyMismatch(&'static str),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request timed out")]
    Timeout,
    /// Something this server depends on (the central Keyhaven of a proxy node) cannot
    /// answer now.
    #[error("{0}")]
    Unavailable(String),
    #[error("the request body stalled for longer than {0} ms")]
    BodyTimeout(u64),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::bad_request("validation_failed", detail)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::MissingScope(_) | Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::IdempotencyMismatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Timeout | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::Forbidden { code, .. } => code,
            Self::Unauthorized => "unauthorized",
            Self::MissingScope(_) => "insufficient_scope",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::IdempotencyMismatch(_) => "idempotency_key_reused",
            Self::PayloadTooLarge { .. } => "body_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Timeout => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::BodyTimeout(_) => "body_timeout",
            Self::Unexpected(_) => "internal",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            Self::NotFound => "The requested resource does not exist.".to_owned(),
            Self::Unauthorized => {
                "Send a valid root key as `Authorization: Bearer <key>`.".to_owned()
            }
            Self::Unexpected(_) => {
                "The server failed to handle the request; the cause is in its log.".to_owned()
            }
            other => other.to_string(),
        };
        let code = self.code();
        Problem {
            kind: format!("urn:keyhaven:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { code, detail } => Self::BadRequest { code, detail },
            ServiceError::MissingScope(scope) => Self::MissingScope(scope),
            ServiceError::NotFound => Self::NotFound,
            ServiceError::Forbidden { code, detail } => Self::Forbidden { code, detail },
            ServiceError::Conflict { code, detail } => Self::Conflict { code, detail },
            ServiceError::IdempotencyMismatch(detail) => Self::IdempotencyMismatch(detail),
            ServiceError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

/// What went wrong behind a 500, carried on the response to the request log, which logs
/// it at ERROR with the request's method, route and id (see `app::request_log`).
#[derive(Debug, Clone)]
pub struct Failure(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = problem_response(&self.problem());
        if let Self::Unexpected(e) = &self {
            response.extensions_mut().insert(Failure(format!("{e:#}")));
        }
        response
    }
}

pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    response
}

/// A problem answer with `status` and its stable `code` (for refusals that are not an
/// [`ApiError`], such as a key that does not verify as its own credential).
pub fn refusal(status: StatusCode, code: &str, detail: String) -> Response {
    problem_response(&Problem {
        kind: format!("urn:keyhaven:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::invalid("x"), 400, "validation_failed"),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (
                ApiError::MissingScope("keys:write"),
                403,
                "insufficient_scope",
            ),
            (ApiError::NotFound, 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (
                StoreError::Conflict(keyhaven_store::Conflict::PrefixTaken).into(),
                409,
                "prefix_taken",
            ),
            (
                ApiError::IdempotencyMismatch("x"),
                422,
                "idempotency_key_reused",
            ),
            (
                ApiError::PayloadTooLarge { limit: 1 },
                413,
                "body_too_large",
            ),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "unsupported_media_type",
            ),
            (ApiError::Timeout, 503, "timeout"),
            (ApiError::BodyTimeout(1), 408, "body_timeout"),
            (anyhow::anyhow!("disk on fire").into(), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let p = error.problem();
            assert_eq!((p.status, p.code.as_str()), (status, code), "{error:?}");
            assert_eq!(p.kind, format!("urn:keyhaven:problem:{code}"));
        }
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let p = ApiError::from(anyhow::anyhow!("secret path /etc/x")).problem();
        assert!(!p.detail.contains("/etc/x"));
    }

    #[test]
    fn not_found_says_nothing_about_what_was_asked() {
        assert_eq!(ApiError::NotFound.problem(), ApiError::NotFound.problem());
        assert!(!ApiError::NotFound.problem().detail.contains("ks_"));
    }
}
