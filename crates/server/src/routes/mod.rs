//! HTTP handlers, one module per resource. Shared here: pagination cursors, building
//! audit events, idempotent replay, and JSON responses.

pub mod audit;
pub mod health;
pub mod keys;
pub mod keyspaces;
pub mod owners;
pub mod usage;
pub mod verify;
pub mod webhooks;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyhaven_store::{AuditEvent, IdempotentResponse, PageRequest, StoreError, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use keyhaven_service::idempotency::{self, Done, Rendered};
use keyhaven_service::ids;

use crate::auth::RootAuth;
use crate::error::ApiError;
use crate::extract::IdempotencyKey;
use crate::state::AppState;

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

/// Turns `limit` and `cursor` query parameters into a page request.
pub fn page_request(limit: Option<u32>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    let (sort, page) = sorted_page_request(limit, cursor)?;
    if sort.is_some() {
        return Err(invalid_cursor());
    }
    Ok(page)
}

/// As [`page_request`], for lists ordered by a value before the sequence number: the
/// cursor then also carries the last row's value.
pub fn sorted_page_request(
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Option<i64>, PageRequest), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let (sort, after) = match cursor.map(decode_cursor).transpose()? {
        Some((sort, seq)) => (sort, Some(seq)),
        None => (None, None),
    };
    Ok((sort, PageRequest { limit, after }))
}

pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{seq}"))
}

/// The cursor of a list ordered by `value`, then sequence number.
pub fn encode_sorted_cursor(value: i64, seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{value}:{seq}"))
}

fn invalid_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "cursor is not one this server returned; pass next_cursor back unchanged",
    )
}

fn decode_cursor(cursor: &str) -> Result<(Option<i64>, i64), ApiError> {
    let invalid = invalid_cursor;
    if cursor.len() > 64 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
    let rest = text.strip_prefix("v1:").ok_or_else(invalid)?;
    let (sort, seq) = match rest.split_once(':') {
        Some((value, seq)) => (
            Some(
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|v| *v >= 0)
                    .ok_or_else(invalid)?,
            ),
            seq,
        ),
        None => (None, rest),
    };
    let seq = seq
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(invalid)?;
    Ok((sort, seq))
}

/// `{data: [...], next_cursor}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    pub fn new(data: Vec<T>, next: Option<i64>) -> Self {
        Self {
            data,
            next_cursor: next.map(encode_cursor),
        }
    }
}

pub use keyhaven_service::audit::{created, diff};

/// Builds the audit event for a change made by `auth`.
pub fn audit_event(
    auth: &RootAuth,
    action: &str,
    target: (&str, &str),
    keyspace_id: Option<&str>,
    changes: Map<String, Value>,
    now: Timestamp,
) -> Result<AuditEvent, ApiError> {
    Ok(keyhaven_service::audit::event(
        auth,
        action,
        target,
        keyspace_id,
        changes,
        now,
    )?)
}

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

/// Idempotency for one POST, answering in HTTP terms (the rules are the service's
/// [`keyhaven_service::idempotency::Idempotent`]).
#[derive(Debug)]
pub struct Idempotent<'a>(idempotency::Idempotent<'a>);

impl<'a> Idempotent<'a> {
    pub fn new(
        state: &'a AppState,
        auth: &'a RootAuth,
        key: IdempotencyKey,
        request_hash: [u8; 32],
    ) -> Self {
        Self(idempotency::Idempotent::new(
            state,
            auth,
            key.0,
            request_hash,
        ))
    }

    /// The stored response if this request was already answered; 422 if the key was used
    /// for a different request.
    pub async fn replay(&self) -> Result<Option<Response>, ApiError> {
        Ok(self.0.replay().await?.map(replayed))
    }

    /// The record to store with the change, when the request carried a key.
    pub fn record(
        &self,
        status: StatusCode,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Option<IdempotentResponse>, ApiError> {
        let answer = Rendered {
            status: status.as_u16(),
            body: zeroize::Zeroizing::new(body.to_vec()),
        };
        Ok(self.0.record(&answer, now)?)
    }

    /// Maps a store error, replaying when a concurrent twin of this request won.
    pub async fn on_error(&self, e: StoreError) -> Result<Response, ApiError> {
        let placeholder = Rendered {
            status: 500,
            body: zeroize::Zeroizing::new(Vec::new()),
        };
        match self.0.finish(Err(e), placeholder).await? {
            Done::Replayed(stored) | Done::Fresh(stored) => Ok(replayed(stored)),
        }
    }
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

/// Validates a display name: 1–200 characters, no control characters.
pub fn validate_name(field: &str, value: &str) -> Result<(), ApiError> {
    let len = value.chars().count();
    if len == 0 || len > 200 || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field} must be 1-200 characters without control characters"
        )));
    }
    Ok(())
}

pub const MAX_META_BYTES: usize = 16 * 1024;

pub fn validate_meta(meta: &Map<String, Value>) -> Result<(), ApiError> {
    let size = serde_json::to_vec(meta)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_META_BYTES {
        return Err(ApiError::invalid(format!(
            "meta must serialize to at most {MAX_META_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Deserializes a field that distinguishes "absent" (`None`) from `null`
/// (`Some(None)`), for PATCH bodies.
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), (None, 42));
        assert_eq!(
            decode_cursor(&encode_sorted_cursor(1_700_000_000, 42)).unwrap(),
            (Some(1_700_000_000), 42)
        );
        let sorted = encode_sorted_cursor(7, 3);
        assert!(
            page_request(None, Some(&sorted)).is_err(),
            "a sorted list's cursor is refused by an unsorted list"
        );
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v1:-1:5")).is_err());
        for bad in ["", "xyz", "djE6", "djE6LTE", &"a".repeat(100), "v1:5"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
        assert!(page_request(Some(0), None).is_err());
        assert!(page_request(Some(MAX_PAGE + 1), None).is_err());
        assert_eq!(page_request(None, None).unwrap().limit, DEFAULT_PAGE);
    }
}
