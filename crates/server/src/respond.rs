//! JSON answers: a body with its content type, and the answer of an idempotent
//! operation (fresh, or replayed and marked `idempotent-replayed: true`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyhaven_service::idempotency::{Done, Rendered};
use serde::Serialize;

use crate::error::ApiError;

pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An answer rendered for an operation to store with its change (idempotent replays).
pub fn render<T: Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<Rendered, keyhaven_service::ServiceError> {
    let body = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
    Ok(Rendered {
        status: status.as_u16(),
        body: zeroize::Zeroizing::new(body),
    })
}

pub fn to_body<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::Unexpected(e.into()))
}

/// The answer of an idempotent operation: fresh, or replayed (marked as such).
pub fn answer(done: Done) -> Response {
    match done {
        Done::Fresh(fresh) => {
            let status = StatusCode::from_u16(fresh.status).unwrap_or(StatusCode::OK);
            json_response(status, fresh.body.to_vec())
        }
        Done::Replayed(stored) => replayed(stored),
    }
}

fn replayed(stored: Rendered) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = json_response(status, stored.body.to_vec());
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// A wait in microseconds as whole milliseconds, rounded up (`retry_after_ms`): a caller
/// that waits the milliseconds said never comes back early.
pub fn ceil_ms(us: i64) -> u64 {
    u64::try_from((us.max(0) + 999) / 1000).unwrap_or(0)
}

/// Unix microseconds written as RFC 3339 UTC with milliseconds
/// (`2026-11-23T10:00:00.600Z`): rate-limit resets are sub-second. Written by hand
/// because a general formatter was a visible share of a limited verify's cost.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339Micros(pub i64);

impl Serialize for Rfc3339Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ms = self.0.div_euclid(1_000);
        let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1_000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let (h, mi, sec) = t.to_hms();
        let fields = [
            (u32::try_from(t.year()).unwrap_or(0), 4),
            (u32::from(u8::from(t.month())), 2),
            (u32::from(t.day()), 2),
            (u32::from(h), 2),
            (u32::from(mi), 2),
            (u32::from(sec), 2),
            (u32::try_from(ms.rem_euclid(1_000)).unwrap_or(0), 3),
        ];
        // `YYYY-MM-DDTHH:MM:SS.mmmZ`: each field's digits, then its separator.
        let mut buf = *b"0000-00-00T00:00:00.000Z";
        let mut at = 0;
        for (value, width) in fields {
            let mut v = value;
            for i in (0..width).rev() {
                if let Some(b) = buf.get_mut(at + i) {
                    *b = b'0' + u8::try_from(v % 10).unwrap_or(0);
                }
                v /= 10;
            }
            at += width + 1;
        }
        s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

/// An IP allowlist as the API shows it: its networks in CIDR form, `[]` for none.
pub fn allowlist_view(list: Option<&keyhaven_core::IpAllowlist>) -> Vec<String> {
    list.map(keyhaven_core::IpAllowlist::entries)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_are_rfc3339_with_milliseconds() {
        let text = |us: i64| serde_json::to_string(&Rfc3339Micros(us)).unwrap();
        assert_eq!(text(0), "\"1970-01-01T00:00:00.000Z\"");
        // 2026-11-23T19:58:21.123456Z
        assert_eq!(text(1_795_463_901_123_456), "\"2026-11-23T19:58:21.123Z\"");
        assert_eq!(text(1_795_463_901_999_999), "\"2026-11-23T19:58:21.999Z\"");
    }
}
