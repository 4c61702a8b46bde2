//! Extractors that answer bad input in the API's own error shape (problem+json) instead
//! of axum's plain-text rejections, and never echo request values back: a client that
//! put a key in the wrong field must not see it in an error message or a log.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use serde_path_to_error::Segment;

use keyhaven_service::idempotency;
use keyhaven_service::validate::redact;

use crate::error::ApiError;
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

/// Whether reading the body failed because it stalled (see `connections::BodyStalled`).
pub(crate) fn stalled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<crate::connections::BodyStalled>() {
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
            Category::Data => match integer_field_error::<T>(bytes) {
                Some(detail) => return ApiError::invalid(detail),
                None => "validation_failed",
            },
            _ => "malformed_json",
        };
        ApiError::bad_request(
            code,
            format!("Invalid request body: {}", redact(&e.to_string())),
        )
    })
}

/// For a body refused because an integer field holds something else (`3003.0`, `1e3`,
/// `"5"`, `-1` for a count), a message naming the field and saying it must be a whole
/// number, without the value. Parses the body again, tracking where it failed: only
/// on this error path, so an accepted body (a verify) pays nothing for it.
fn integer_field_error<T: DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let error = serde_path_to_error::deserialize::<_, T>(&mut de).err()?;
    let field = field_path(error.path())?;
    let must_be = integer_problem(&error.inner().to_string())?;
    Some(format!("Invalid request body: {field} must be {must_be}"))
}

