//! Several `keyhaven serve` processes on one PostgreSQL database: a change made through
//! one node reaches the others' caches through `LISTEN/NOTIFY`; when that channel is cut
//! a node still never serves a stale answer longer than `cache_coherence_ms`; `kill -9`
//! of a node loses nothing it acknowledged.
//!
//! These need the test PostgreSQL server (`KEYHAVEN_TEST_POSTGRES_URL`) on either run of
//! the suite; they run in the SQLite pass only, so `.ci/run` runs them once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::helpers::*;

/// A fresh PostgreSQL database for a multi-node test, or `None` to skip (never under
/// CI, and never on the PostgreSQL pass, which would only repeat these).
pub(crate) async fn database() -> Option<String> {
    if on_postgres() {
        return None;
    }
    let admin = keyhaven_store::postgres::testing::admin_url()?;
    Some(
        keyhaven_store::postgres::testing::fresh_database(&admin)
            .await
            .unwrap(),
    )
}

/// Node A, then node B, on one data directory (so one pepper) and one database; the
/// root key A printed.
pub(crate) async fn two_nodes(
    data: &Path,
    logs: &Path,
    url_a: &str,
    url_b: &str,
) -> (ServerProcess, ServerProcess, String) {
    let a = spawn_process(data, logs, &[("KEYHAVEN_DATABASE_URL", url_a)]).await;
    let root = a.first_root_key();
    let b = spawn_process(data, logs, &[("KEYHAVEN_DATABASE_URL", url_b)]).await;
    (a, b, root)
}

async fn code(http: &reqwest::Client, base: &str, root: &str, key: &str) -> String {
    let (status, v) = try_post(http, base, root, "/v1/keys/verify", &json!({ "key": key })).await;
    assert_eq!(status, 200, "{v}");
    v["code"].as_str().unwrap().to_owned()
}

pub(crate) async fn keyspace(http: &reqwest::Client, base: &str, root: &str) -> String {
    let (status, ks) = try_post(
        http,
        base,
        root,
        "/v1/keyspaces",
        &json!({"name": "multi", "prefix": "multi"}),
    )
    .await;
    assert_eq!(status, 201, "{ks}");
    ks["id"].as_str().unwrap().to_owned()
}

/// Creates `n` keys through `base`, 16 at a time: (key id, key).
async fn create_keys(
    http: &reqwest::Client,
    base: &str,
    root: &str,
    ks: &str,
    n: usize,
) -> Vec<(String, String)> {
    let limit = Arc::new(Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (http, base, root, ks, limit) = (
            http.clone(),
            base.to_owned(),
            root.to_owned(),
            ks.to_owned(),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let (status, v) = try_post(
                &http,
                &base,
                &root,
                "/v1/keys",
                &json!({ "keyspace_id": ks }),
            )
            .await;
            assert_eq!(status, 201, "{v}");
            (
                v["key_id"].as_str().unwrap().to_owned(),
                v["key"].as_str().unwrap().to_owned(),
            )
        });
    }
    tasks.join_all().await
}

