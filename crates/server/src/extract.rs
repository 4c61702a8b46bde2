//! Extractors that answer bad input in the API's own error shape (problem+json) instead
//! of axum's plain-text rejections, and never echo request values back: a client that
//! put a key in the wrong field must not see it in an error message or a log.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::idempotency;
use crate::state::AppState;

/// A JSON request body, and what identifies the request for idempotency (hashed only
/// when asked: the verify path never needs it). `Debug` shows neither the raw body nor
/// the parsed value, which may hold a key.
pub struct JsonBody<T> {
    pub value: T,
    method: axum::http::Method,
    uri: axum::http::Uri,
    bytes: Bytes,
}

impl<T> std::fmt::Debug for JsonBody<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonBody")
            .field("method", &self.method)
            .field("path", &self.uri.path())
            .field("body", &format_args!("<{} bytes>", self.bytes.len()))
            .finish_non_exhaustive()
    }
}

impl<T> JsonBody<T> {
    /// SHA-256 of method, path and the exact body bytes.
    pub fn request_hash(&self) -> [u8; 32] {
        idempotency::request_hash(self.method.as_str(), self.uri.path(), &self.bytes)
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            let essence = ct.split(';').next().unwrap_or_default().trim();
            let json = essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json");
            if !json {
                return Err(ApiError::UnsupportedMediaType(
                    "Send the request body as `Content-Type: application/json`.".to_owned(),
                ));
            }
        }
        let method = req.method().clone();
        let uri = req.uri().clone();
        let limit = state.config.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else if stalled(&rejection) {
                ApiError::BodyTimeout(state.config.http_body_timeout_ms)
            } else {
                ApiError::bad_request("unreadable_body", "The request body could not be read.")
            }
        })?;
        let value = parse_json(&bytes)?;
        Ok(Self {
            value,
            method,
            uri,
            bytes,
        })
    }
}

/// Whether reading the body failed because it stalled (the router's body-timeout layer).
fn stalled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Parses a body; an empty body reads as `{}` so bodies with only optional fields
/// (`POST /v1/keys/{id}/revoke`) may be left out.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => "validation_failed",
            _ => "malformed_json",
        };
        ApiError::bad_request(
            code,
            format!("Invalid request body: {}", redact(&e.to_string())),
        )
    })
}

/// Replaces every quoted value in a serde message (`"…"`) and every backticked span
/// longer than a field name could reasonably be, so no request value is echoed.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let (before, from_quote) = rest.split_at(start);
        out.push_str(before);
        let quote = from_quote.chars().next().unwrap_or('"');
        let after_open = &from_quote[quote.len_utf8()..];
        match after_open.find(quote) {
            Some(end) => {
                let inner = &after_open[..end];
                let keep = quote == '`'
                    && inner.len() <= 40
                    && keyhaven_core::parse(inner).is_err()
                    && inner.bytes().all(|b| b.is_ascii_graphic());
                out.push(quote);
                out.push_str(if keep { inner } else { "…" });
                out.push(quote);
                rest = &after_open[end + quote.len_utf8()..];
            }
            None => {
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `Path` with problem+json rejections.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|_| ApiError::NotFound)
    }
}

/// `Query` with problem+json rejections.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("Invalid query string: {}", redact(&e.body_text())),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_values_and_keeps_field_names() {
        let m = r#"invalid type: string "acme_live_secretstuff", expected a boolean at line 1"#;
        assert_eq!(
            redact(m),
            r#"invalid type: string "…", expected a boolean at line 1"#
        );
        let m = "unknown field `nmae`, expected one of `name`, `prefix`";
        assert_eq!(redact(m), m);
        let long = format!("unknown field `{}`", "x".repeat(60));
        assert_eq!(redact(&long), "unknown field `…`");
        assert_eq!(redact("unterminated \"abc"), "unterminated …");
    }
}
