//! `keyhaven proxy`: the stateless gateway node, as a real process, verifying through a
//! real central Keyhaven and following its change stream.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::gateway_upstream::spawn_upstream;
use crate::helpers::{TestApp, free_port, spawn_app_with};

/// A `keyhaven proxy` process; killed when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node in front of `upstream`, verifying through `app` with a root key that
/// has only `keys:verify`; returns once it forwards a request.
async fn spawn_node(app: &TestApp, upstream: &str, dir: &Path, coherence_ms: u64) -> Node {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["--listen", listen.as_str(), "--upstream", upstream];
    spawn_node_with(app, dir, coherence_ms, port, &args).await
}

/// Starts a node listening on `port` with `args` after `--root-key-file`.
async fn spawn_node_with(
    app: &TestApp,
    dir: &Path,
    coherence_ms: u64,
    port: u16,
    args: &[&str],
) -> Node {
    let root = app.root_key(&["keys:verify"], None).await;
    let key_file = dir.join("root-key");
    std::fs::write(&key_file, format!("{root}\n")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_keyhaven"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYHAVEN_CACHE_COHERENCE_MS", coherence_ms.to_string())
        .args(["proxy", "--server", &app.base, "--root-key-file"])
        .arg(&key_file)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .unwrap();
    let node = Node {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..300 {
        if let Ok(r) = app.http.get(format!("{}/echo", node.base)).send().await
            && r.status() == StatusCode::UNAUTHORIZED
        {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the node did not start: {}",
        std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
    );
}

/// Starts a node in front of `upstream` from a config file with one `[[proxy.routes]]`
/// rule whose body is `route` (TOML lines).
async fn spawn_node_with_route(app: &TestApp, upstream: &str, dir: &Path, route: &str) -> Node {
    let port = free_port();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[[proxy]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"{upstream}\"\n\n\
             [[proxy.routes]]\n{route}\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    spawn_node_with(app, dir, 1_000, port, &["--config", &config]).await
}

#[tokio::test]
async fn a_key_revoked_centrally_is_refused_by_the_node_within_a_second_in_1000_trials() {
    let upstream = spawn_upstream().await;
    let app = spawn_app_with(|c| c.usage_flush_interval_ms = 50).await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, &upstream.url(), dir.path(), 1_000).await;
    let ks = app.create_keyspace("acme_live").await;
    let mut waits = Vec::new();
    for trial in 0..1_000 {
        let key = app.create_key(json!({"keyspace_id": ks.id})).await;
        let call = || {
            app.http
                .get(format!("{}/echo", node.base))
                .bearer_auth(&key.key)
                .send()
        };
        // The first answer fills the node's cache; the second may come from it.
        for _ in 0..2 {
            assert_eq!(
                call().await.unwrap().status(),
                StatusCode::OK,
                "trial {trial}"
            );
        }
        let path = format!("/v1/keys/{}/revoke", key.record.key_id);
        assert_eq!(
            app.send(Method::POST, &path, Some(&json!({}))).await.0,
            StatusCode::OK
        );
        let revoked = Instant::now();
        loop {
            let status = call().await.unwrap().status();
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert_eq!(status, StatusCode::OK);
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "trial {trial}: still admitted 1 s after its revocation"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        waits.push(revoked.elapsed());
    }
    waits.sort();
    // The node's cache was in play: the upstream saw every admitted request, the central
    // server counted only those the node asked it about (cached admissions are not
    // counted there). Without that, the trials would show only the central server's rule.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, usage) = app
        .send(Method::GET, &format!("/v1/keyspaces/{}/usage", ks.id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    let asked = usage["totals"]["VALID"].as_u64().unwrap();
    assert!(asked > 0, "the node asked the central server: {usage}");
    let forwarded = upstream.hits() as u64;
    let from_cache = forwarded - asked.min(forwarded);
    println!(
        "node revocation: p50 {:?}, p99 {:?}, max {:?} over {} trials; \
         {from_cache} of {forwarded} admissions answered from the node's cache",
        waits[waits.len() / 2],
        waits[waits.len() * 99 / 100],
        waits[waits.len() - 1],
        waits.len()
    );
    assert!(
        from_cache >= 500,
        "the node's cache answered {from_cache} of {forwarded} admissions"
    );
}

#[tokio::test]
async fn the_node_serves_cached_keys_while_the_stream_vouches_and_fails_closed_after() {
    let upstream = spawn_upstream().await;
    // Heartbeats every second; the node trusts its cache for 2 s after the last word.
    let app = spawn_app_with(|c| {
        c.cache_coherence_ms = 4_000;
        c.usage_flush_interval_ms = 50;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, &upstream.url(), dir.path(), 4_000).await;
    let ks = app.create_keyspace("acme_live").await;
    let cached = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["docs:read"]}))
        .await;
    let limited = app
        .create_key(json!({"keyspace_id": ks.id,
            "ratelimits": [{"name": "requests", "limit": 100, "duration_ms": 60_000}]}))
        .await;
    let http = app.http.clone();
    let call = |key: String| {
        http.get(format!("{}/echo", node.base))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(
        call(limited.key.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    // An answer that raced with a change event (the keys' own creation) or came before
    // the stream's first heartbeat is not cached; once the stream has vouched and is
    // quiet, the next one is. The central server's usage of the key tells: it stops
    // counting the node's calls once they are answered from the cache.
    let central_count = || async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (status, usage) = app
            .send(
                Method::GET,
                &format!("/v1/keys/{}/usage", cached.record.key_id),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        usage["total"].as_u64().unwrap()
    };
    let started = Instant::now();
    loop {
        let before = central_count().await;
        for _ in 0..3 {
            assert_eq!(
                call(cached.key.clone()).await.unwrap().status(),
                StatusCode::OK
            );
        }
        if central_count().await - before < 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the node never served the key from its cache"
        );
    }

    // The central server goes away: the cached key still passes (its stream spoke within
    // the bound), a key with limits needs the server and is 503.
    drop(app);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        call(cached.key.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let unavailable = call(limited.key.clone()).await.unwrap();
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Once the stream has been silent past the bound, nothing is served from the cache.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let closed = call(cached.key.clone()).await.unwrap();
    assert_eq!(closed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: serde_json::Value = closed.json().await.unwrap();
    assert_eq!(problem["code"], "unavailable");
}

/// A route naming some limits gets answers listing only those: a key with other limits
/// must not look unlimited to the node's cache, or its requests elsewhere go uncounted.
#[tokio::test]
async fn a_route_naming_other_limits_does_not_make_a_limited_key_cacheable() {
    let upstream = spawn_upstream().await;
    let app = spawn_app_with(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = "path = \"/echo/named\"\nratelimits = [{ name = \"other\" }]";
    let node = spawn_node_with_route(&app, &upstream.url(), dir.path(), routes).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id,
            "ratelimits": [{"name": "requests", "limit": 3, "duration_ms": 60_000}]}))
        .await;
    let call = |path: &'static str| {
        app.http
            .get(format!("{}{path}", node.base))
            .bearer_auth(&key.key)
            .send()
    };
    // The named route's answers list no limits, however often (its limit is not the
    // key's); were one cached, the calls below would pass uncounted.
    for _ in 0..5 {
        assert_eq!(call("/echo/named").await.unwrap().status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses = [
        call("/echo").await.unwrap().status(),
        call("/echo").await.unwrap().status(),
        call("/echo").await.unwrap().status(),
        call("/echo").await.unwrap().status(),
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "every request on other routes is counted by the central server"
    );
}

#[tokio::test]
async fn a_route_asking_permissions_is_never_answered_from_a_cached_admission() {
    let upstream = spawn_upstream().await;
    let app = spawn_app_with(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = "path = \"/echo/docs\"\npermissions = \"documents.read\"";
    let node = spawn_node_with_route(&app, &upstream.url(), dir.path(), routes).await;
    let ks = app.create_keyspace("acme_live").await;
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v1/keyspaces/{}/roles", ks.id),
            Some(&json!({"name": "reader", "permissions": ["documents.read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let reader = app
        .create_key(json!({"keyspace_id": ks.id, "roles": ["reader"]}))
        .await;
    let other = app.create_key(json!({"keyspace_id": ks.id})).await;
    let call = |key: &str, path: &str| {
        app.http
            .get(format!("{}{path}", node.base))
            .bearer_auth(key)
            .send()
    };
    // Admitted (and cacheable) on a route without a query...
    for _ in 0..3 {
        assert_eq!(
            call(&other.key, "/echo").await.unwrap().status(),
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...yet refused where permissions are asked: the central server decides.
    let refused = call(&other.key, "/echo/docs").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "insufficient_permissions");
    assert_eq!(
        call(&reader.key, "/echo/docs").await.unwrap().status(),
        StatusCode::OK
    );
}
