//! `GET /v1/changes`: the verify cache's invalidations as server-sent events, for remote
//! caches (the proxy node, client libraries). What the events mean and what a follower
//! may rely on is the service's ([`keyhaven_service::changes`]); this handler picks the
//! cursor, opens the subscription and writes each event as an SSE frame.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Frame;
use keyhaven_service::changes::{Event, Subscription};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::RootAuth;
use crate::error::{ApiError, ClientError};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The header a reconnecting `EventSource` sends its last event's id in.
pub const LAST_EVENT_ID: &str = "last-event-id";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangesParams {
    /// Resume after this event id (`<epoch>-<sequence>`), for clients that cannot set
    /// `Last-Event-ID` (which wins when both are given).
    #[param(max_length = 64)]
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/changes", tag = "changes", operation_id = "changes_stream",
    params(ChangesParams,
        ("Last-Event-ID" = Option<String>, Header,
            description = "Resume after this event id (`<epoch>-<sequence>`).")),
    responses(
        (status = 200, description = "An endless stream of server-sent events \
            (`text/event-stream`), one per invalidation of the verify cache. Every event \
            has an `id` (`<epoch>-<sequence>`, the resume cursor), an `event` name and one \
            line of JSON `data`: `key` `{\"key_id\": \"...\"}` (drop that key's cached \
            answers; a root key limited to keyspaces gets `all` instead), `all` `{}` (an \
            owner, keyspace or import changed: drop every cached answer), `reset` `{}` \
            (the cursor could not be honoured, events were missed, or this node's own \
            cache was reset: drop every cached answer), `heartbeat` `{}` (every quarter of \
            `cache_coherence_ms`, only while this node can vouch for its cache). Without \
            a cursor the stream opens with a heartbeat naming the newest event. A \
            follower must stop trusting its cache once the stream has been silent for \
            `cache_coherence_ms`. The stream ends when the server shuts down or the root \
            key stops working (revoked, disabled, its scopes changed, expired, or its \
            rotation's grace period over); reconnect with the last id.",
            body = String, content_type = "text/event-stream"),
        (status = 503, description = "Too many change streams are open (problem \
            `too_many_streams`); retry after `Retry-After` seconds.",
            body = crate::error::Problem, content_type = crate::error::PROBLEM_CONTENT_TYPE),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    auth: RootAuth,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ChangesParams>,
) -> Result<Response, ApiError> {
    let cursor = match headers.get(LAST_EVENT_ID) {
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::bad_request("invalid_cursor", "Last-Event-ID is not a cursor")
        })?),
        None => params.cursor.as_deref(),
    };
    let Some(subscription) = keyhaven_service::streams::subscribe(&state, &auth, cursor)? else {
        return Ok(too_many_streams());
    };
    let mut response = Body::new(EventStream::new(subscription)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx would otherwise hold events back in its buffer.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn too_many_streams() -> Response {
    let mut problem = ApiError::Timeout.problem();
    problem.code = "too_many_streams".to_owned();
    problem.kind = "urn:keyhaven:problem:too_many_streams".to_owned();
    problem.detail = "Too many change streams are open; retry later.".to_owned();
    let mut response = crate::error::problem_response(&problem);
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// One event as an SSE frame.
pub fn frame(event: &Event) -> String {
    format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.id,
        event.kind.name(),
        event.kind.data()
    )
}

type Step = Pin<Box<dyn Future<Output = Option<(Bytes, Subscription)>> + Send>>;

/// The response body: each event written as soon as it comes; ends with the
/// subscription. Dropping it (the client went away) drops the subscription.
struct EventStream {
    step: Option<Step>,
}

impl EventStream {
    fn new(subscription: Subscription) -> Self {
        Self {
            step: Some(next(subscription)),
        }
    }
}

fn next(mut subscription: Subscription) -> Step {
    Box::pin(async move {
        let event = subscription.next().await?;
        Some((Bytes::from(frame(&event)), subscription))
    })
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(step) = self.step.as_mut() else {
            return Poll::Ready(None);
        };
        match step.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.step = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some((bytes, subscription))) => {
                self.step = Some(next(subscription));
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.step.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyhaven_service::changes::EventKind;

    #[test]
    fn frames_are_sse_with_one_line_of_json() {
        let event = Event {
            id: "abc-7".into(),
            kind: EventKind::Key("k1".into()),
        };
        assert_eq!(
            frame(&event),
            "id: abc-7\nevent: key\ndata: {\"key_id\":\"k1\"}\n\n"
        );
    }
}
