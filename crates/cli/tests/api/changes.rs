//! `GET /v1/changes`: the change stream remote caches follow, read as a client would, over
//! a real socket: who may open it, that a revocation, an owner or keyspace change arrives
//! promptly, heartbeats, resuming from a cursor, the end of the stream at shutdown, and
//! (PostgreSQL) a change made through one node arriving on another node's stream.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

/// A client's side of an open stream, with a minimal SSE parser (`id`, `event`, `data`
/// lines; a blank line ends an event).
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(base: &str, root: &str, last_event_id: Option<&str>, query: &str) -> Self {
        let mut request = http_client()
            .get(format!("{base}/v1/changes{query}"))
            .bearer_auth(root);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event within `within`; `None` when none came (or the stream ended).
    async fn next(&mut self, within: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Sse {
                    id: String::new(),
                    event: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        event.id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(v).unwrap();
                    }
                }
                return Some(event);
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(Ok(None) | Err(_)) | Err(_) => return None,
            }
        }
    }

    /// The next event that is not a heartbeat, within `within`.
    async fn change(&mut self, within: Duration) -> Option<Sse> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.next(left).await?;
            if event.event != "heartbeat" {
                return Some(event);
            }
        }
    }

    /// Whether the stream ends (the server closes it) within `within`.
    async fn ends(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None) | Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }
}

const PROMPTLY: Duration = Duration::from_secs(1);

/// A new stream's first event: a heartbeat naming the newest cursor. On PostgreSQL a
/// node whose change feed has not confirmed itself yet (just started) sends no heartbeat
/// but `reset` once it has; before that, the feed may bring back this test's own setup
/// (the root key's creation) as `key` events, which are skipped here.
async fn opening(stream: &mut Stream) -> Sse {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let first = stream.next(left).await.expect("the stream's first event");
        if first.event == "heartbeat" || (on_postgres() && first.event == "reset") {
            return first;
        }
        assert!(on_postgres() && first.event == "key", "{first:?}");
    }
}

async fn keyspace_and_keys(app: &TestApp, prefix: &str, n: usize) -> (String, Vec<String>) {
    let ks = app.create_keyspace(prefix).await.id;
    let mut ids = Vec::new();
    for _ in 0..n {
        let key = app.create_key(json!({ "keyspace_id": ks })).await;
        ids.push(key.record.key_id);
    }
    (ks, ids)
}

