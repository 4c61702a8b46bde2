//! Following the server's change stream (`GET /v1/changes`, server-sent events) for the
//! cache: each `key` event drops that key's answers, `all`, `reset` and any unknown event
//! drop every one, and a `heartbeat` or `reset` tells the cache the stream vouches. On a
//! broken stream it reconnects with its last cursor in `Last-Event-ID`, backing off to
//! 2 s; a stream that sends no byte for twice the coherence bound is dropped and
//! reconnected (a half-open connection says nothing). Meanwhile the cache goes unused.
//!
//! The same rules as the `keyhaven proxy` node's follower
//! (`crates/server/src/gateway/follow.rs`); the client keeps its own copy because it
//! must not depend on the server crate.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::cache::VerifyCache;
use crate::error::transport_detail;
use crate::transport::Transport;

/// Longest event accepted; a longer one is a broken stream.
const MAX_EVENT: usize = 64 * 1024;

/// Follows the stream until the task is aborted.
pub(crate) async fn follow(transport: Arc<Transport>, cache: Arc<VerifyCache>) {
    let mut cursor: Option<String> = None;
    let mut retry = Duration::from_millis(100);
    loop {
        match stream_once(&transport, &cache, &mut cursor).await {
            Ok(()) => retry = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, "Keyhaven change stream lost; reconnecting"),
        }
        cache.lost();
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_secs(2));
    }
}

/// One connection: reads events until the stream ends or breaks.
async fn stream_once(
    transport: &Transport,
    cache: &VerifyCache,
    cursor: &mut Option<String>,
) -> Result<(), String> {
    let mut request = transport
        .http()
        .get(transport.url("/v1/changes"))
        .bearer_auth(transport.root_key().expose_secret())
        .header("accept", "text/event-stream")
        // The client's whole-request timeout would end an endless stream.
        .timeout(Duration::from_secs(365 * 24 * 3600));
    if let Some(id) = cursor.as_deref() {
        request = request.header("last-event-id", id);
    }
    let mut response = request.send().await.map_err(transport_detail)?;
    if !response.status().is_success() {
        return Err(format!("the change stream answered {}", response.status()));
    }
    tracing::debug!("following Keyhaven's change stream");
    let mut pending = Vec::new();
    let silence = cache.coherence() * 2;
    loop {
        let chunk = tokio::time::timeout(silence, response.chunk())
            .await
            .map_err(|_| "the change stream went silent".to_owned())?
            .map_err(transport_detail)?;
        let Some(chunk) = chunk else { return Ok(()) };
        pending.extend_from_slice(&chunk);
        while let Some(end) = event_end(&pending) {
            let frame: Vec<u8> = pending.drain(..end).collect();
            apply(cache, &String::from_utf8_lossy(&frame), cursor);
        }
        if pending.len() > MAX_EVENT {
            return Err("an event longer than 64 KiB".to_owned());
        }
    }
}

/// The end of the first complete event (after its blank line; `\r\n` line ends too).
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|at| at + 2);
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One event: its `id:`, `event:` and `data:` lines.
fn apply(cache: &VerifyCache, frame: &str, cursor: &mut Option<String>) {
    let (mut kind, mut data, mut id) = ("message", "", None);
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            data = v.trim();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_owned());
        }
    }
    if frame.lines().all(|l| l.is_empty() || l.starts_with(':')) {
        // A comment or keep-alive: nothing happened.
        return;
    }
    match kind {
        "key" => match serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v.get("key_id")?.as_str().map(str::to_owned))
        {
            Some(key_id) => cache.invalidate_key(&key_id),
            None => cache.invalidate_all(),
        },
        "heartbeat" => {}
        // `all`, `reset`, and an event this client does not know, which may mean anything.
        _ => cache.invalidate_all(),
    }
    // Only a heartbeat (or a reset, which the server sends once it can vouch again) says
    // "everything up to here was sent".
    if matches!(kind, "heartbeat" | "reset") {
        cache.heard();
    }
    if id.is_some() {
        *cursor = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheOptions, digest};
    use crate::types::{VerifyCode, VerifyOptions, VerifyResponse};

    fn cached(cache: &VerifyCache, key: &str, key_id: &str) {
        let mut r = VerifyResponse::refused(VerifyCode::Valid);
        r.valid = true;
        r.key_id = Some(key_id.into());
        cache.offer(
            digest(key, None),
            cache.ticket(),
            &VerifyOptions::new(),
            &Arc::new(r),
        );
    }

    fn hit(cache: &VerifyCache, key: &str) -> bool {
        cache
            .lookup(&digest(key, None), &VerifyOptions::new())
            .is_some()
    }

    #[test]
    fn events_end_at_a_blank_line() {
        assert_eq!(event_end(b"id: 1\nevent: key\n"), None);
        assert_eq!(event_end(b"id: 1\n\nid: 2"), Some(7));
        assert_eq!(event_end(b"id: 1\r\n\r\nid: 2"), Some(9));
    }

    #[test]
    fn events_act_on_the_cache_and_move_the_cursor() {
        let cache = VerifyCache::new(&CacheOptions::default());
        let mut cursor = None;
        assert!(!cache.coherent());
        apply(
            &cache,
            "id: e-0\nevent: heartbeat\ndata: {}\n\n",
            &mut cursor,
        );
        assert!(cache.coherent());
        assert_eq!(cursor.as_deref(), Some("e-0"));
        cached(&cache, "a", "id1");
        cached(&cache, "b", "id2");
        apply(
            &cache,
            "id: e-1\nevent: key\ndata: {\"key_id\":\"id1\"}\n\n",
            &mut cursor,
        );
        assert!(!hit(&cache, "a"));
        assert!(hit(&cache, "b"));
        apply(&cache, ": keep-alive\n\n", &mut cursor);
        assert!(hit(&cache, "b"));
        apply(
            &cache,
            "id: e-2\nevent: something_new\ndata: {}\n\n",
            &mut cursor,
        );
        assert!(!hit(&cache, "b"), "an unknown event drops everything");
        cached(&cache, "c", "id3");
        apply(
            &cache,
            "id: e-3\nevent: key\ndata: nonsense\n\n",
            &mut cursor,
        );
        assert!(
            !hit(&cache, "c"),
            "an unreadable key event drops everything"
        );
        cached(&cache, "d", "id4");
        apply(&cache, "id: f-0\nevent: reset\ndata: {}\n\n", &mut cursor);
        assert!(!hit(&cache, "d"));
        assert_eq!(cursor.as_deref(), Some("f-0"));
    }
}