/// `ratelimits[0].limit`: the path to a value, when it runs through field names and
/// array indices only.
fn field_path(path: &serde_path_to_error::Path) -> Option<String> {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if is_field_name(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a path segment looks like one of our field names (request bodies hold no
/// maps of integers, so an integer's path never runs through a client's map key; this is
/// the belt to those braces).
fn is_field_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    key.len() <= 40
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && keyhaven_core::parse(key).is_err()
}

/// What an integer field's value must be, from serde's message about it (`invalid type:
/// floating point `1.5`, expected u64 at line 1 column 9`); `None` when the field that
/// refused the value is not an integer.
fn integer_problem(message: &str) -> Option<String> {
    let message = message.rsplit_once(" at line ").map_or(message, |(m, _)| m);
    let (unexpected, expected) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?
        .rsplit_once(", expected ")?;
    let (min, max): (i128, i128) = match expected {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    };
    let range = format!("a whole number from {min} to {max}");
    let got = if let Some(float) = unexpected.strip_prefix("floating point `") {
        // An integer too large for a u64 (`1e20` or `100000000000000000000`) reaches
        // serde as a float too: say so by the range, not by the way it was written.
        let value: f64 = float.trim_end_matches('`').parse().ok()?;
        // `as` saturates, and is exact for a whole number in i128's range.
        if value.fract() == 0.0 && !(min..=max).contains(&(value as i128)) {
            return Some(range);
        }
        "a number with a fraction or exponent"
    } else if unexpected.starts_with("integer `") {
        return Some(range);
    } else if unexpected.starts_with("string ") {
        "a string"
    } else if unexpected.starts_with("boolean ") {
        "a boolean"
    } else if unexpected == "null" || unexpected == "unit value" {
        "null"
    } else if unexpected == "sequence" {
        "an array"
    } else if unexpected == "map" {
        "an object"
    } else {
        return Some("a whole number".to_owned());
    };
    Some(format!("a whole number (got {got})"))
}

/// The request's `Idempotency-Key` header, if any: 1–255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

/// The header carrying an idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_HEADER) else {
            return Ok(Self(None));
        };
        let text = value
            .to_str()
            .ok()
            .filter(|t| idempotency::valid_key(t))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1-255 visible ASCII characters.",
                )
            })?;
        Ok(Self(Some(text.to_owned())))
    }
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

    fn refused<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> (String, String) {
        let problem = parse_json::<T>(body.as_bytes()).unwrap_err().problem();
        (problem.code, problem.detail)
    }

    #[test]
    fn a_float_for_an_integer_field_names_the_field_and_not_the_value() {
        use keyhaven_service::keys::RotateKey;
        let fraction = "Invalid request body: grace_period_seconds must be a whole number \
                        (got a number with a fraction or exponent)";
        for body in [
            r#"{"grace_period_seconds": 3003.0}"#,
            r#"{"grace_period_seconds": 30.5}"#,
            r#"{"grace_period_seconds": 3e3}"#,
        ] {
            let (code, detail) = refused::<RotateKey>(body);
            assert_eq!(
                (code.as_str(), detail.as_str()),
                ("validation_failed", fraction)
            );
        }
        let (code, detail) = refused::<RotateKey>(r#"{"grace_period_seconds": "acme_live_x1"}"#);
        assert_eq!(code, "validation_failed");
        assert_eq!(
            detail,
            "Invalid request body: grace_period_seconds must be a whole number (got a string)"
        );
        let range = "Invalid request body: grace_period_seconds must be a whole number from 0 \
                     to 18446744073709551615";
        for body in [
            r#"{"grace_period_seconds": -7}"#,
            r#"{"grace_period_seconds": 100000000000000000000}"#,
            r#"{"grace_period_seconds": 18446744073709551616}"#,
        ] {
            assert_eq!(refused::<RotateKey>(body).1, range, "{body}");
        }
        assert_eq!(
            parse_json::<RotateKey>(br#"{"grace_period_seconds": 3003}"#)
                .unwrap()
                .grace_period_seconds,
            Some(3003)
        );
    }

    #[test]
    fn nested_and_nullable_integer_fields_are_named_by_their_path() {
        use crate::routes::verify::VerifyRequest;
        use keyhaven_service::keyspaces::{CreateKeyspace, UpdateKeyspace};
        let body = r#"{"name": "a", "prefix": "a",
            "ratelimits": [{"name": "x", "limit": 1, "duration_ms": 1000},
                           {"name": "y", "limit": 2.5, "duration_ms": 1000}]}"#;
        assert_eq!(
            refused::<CreateKeyspace>(body).1,
            "Invalid request body: ratelimits[1].limit must be a whole number \
             (got a number with a fraction or exponent)"
        );
        let body = r#"{"name": "a", "prefix": "a",
            "ratelimits": [{"name": "x", "limit": null, "duration_ms": 1000}]}"#;
        assert_eq!(
            refused::<CreateKeyspace>(body).1,
            "Invalid request body: ratelimits[0].limit must be a whole number (got null)"
        );
        let body = r#"{"name": "a", "prefix": "a", "alerts": {"spike_factor": true}}"#;
        assert_eq!(
            refused::<CreateKeyspace>(body).1,
            "Invalid request body: alerts.spike_factor must be a whole number (got a boolean)"
        );
        assert_eq!(
            refused::<UpdateKeyspace>(r#"{"expiry_warning_seconds": 86400.0}"#).1,
            "Invalid request body: expiry_warning_seconds must be a whole number \
             (got a number with a fraction or exponent)"
        );
        let (_, detail) = refused::<VerifyRequest>(r#"{"key": "acme_live_secret", "cost": 2.0}"#);
        assert_eq!(
            detail,
            "Invalid request body: cost must be a whole number \
             (got a number with a fraction or exponent)"
        );
    }

    #[test]
    fn other_body_errors_keep_their_wording() {
        use keyhaven_service::keys::RotateKey;
        use keyhaven_service::webhooks::UpdateWebhook;
        let (code, detail) = refused::<UpdateWebhook>(r#"{"enabled": "acme_live_secret"}"#);
        assert_eq!(code, "validation_failed");
        assert_eq!(
            detail,
            r#"Invalid request body: invalid type: string "…", expected a boolean at line 1 column 30"#
        );
        let (code, _) = refused::<RotateKey>(r#"{"grace_period_seconds": 3"#);
        assert_eq!(code, "malformed_json");
        let (code, detail) = refused::<RotateKey>(r#"{"grace": 3}"#);
        assert_eq!(code, "validation_failed");
        assert!(detail.contains("unknown field `grace`"), "{detail}");
    }

    #[test]
    fn only_segments_that_look_like_field_names_are_named() {
        let path = |body: &str| {
            let mut de = serde_json::Deserializer::from_slice(body.as_bytes());
            let e = serde_path_to_error::deserialize::<_, std::collections::BTreeMap<String, u8>>(
                &mut de,
            )
            .unwrap_err();
            field_path(e.path())
        };
        assert_eq!(path(r#"{"day": 1.5}"#).as_deref(), Some("day"));
        assert_eq!(path(r#"{"acme_live_7Gx9QbWkP2mZ": 1.5}"#), None);
        assert_eq!(path(r#"{"sk-secret": 1.5}"#), None);
    }
}