async fn revoke(app: &TestApp, key_id: &str) {
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{key_id}/revoke"),
            Some(&json!({ "reason": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn only_a_root_key_with_keys_verify_may_follow_and_garbage_cursors_are_refused() {
    let app = spawn_app().await;
    let anonymous = app.http.get(app.url("/v1/changes")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let reader = app.root_key(&["keys:read"], None).await;
    let (status, body) = app.send_as(&reader, Method::GET, "/v1/changes", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "insufficient_scope");
    for (header, query) in [
        (Some("not-a-cursor"), ""),
        (None, "?cursor=../../etc"),
        (None, "?cursor=abc-1"),
    ] {
        let mut request = app.request(Method::GET, &format!("/v1/changes{query}"));
        if let Some(h) = header {
            request = request.header("Last-Event-ID", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{header:?} {query}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_cursor");
    }
}

#[tokio::test]
async fn a_revocation_reaches_the_stream_within_a_second_every_time() {
    let app = spawn_app().await;
    let (_, ids) = keyspace_and_keys(&app, "chg", 100).await;
    let mut stream = Stream::open(&app.base, &app.root_key, None, "").await;
    opening(&mut stream).await;
    let mut took = Vec::new();
    for id in &ids {
        let start = Instant::now();
        revoke(&app, id).await;
        loop {
            let event = stream
                .change(PROMPTLY)
                .await
                .unwrap_or_else(|| panic!("no event for {id} within 1 s"));
            // On PostgreSQL the node's own change also comes back through its feed.
            if event.event == "key" && event.data["key_id"] == id.as_str() {
                break;
            }
            assert_eq!(event.event, "key", "{event:?}");
        }
        took.push(start.elapsed());
    }
    took.sort();
    eprintln!(
        "revocation → event: p50 {:?}, max {:?} over {} trials",
        took[took.len() / 2],
        took[took.len() - 1],
        took.len()
    );
    assert!(took.iter().all(|t| *t < PROMPTLY));
}

#[tokio::test]
async fn owner_and_keyspace_changes_drop_everything_and_restricted_keys_see_no_key_ids() {
    let app = spawn_app().await;
    let (ks, ids) = keyspace_and_keys(&app, "chgall", 1).await;
    let (status, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({ "external_id": "cus_1" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    let owner_id = owner["id"].as_str().unwrap();
    let restricted = app.root_key(&["keys:verify"], Some(&[&ks])).await;
    let mut stream = Stream::open(&app.base, &app.root_key, None, "").await;
    let mut limited = Stream::open(&app.base, &restricted, None, "").await;
    opening(&mut stream).await;
    opening(&mut limited).await;

    let (status, body) = app
        .send(
            Method::PATCH,
            &format!("/v1/owners/{owner_id}"),
            Some(&json!({ "name": "Renamed" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // (PostgreSQL: the feed may still bring back this test's setup, the keys' creation,
    // as `key` events; an owner change is never one.)
    let event = loop {
        let event = stream.change(PROMPTLY).await.unwrap();
        if !(on_postgres() && event.event == "key") {
            break event;
        }
    };
    assert_eq!((event.event.as_str(), &event.data), ("all", &json!({})));

    let (status, body) = app
        .send(
            Method::PATCH,
            &format!("/v1/keyspaces/{ks}"),
            Some(&json!({ "name": "renamed" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // (PostgreSQL: the owner change may come back once more through the feed.)
    let mut seen = Vec::new();
    while let Some(event) = stream.change(Duration::from_millis(300)).await {
        if !(on_postgres() && event.event == "key") {
            seen.push(event.event);
        }
    }
    assert!(
        !seen.is_empty() && seen.iter().all(|e| e == "all"),
        "{seen:?}"
    );

    revoke(&app, &ids[0]).await;
    let mut limited_seen = Vec::new();
    while let Some(event) = limited.change(Duration::from_millis(300)).await {
        limited_seen.push(event);
    }
    assert!(!limited_seen.is_empty());
    for event in &limited_seen {
        assert_eq!(event.event, "all", "{event:?}");
        assert!(!event.data.to_string().contains(&ids[0]));
    }
}

#[tokio::test]
async fn heartbeats_come_every_quarter_of_cache_coherence_ms() {
    let app = spawn_app_with(|c| c.cache_coherence_ms = 400).await;
    let mut stream = Stream::open(&app.base, &app.root_key, None, "").await;
    let mut cursor = opening(&mut stream).await.id;
    // A follower fails closed after 400 ms of silence: heartbeats must keep coming.
    let start = Instant::now();
    let mut beats = 0;
    let mut longest = Duration::ZERO;
    let mut last = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let event = stream.next(Duration::from_millis(400)).await.unwrap();
        longest = longest.max(last.elapsed());
        last = Instant::now();
        if event.event == "heartbeat" {
            assert_eq!(event.id, cursor, "nothing changed: the cursor stays");
            assert_eq!(event.data, json!({}));
            beats += 1;
        }
        cursor = event.id;
    }
    assert!(beats >= 5, "{beats} heartbeats in 2 s");
    eprintln!("{beats} heartbeats in 2 s, longest gap {longest:?}");
}

#[tokio::test]
async fn resuming_sends_exactly_the_missed_events_and_a_foreign_cursor_resets() {
    let app = spawn_app().await;
    let (_, ids) = keyspace_and_keys(&app, "chgres", 4).await;
    // A follower that never disconnects: what the resumed one must match.
    let mut live = Stream::open(&app.base, &app.root_key, None, "").await;
    opening(&mut live).await;
    let mut first = Stream::open(&app.base, &app.root_key, None, "").await;
    opening(&mut first).await;
    revoke(&app, &ids[0]).await;
    let cursor = first.change(PROMPTLY).await.unwrap().id;
    drop(first);

    revoke(&app, &ids[1]).await;
    revoke(&app, &ids[2]).await;
    let (status, _) = app
        .send(Method::DELETE, &format!("/v1/keys/{}", ids[3]), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut after = Vec::new();
    while let Some(event) = live.change(Duration::from_millis(500)).await {
        after.push(event);
    }
    let missed: Vec<Sse> = after
        .into_iter()
        .skip_while(|e| e.id != cursor)
        .skip(1)
        .collect();
    let missed_ids: Vec<&Value> = missed.iter().map(|e| &e.data["key_id"]).collect();
    for id in &ids[1..] {
        assert!(missed_ids.contains(&&json!(id)), "{id} not in {missed:?}");
    }

    for (header, query) in [
        (Some(cursor.as_str()), String::new()),
        (None, format!("?cursor={cursor}")),
    ] {
        let mut resumed = Stream::open(&app.base, &app.root_key, header, &query).await;
        let mut got = Vec::new();
        while let Some(event) = resumed.change(Duration::from_millis(300)).await {
            got.push(event);
        }
        assert_eq!(got, missed, "resumed with {header:?} {query}");
    }

    let foreign = "111111111111-3";
    let mut reset = Stream::open(&app.base, &app.root_key, Some(foreign), "").await;
    let event = reset.next(PROMPTLY).await.unwrap();
    assert_eq!((event.event.as_str(), &event.data), ("reset", &json!({})));
    assert_eq!(
        event.id,
        missed.last().unwrap().id,
        "reset names the newest cursor"
    );
}

#[tokio::test]
async fn streams_end_when_the_server_shuts_down() {
    let app = spawn_app().await;
    let (base, root) = (app.base.clone(), app.root_key.clone());
    let mut stream = Stream::open(&base, &root, None, "").await;
    opening(&mut stream).await;
    drop(app);
    assert!(
        stream.ends(Duration::from_secs(5)).await,
        "the stream outlived shutdown"
    );
    let gone = http_client()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(gone.is_err(), "the server still answers after its drain");
}

/// Two `keyhaven serve` processes on one PostgreSQL database: a revocation through node
/// A reaches a follower of node B's stream (through B's change feed) within a second.
#[tokio::test]
async fn postgres_a_change_through_one_node_reaches_another_nodes_stream() {
    if !on_postgres() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let a = spawn_process(data.path(), logs.path(), &[]).await;
    let root = a.first_root_key();
    let b = spawn_process(data.path(), logs.path(), &[]).await;
    let http = http_client();
    let ks = post_json(
        &http,
        &format!("{}/v1/keyspaces", a.base),
        &root,
        &json!({"name": "two", "prefix": "two"}),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let key = post_json(
            &http,
            &format!("{}/v1/keys", a.base),
            &root,
            &json!({ "keyspace_id": ks["id"] }),
        )
        .await;
        ids.push(key["key_id"].as_str().unwrap().to_owned());
    }
    let mut stream = Stream::open(&b.base, &root, None, "").await;
    // B vouches for its cache once its feed confirmed itself: a heartbeat, or `reset`
    // when it could not yet when the stream opened.
    let first = stream.next(Duration::from_secs(5)).await.unwrap();
    assert!(
        ["heartbeat", "reset"].contains(&first.event.as_str()),
        "{first:?}"
    );
    let mut took = Vec::new();
    for id in &ids {
        let start = Instant::now();
        let revoked = post_json(
            &http,
            &format!("{}/v1/keys/{id}/revoke", a.base),
            &root,
            &json!({ "reason": "test" }),
        )
        .await;
        assert!(revoked["revoked_at"].is_string(), "{revoked}");
        loop {
            let event = stream
                .change(PROMPTLY)
                .await
                .unwrap_or_else(|| panic!("{id}'s revocation never reached node B's stream"));
            if event.event == "key" && event.data["key_id"] == id.as_str() {
                break;
            }
        }
        took.push(start.elapsed());
    }
    took.sort();
    eprintln!(
        "node A revocation → node B event: p50 {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
}

/// A stream opened by a new root key with `keys:verify`: the key, its id, the stream
/// past its opening event.
async fn follower_stream(app: &TestApp) -> (String, String, Stream) {
    let follower = app.root_key(&["keys:verify"], None).await;
    let follower_id = keyhaven_core::parse(&follower).unwrap().key_id().to_owned();
    let mut stream = Stream::open(&app.base, &follower, None, "").await;
    opening(&mut stream).await;
    (follower, follower_id, stream)
}

/// The status of opening a stream again with `root`.
async fn reopen_status(app: &TestApp, root: &str) -> StatusCode {
    let again = app.http.get(app.url("/v1/changes")).bearer_auth(root);
    again.send().await.unwrap().status()
}

#[tokio::test]
async fn a_stream_ends_when_its_own_root_key_is_revoked() {
    let app = spawn_app().await;
    let (follower, follower_id, mut stream) = follower_stream(&app).await;
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{follower_id}/revoke"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        stream.ends(Duration::from_secs(2)).await,
        "the stream outlived its root key"
    );
    assert_eq!(
        reopen_status(&app, &follower).await,
        StatusCode::UNAUTHORIZED
    );
}

/// A change its root key still passes leaves the stream open: here a rotation with a
/// grace period (and on PostgreSQL the echo of the key's creation, which the change feed
/// brings back after the stream opened). The stream ends when the grace period does.
#[tokio::test]
async fn a_stream_outlives_a_rotation_of_its_root_key_until_the_grace_period_ends() {
    let app = spawn_app().await;
    let (follower, follower_id, mut stream) = follower_stream(&app).await;
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{follower_id}/rotate"),
            Some(&json!({"grace_period_seconds": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let rotated = Instant::now();
    loop {
        let event = stream.change(PROMPTLY).await.expect("the rotation's event");
        if event.event == "key" && event.data["key_id"] == follower_id.as_str() {
            break;
        }
    }
    assert!(
        !stream.ends(Duration::from_secs(1)).await,
        "the stream ended inside its root key's grace period"
    );
    // The server's clock (manual here) passes the end of the grace period; the stream,
    // which waits for that moment by the real clock, asks then and ends.
    app.clock.advance(4);
    assert!(
        stream.ends(Duration::from_secs(4)).await,
        "the stream outlived its root key's grace period"
    );
    let waited = rotated.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert_eq!(
        reopen_status(&app, &follower).await,
        StatusCode::UNAUTHORIZED
    );
}
