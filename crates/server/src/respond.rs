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