/// Polls `key` on `base` until it answers `want`; how long that took after `since`.
async fn until_code(
    http: &reqwest::Client,
    base: &str,
    root: &str,
    key: &str,
    want: &str,
    since: Instant,
    give_up: Duration,
) -> Duration {
    loop {
        if code(http, base, root, key).await == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < give_up,
            "{key} still not {want} after {give_up:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_node_answers_revoked_on_the_other_within_a_second() {
    let Some(url) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (a, b, root) = two_nodes(&data, dir.path(), &url, &url).await;
    let http = http_client();
    let ks = keyspace(&http, &a.base, &root).await;
    let keys = create_keys(&http, &a.base, &root, &ks, 1000).await;

    let mut delays = Vec::with_capacity(keys.len());
    for (key_id, key) in &keys {
        // Cached as VALID on B (the second answer comes from B's cache).
        assert_eq!(code(&http, &b.base, &root, key).await, "VALID");
        assert_eq!(code(&http, &b.base, &root, key).await, "VALID");
        let (status, v) = try_post(
            &http,
            &a.base,
            &root,
            &format!("/v1/keys/{key_id}/revoke"),
            &json!({}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let acknowledged = Instant::now();
        delays.push(
            until_code(
                &http,
                &b.base,
                &root,
                key,
                "REVOKED",
                acknowledged,
                Duration::from_secs(5),
            )
            .await,
        );
    }
    delays.sort();
    let within = delays
        .iter()
        .filter(|d| **d <= Duration::from_secs(1))
        .count();
    println!(
        "revocation A -> B: {within} of {} within 1 s; delay after A's answer: \
         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.9),
        percentile(&delays, 0.99),
        delays[delays.len() - 1],
    );
    assert_eq!(within, 1000);
}

/// A TCP relay to PostgreSQL that can silently stall the connections that issued
/// `LISTEN` (no reset, no FIN: data just stops, as in a network partition).
struct Relay {
    port: u16,
    stalled: Arc<AtomicBool>,
}

impl Relay {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let listens = Arc::new(AtomicBool::new(false));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, listens.clone(), flag.clone(), true));
                tokio::spawn(pump(sr, cw, listens, flag.clone(), false));
            }
        });
        Self { port, stalled }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    listens: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    from_client: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if from_client && buf[..n].windows(6).any(|w| w == b"LISTEN") {
            listens.store(true, Ordering::SeqCst);
        }
        while listens.load(Ordering::SeqCst) && stalled.load(Ordering::SeqCst) {
            // Hold the bytes and the socket: the peer sees silence, not an error.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_notifications_cut_a_node_stops_serving_a_revoked_key_within_the_bound() {
    let Some(url) = database().await else { return };
    let upstream: u16 = url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port in the test database URL");
    let relay = Relay::start(upstream).await;
    let url_b = url.replace(&format!(":{upstream}/"), &format!(":{}/", relay.port));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (a, b, root) = two_nodes(&data, dir.path(), &url, &url_b).await;
    let http = http_client();
    let ks = keyspace(&http, &a.base, &root).await;
    let keys = create_keys(&http, &a.base, &root, &ks, 4).await;
    let bound = Duration::from_millis(1000); // cache_coherence_ms, the default

    // 1. The feed works: a revocation arrives well within the bound.
    let (id0, key0) = &keys[0];
    assert_eq!(code(&http, &b.base, &root, key0).await, "VALID");
    try_post(
        &http,
        &a.base,
        &root,
        &format!("/v1/keys/{id0}/revoke"),
        &json!({}),
    )
    .await;
    let fast = until_code(
        &http,
        &b.base,
        &root,
        key0,
        "REVOKED",
        Instant::now(),
        bound,
    )
    .await;

    // 2. The feed's connection is killed: B reconnects and drops its cache.
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(
        killed,
        vec![true, true],
        "each node has one feed connection"
    );
    let (id1, key1) = &keys[1];
    assert_eq!(code(&http, &b.base, &root, key1).await, "VALID");
    try_post(
        &http,
        &a.base,
        &root,
        &format!("/v1/keys/{id1}/revoke"),
        &json!({}),
    )
    .await;
    let after_kill = until_code(
        &http,
        &b.base,
        &root,
        key1,
        "REVOKED",
        Instant::now(),
        bound,
    )
    .await;

    // 3. The feed's connection silently stalls (B's other connections still work):
    //    B can no longer vouch for its cache and re-reads records older than the bound.
    let (id2, key2) = &keys[2];
    let (_, key3) = &keys[3];
    assert_eq!(code(&http, &b.base, &root, key2).await, "VALID");
    relay.stalled.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    try_post(
        &http,
        &a.base,
        &root,
        &format!("/v1/keys/{id2}/revoke"),
        &json!({}),
    )
    .await;
    let revoked = Instant::now();
    let stalled = until_code(
        &http,
        &b.base,
        &root,
        key2,
        "REVOKED",
        revoked,
        Duration::from_secs(5),
    )
    .await;
    // Unchanged keys keep verifying on B meanwhile (from the database).
    assert_eq!(code(&http, &b.base, &root, key3).await, "VALID");
    println!(
        "feed live: {fast:?}; feed connection killed: {after_kill:?}; \
         feed stalled: {stalled:?} (bound {bound:?})"
    );
    assert!(
        stalled <= bound + Duration::from_millis(100),
        "stale for {stalled:?}, bound {bound:?}"
    );
    drop(b);
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_during_creations_and_revocations_loses_nothing_acknowledged() {
    let Some(url) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut a, b, root) = two_nodes(&data, dir.path(), &url, &url).await;
    let http = http_client();
    let ks = keyspace(&http, &a.base, &root).await;
    // 500 keys exist; during the run 500 more are created and 250 of these revoked,
    // each through both nodes at once (one answers 200, the other already_revoked).
    let existing = create_keys(&http, &b.base, &root, &ks, 500).await;

    let limit = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000usize {
        let node = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let (http, root, ks, limit) = (http.clone(), root.clone(), ks.clone(), limit.clone());
        let target = existing[i / 2].clone();
        tasks.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            if i % 4 < 2 {
                let (status, v) = try_post(
                    &http,
                    &node,
                    &root,
                    "/v1/keys",
                    &json!({ "keyspace_id": ks }),
                )
                .await;
                (status == 201).then(|| (true, v["key"].as_str().unwrap().to_owned()))
            } else {
                let path = format!("/v1/keys/{}/revoke", target.0);
                let (status, _) = try_post(&http, &node, &root, &path, &json!({})).await;
                (status == 200).then_some((false, target.1))
            }
        });
    }
    let mut created = Vec::new();
    let mut revoked = Vec::new();
    let mut killed = false;
    let mut finished = 0;
    while let Some(done) = tasks.join_next().await {
        finished += 1;
        match done.unwrap() {
            Some((true, key)) => created.push(key),
            Some((false, key)) => revoked.push(key),
            None => {}
        }
        if finished == 300 && !killed {
            a.child.kill().unwrap(); // SIGKILL
            a.child.wait().unwrap();
            killed = true;
        }
    }
    assert!(killed);
    println!(
        "acknowledged across both nodes: {} creations, {} revocations (A killed after 300 answers)",
        created.len(),
        revoked.len()
    );
    assert!(
        // A revoke in flight on A when it dies may commit unanswered; B then answers
        // already_revoked for that key, so neither acknowledges it.
        created.len() >= 250 && revoked.len() >= 200,
        "B kept answering"
    );

    let check = |base: String| {
        let (http, root, created, revoked) =
            (http.clone(), root.clone(), created.clone(), revoked.clone());
        async move {
            for key in &created {
                assert_eq!(code(&http, &base, &root, key).await, "VALID", "{key}");
            }
            for key in &revoked {
                assert_eq!(code(&http, &base, &root, key).await, "REVOKED", "{key}");
            }
        }
    };
    check(b.base.clone()).await;
    let again = spawn_process(&data, dir.path(), &[("KEYHAVEN_DATABASE_URL", &url)]).await;
    check(again.base.clone()).await;
}

#[tokio::test]
async fn a_postgres_that_could_lose_commits_is_refused_unless_allowed() {
    let Some(url) = database().await else { return };
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET synchronous_commit = off"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    let dir = tempfile::tempdir().unwrap();
    let migrate = |allow: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyhaven"));
        command
            .args(["migrate", "--data-dir"])
            .arg(dir.path())
            .env("KEYHAVEN_DATABASE_URL", &url)
            .env("KEYHAVEN_ALLOW_UNSAFE_DURABILITY", allow.to_string());
        command.output().unwrap()
    };
    let refused = migrate(false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("synchronous_commit = off"), "{stderr}");
    assert!(
        !stderr.contains("postgres://"),
        "no URL in the message: {stderr}"
    );
    let allowed = migrate(true);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(String::from_utf8_lossy(&allowed.stdout).contains("database is up to date"));
}
