//! A proxy node following the central server's change stream (`GET /v1/changes`):
//! each `key` event drops that key's cached admissions, `all` and `reset` drop every
//! one, and every event or heartbeat tells the cache the stream is alive. On a broken
//! stream it reconnects with its last cursor (backing off to 2 s); meanwhile the cache
//! goes unused once the stream has been silent for `cache_coherence_ms`.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::remote::Remote;

/// Follows the stream until the task is aborted.
pub async fn follow(remote: Arc<Remote>) {
    let mut cursor: Option<String> = None;
    let mut retry = Duration::from_millis(100);
    loop {
        match stream_once(&remote, &mut cursor).await {
            Ok(()) => retry = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, "change stream lost; reconnecting"),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_secs(2));
    }
}

/// One connection: reads events until the stream ends or breaks.
async fn stream_once(remote: &Remote, cursor: &mut Option<String>) -> anyhow::Result<()> {
    let mut request = remote
        .http()
        .get(remote.changes_url())
        .bearer_auth(remote.root_key().expose_secret())
        .header("accept", "text/event-stream")
        // The client's whole-request timeout would end an endless stream.
        .timeout(Duration::from_secs(365 * 24 * 3600));
    if let Some(id) = cursor.as_deref() {
        request = request.header("last-event-id", id);
    }
    let mut response = request.send().await.map_err(reqwest::Error::without_url)?;
    anyhow::ensure!(
        response.status().is_success(),
        "the change stream answered {}",
        response.status()
    );
    tracing::info!("following the central server's change stream");
    let mut pending = Vec::new();
    // A half-open connection sends nothing: past twice the coherence bound (eight
    // heartbeats) without a byte, reconnect.
    let silence = remote.coherence() * 2;
    while let Some(chunk) = tokio::time::timeout(silence, response.chunk())
        .await
        .map_err(|_| anyhow::anyhow!("the change stream went silent"))?
        .map_err(reqwest::Error::without_url)?
    {
        pending.extend_from_slice(&chunk);
        while let Some(end) = find_blank_line(&pending) {
            let frame: Vec<u8> = pending.drain(..end).collect();
            apply(remote, &String::from_utf8_lossy(&frame), cursor);
        }
        anyhow::ensure!(pending.len() <= 64 * 1024, "an event longer than 64 KiB");
    }
    Ok(())
}

/// The end of the first complete event (after its blank line).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|at| at + 2)
}

/// One event: `id:`, `event:` and `data:` lines.
fn apply(remote: &Remote, frame: &str, cursor: &mut Option<String>) {
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
    match kind {
        "key" => match serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v.get("key_id")?.as_str().map(str::to_owned))
        {
            Some(key_id) => remote.invalidate_key(&key_id),
            None => remote.invalidate_all(),
        },
        "all" | "reset" => remote.invalidate_all(),
        "heartbeat" => {}
        // An event this node does not know may invalidate anything.
        _ => remote.invalidate_all(),
    }
    // Only a heartbeat (or a reset, which the server sends once it can vouch again) says
    // "everything up to here was sent": a node whose own feed is down still sends the
    // events of its own changes, but no heartbeat.
    if matches!(kind, "heartbeat" | "reset") {
        remote.heard();
    }
    if id.is_some() {
        *cursor = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_a_blank_line() {
        assert_eq!(find_blank_line(b"id: 1\nevent: key\n"), None);
        assert_eq!(find_blank_line(b"id: 1\n\nid: 2"), Some(7));
    }
}
