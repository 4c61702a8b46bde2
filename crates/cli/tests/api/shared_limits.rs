//! Rate limits shared by two `keyhaven serve` processes through a real Redis server, and
//! what happens when that Redis dies mid-traffic. Two servers on one database: these run
//! in the PostgreSQL pass of the suite (one SQLite file has one server). Real clocks: the GCRA formula is
//! checked against bounds measured around the traffic.
//!
//! Redis comes from `KEYHAVEN_TEST_REDIS_URL` (`.ci/run` starts one) or, for the test
//! that must stop it, from a `redis-server` this test starts. Under `CI=true` a missing
//! `redis-server` fails the test; elsewhere the test says so and passes.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyhaven_core::ratelimit::{Gcra, saturated_admissions};
use serde_json::{Value, json};

use crate::helpers::*;

/// A private `redis-server` on a free loopback port, killed when dropped.
struct RedisServer {
    child: Child,
    url: String,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::print_stdout)]
fn redis_missing(what: &str) -> Option<RedisServer> {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what}: redis-server is required under CI (.ci/run installs it)"
    );
    println!("SKIPPED {what}: no redis-server on PATH (bash .ci/run installs it)");
    None
}

impl RedisServer {
    fn start(what: &str) -> Option<Self> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return redis_missing(what);
        };
        let server = Self {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {port}");
    }
}

/// The shared Redis of the test run, or a private one.
fn shared_redis(what: &str) -> Option<(String, Option<RedisServer>)> {
    match std::env::var("KEYHAVEN_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some((url, None)),
        _ => RedisServer::start(what).map(|r| (r.url.clone(), Some(r))),
    }
}

struct Node {
    process: ServerProcess,
}

async fn two_nodes(dir: &Path, logs: &Path, redis_url: &str) -> (Node, Node, String) {
    // A Redis call slower than its timeout is decided by the node alone for a second;
    // on a busy test machine 100 ms (the default) is not always enough, and these tests
    // count admissions exactly. A stopped Redis still fails at once (connection refused).
    let envs = [
        ("KEYHAVEN_REDIS_URL", redis_url),
        ("KEYHAVEN_REDIS_TIMEOUT_MS", "2000"),
        ("KEYHAVEN_LOG", "info"),
    ];
    let a = spawn_process(dir, logs, &envs).await;
    let root = a.first_root_key();
    let b = spawn_process(dir, logs, &envs).await;
    // Each node connects to Redis on its first limited call; calls that arrive while it
    // connects are decided by the node alone (its fallback share). Connect both before
    // any measured call, with a standalone limit of this run's own.
    let http = http_client();
    let run = dir.file_name().unwrap().to_string_lossy().into_owned();
    for node in [&a, &b] {
        let warm = json!({"namespace": "warm-up", "identifier": format!("{run}-{}", node.base),
            "limit": 1000, "duration_ms": 60_000});
        let answer = post_json(
            &http,
            &format!("{}/v1/ratelimits/limit", node.base),
            &root,
            &warm,
        )
        .await;
        assert_eq!(answer["success"], true, "{answer}");
    }
    (Node { process: a }, Node { process: b }, root)
}

/// `clients` tasks per node verifying `body` until `until`; returns (admitted, every
/// code seen, the latest send and the latest answer).
async fn hammer(
    nodes: &[&Node],
    clients: usize,
    root: &str,
    body: &Value,
    until: Instant,
) -> (u64, Vec<String>, Instant, Instant) {
    hammer_at(
        "/v1/keys/verify",
        verify_code,
        nodes,
        clients,
        root,
        body,
        until,
    )
    .await
}

/// A verify answer's code.
fn verify_code(answer: &Value) -> String {
    answer["code"].as_str().unwrap().to_owned()
}

/// `hammer` for any call at `path`: `code` names each answer, and `VALID` counts as
/// admitted.
async fn hammer_at(
    path: &'static str,
    code: fn(&Value) -> String,
    nodes: &[&Node],
    clients: usize,
    root: &str,
    body: &Value,
    until: Instant,
) -> (u64, Vec<String>, Instant, Instant) {
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for node in nodes {
        for _ in 0..clients {
            let url = format!("{}{path}", node.process.base);
            let (root, body, admitted) = (root.to_owned(), body.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                let http = http_client();
                let mut codes = Vec::new();
                let (mut last_send, mut last_recv) = (Instant::now(), Instant::now());
                while Instant::now() < until {
                    last_send = Instant::now();
                    let answer = post_json(&http, &url, &root, &body).await;
                    last_recv = Instant::now();
                    let code = code(&answer);
                    if code == "VALID" {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                    if !codes.contains(&code) {
                        codes.push(code);
                    }
                }
                (codes, last_send, last_recv)
            }));
        }
    }
    let mut codes = Vec::new();
    let (mut last_send, mut last_recv) = (
        Instant::now() - Duration::from_secs(3600),
        Instant::now() - Duration::from_secs(3600),
    );
    for t in tasks {
        let (c, s, r) = t.await.unwrap();
        for code in c {
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        last_send = last_send.max(s);
        last_recv = last_recv.max(r);
    }
    (admitted.load(Ordering::SeqCst), codes, last_send, last_recv)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap()
}

/// `admitted` is the GCRA count ±1 for saturated traffic between the first call
/// (`first`: its send and answer) and the last (`last`), bounded by the shortest and
/// longest span those instants allow.
#[allow(clippy::print_stdout)]
fn assert_gcra_count(
    what: &str,
    limit: &Gcra,
    admitted: u64,
    first: (Instant, Instant),
    last: (Instant, Instant),
) {
    let low = saturated_admissions(limit, micros(last.0 - first.1)) - 1;
    let high = saturated_admissions(limit, micros(last.1 - first.0)) + 1;
    println!(
        "{what}: admitted {admitted}, GCRA formula in [{}, {}]",
        low + 1,
        high - 1
    );
    assert!(
        (low..=high).contains(&admitted),
        "admitted {admitted}, formula ±1 allows {low}..={high}"
    );
}

async fn setup_key(
    node: &Node,
    root: &str,
    prefix: &str,
    limits: Value,
    extra: Value,
) -> (String, String) {
    let http = http_client();
    let ks = post_json(
        &http,
        &format!("{}/v1/keyspaces", node.process.base),
        root,
        &json!({"name": prefix, "prefix": prefix, "ratelimits": limits}),
    )
    .await;
    let mut body = json!({"keyspace_id": ks["id"]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let key = post_json(
        &http,
        &format!("{}/v1/keys", node.process.base),
        root,
        &body,
    )
    .await;
    (
        key["key"].as_str().unwrap().to_owned(),
        ks["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_sharing_redis_enforce_one_limit_exactly() {
    if !on_postgres() {
        // Two servers share a database only on PostgreSQL: one SQLite file has one server
        // (`serve.lock`). The PostgreSQL pass of this suite runs this test.
        return;
    }
    let Some((url, _private)) = shared_redis("two_nodes_sharing_redis_enforce_one_limit_exactly")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (a, b, root) = two_nodes(dir.path(), logs.path(), &url).await;
    let limit = Gcra {
        limit: 120,
        period_ms: 60_000,
        burst: 100,
    };
    let (key, _) = setup_key(
        &a,
        &root,
        "twonodes",
        json!([{"name": "requests", "limit": 120, "duration_ms": 60_000, "burst": 100}]),
        json!({}),
    )
    .await;
    let body = json!({"key": key});
    // The first admission fills nothing yet: it starts the clock of the formula.
    let http = http_client();
    let first_send = Instant::now();
    let first = post_json(
        &http,
        &format!("{}/v1/keys/verify", a.process.base),
        &root,
        &body,
    )
    .await;
    let first_recv = Instant::now();
    assert_eq!(first["code"], "VALID", "{first}");
    let (admitted, codes, last_send, last_recv) = hammer(
        &[&a, &b],
        8,
        &root,
        &body,
        Instant::now() + Duration::from_secs(4),
    )
    .await;
    assert_gcra_count(
        "two nodes, 16 clients",
        &limit,
        admitted + 1,
        (first_send, first_recv),
        (last_send, last_recv),
    );
    codes
        .iter()
        .for_each(|c| assert!(c == "VALID" || c == "RATE_LIMITED", "{c}"));
    drop(b);
}

/// The metric's value in a Prometheus text page.
async fn metric(node: &Node, name: &str) -> Option<f64> {
    let page = reqwest::get(format!("{}/metrics", node.process.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_gone_each_node_enforces_its_share_and_nothing_else_changes() {
    if !on_postgres() {
        // Two servers share a database only on PostgreSQL: one SQLite file has one server
        // (`serve.lock`). The PostgreSQL pass of this suite runs this test.
        return;
    }
    let Some(redis) = RedisServer::start("with_redis_gone_each_node_enforces_its_share") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (a, b, root) = two_nodes(dir.path(), logs.path(), &redis.url).await;
    // Both nodes must have counted each other (heartbeats every 5 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&a, "keyhaven_ratelimit_nodes").await != Some(2.0)
        || metric(&b, "keyhaven_ratelimit_nodes").await != Some(2.0)
    {
        assert!(Instant::now() < deadline, "nodes never counted each other");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let limits = json!([{"name": "requests", "limit": 60, "duration_ms": 60_000, "burst": 20}]);
    let (key, ks) = setup_key(&a, &root, "fallback", limits, json!({"scopes": ["read"]})).await;
    let http = http_client();
    let base = &a.process.base;
    // Keys that must never verify, whatever happens to Redis.
    let mut refused = Vec::new();
    for (extra, then) in [
        (json!({"enabled": false}), "DISABLED"),
        (json!({}), "REVOKED"),
        (json!({"quota": {"remaining": 0}}), "USAGE_EXCEEDED"),
    ] {
        let mut body = json!({"keyspace_id": ks});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let k = post_json(&http, &format!("{base}/v1/keys"), &root, &body).await;
        if then == "REVOKED" {
            post_json(
                &http,
                &format!("{base}/v1/keys/{}/revoke", k["key_id"].as_str().unwrap()),
                &root,
                &json!({}),
            )
            .await;
        }
        refused.push((json!({"key": k["key"]}), then));
    }
    refused.push((
        json!({"key": key, "scopes": ["write"]}),
        "INSUFFICIENT_SCOPES",
    ));

    // Shared while Redis lives: one limit for both nodes.
    let (admitted_shared, _, _, _) = hammer(
        &[&a, &b],
        8,
        &root,
        &json!({"key": key}),
        Instant::now() + Duration::from_millis(1500),
    )
    .await;
    assert!(
        (20..=23).contains(&admitted_shared),
        "admitted {admitted_shared} with Redis up"
    );

    drop(redis);
    let gone = Instant::now();
    let (admitted, codes, _, last_recv) = hammer(
        &[&a, &b],
        8,
        &root,
        &json!({"key": key}),
        Instant::now() + Duration::from_secs(3),
    )
    .await;
    // Each node: its share of the burst (20 / 2) plus its share of the rate (30 per
    // minute, one per 2 s) over the time since Redis went away.
    let share = Gcra {
        limit: 30,
        period_ms: 60_000,
        burst: 10,
    };
    let cap = 2 * saturated_admissions(&share, micros(last_recv - gone));
    println!(
        "Redis gone: admitted {admitted} in {:?}; documented cap {cap}",
        last_recv - gone
    );
    assert!(
        admitted <= cap,
        "admitted {admitted} beyond the fallback cap {cap}"
    );
    assert!(
        admitted >= 2 * share.burst,
        "each node still admits its share: {admitted}"
    );
    codes
        .iter()
        .for_each(|c| assert!(c == "VALID" || c == "RATE_LIMITED", "{c}"));
    for node in [&a, &b] {
        for (body, expected) in &refused {
            let answer = post_json(
                &http,
                &format!("{}/v1/keys/verify", node.process.base),
                &root,
                body,
            )
            .await;
            assert_eq!(answer["code"], *expected, "{answer}");
        }
        assert!(
            metric(node, "keyhaven_ratelimit_fallback_total")
                .await
                .unwrap_or(0.0)
                > 0.0
        );
        assert_eq!(metric(node, "keyhaven_ratelimit_redis_up").await, Some(0.0));
        let log = std::fs::read_to_string(&node.process.log_path).unwrap();
        assert!(log.contains("Redis is unreachable"), "{log}");
        assert!(!log.contains(&secret_of(&key)), "no key in the log");
    }
}

/// The secret part of a key (what must never reach a log).
fn secret_of(key: &str) -> String {
    key[key.len() - 36..key.len() - 6].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_refused_call_consumes_neither_limits_nor_quota() {
    let Some((url, _private)) =
        shared_redis("with_redis_a_refused_call_consumes_neither_limits_nor_quota")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let node = Node {
        process: spawn_process(dir.path(), logs.path(), &[("KEYHAVEN_REDIS_URL", &url)]).await,
    };
    let root = node.process.first_root_key();
    let verify_url = format!("{}/v1/keys/verify", node.process.base);
    let http = http_client();
    // Refused by the limit: the quota keeps what the call would have taken.
    let (key, _) = setup_key(
        &node,
        &root,
        "allornone",
        json!([{"name": "requests", "limit": 2, "duration_ms": 60_000}]),
        json!({"quota": {"remaining": 5}}),
    )
    .await;
    let codes: Vec<Value> =
        futures_in_order(&http, &verify_url, &root, &json!({"key": key}), 3).await;
    assert_eq!(
        codes.iter().map(|a| a["code"].clone()).collect::<Vec<_>>(),
        ["VALID", "VALID", "RATE_LIMITED"]
    );
    assert_eq!(codes[2]["remaining"], 3, "{}", codes[2]);
    let key_id = key.split('_').nth(1).unwrap();
    let view: Value = http
        .get(format!("{}/v1/keys/{key_id}", node.process.base))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["quota"]["remaining"], 3, "{view}");
    // Refused by the quota: the shared limit keeps what the call would have taken.
    let http2 = http_client();
    let (key2, ks2) = setup_key(
        &node,
        &root,
        "quotafirst",
        json!([{"name": "requests", "limit": 10, "duration_ms": 60_000}]),
        json!({"quota": {"remaining": 1}}),
    )
    .await;
    let _ = ks2;
    let answers = futures_in_order(&http2, &verify_url, &root, &json!({"key": key2}), 4).await;
    assert_eq!(answers[0]["code"], "VALID");
    assert!(
        answers[1..].iter().all(|a| a["code"] == "USAGE_EXCEEDED"),
        "{answers:?}"
    );
    let ask = post_json(&http2, &verify_url, &root, &json!({"key": key2, "cost": 0})).await;
    assert_eq!(
        ask["ratelimits"][0]["remaining"], 9,
        "only the admitted call counted: {ask}"
    );
}

async fn futures_in_order(
    http: &reqwest::Client,
    url: &str,
    root: &str,
    body: &Value,
    n: usize,
) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(post_json(http, url, root, body).await);
    }
    out
}

/// A top-up through one node reaches another node's counter within the cache TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_up_through_one_node_reaches_the_other_within_the_cache_ttl() {
    if !on_postgres() {
        // Two servers share a database only on PostgreSQL: one SQLite file has one server
        // (`serve.lock`). The PostgreSQL pass of this suite runs this test.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    // Node B writes every use before answering, so none is pending when A sets the
    // quota (a pending one would still be subtracted from the new value).
    let envs = [
        ("KEYHAVEN_CACHE_TTL_MS", "300"),
        ("KEYHAVEN_QUOTA_FLUSH_INTERVAL_MS", "0"),
    ];
    let a = Node {
        process: spawn_process(dir.path(), logs.path(), &envs).await,
    };
    let root = a.process.first_root_key();
    let b = Node {
        process: spawn_process(dir.path(), logs.path(), &envs).await,
    };
    let (key, _) = setup_key(
        &a,
        &root,
        "topup",
        json!([]),
        json!({"quota": {"remaining": 2}}),
    )
    .await;
    let http = http_client();
    let on_b = format!("{}/v1/keys/verify", b.process.base);
    let answers = futures_in_order(&http, &on_b, &root, &json!({"key": key}), 3).await;
    assert_eq!(answers[2]["code"], "USAGE_EXCEEDED");
    let key_id = key.split('_').nth(1).unwrap();
    let patched = http
        .patch(format!("{}/v1/keys/{key_id}", a.process.base))
        .bearer_auth(&root)
        .json(&json!({"quota": {"remaining": 5}}))
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = post_json(&http, &on_b, &root, &json!({"key": key})).await;
    assert_eq!(after["code"], "VALID", "{after}");
    assert_eq!(after["remaining"], 4);
}

/// A standalone limit's answer, named as a verify's code.
fn standalone_code(answer: &Value) -> String {
    match answer["success"].as_bool() {
        Some(true) => "VALID".to_owned(),
        Some(false) => "RATE_LIMITED".to_owned(),
        None => panic!("not a limit answer: {answer}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_sharing_redis_enforce_one_standalone_limit_exactly() {
    if !on_postgres() {
        // As above: two servers share a database only on PostgreSQL.
        return;
    }
    let Some((url, _private)) =
        shared_redis("two_nodes_sharing_redis_enforce_one_standalone_limit_exactly")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (a, b, root) = two_nodes(dir.path(), logs.path(), &url).await;
    let limit = Gcra {
        limit: 120,
        period_ms: 60_000,
        burst: 100,
    };
    // An identifier of this run only: the Redis may be shared by other runs.
    let run = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let body = json!({"namespace": "login", "identifier": format!("ada+{run}@example.com"),
        "limit": 120, "duration_ms": 60_000, "burst": 100});
    let http = http_client();
    let first_send = Instant::now();
    let first = post_json(
        &http,
        &format!("{}/v1/ratelimits/limit", a.process.base),
        &root,
        &body,
    )
    .await;
    let first_recv = Instant::now();
    assert_eq!(first["success"], true, "{first}");
    let (admitted, codes, last_send, last_recv) = hammer_at(
        "/v1/ratelimits/limit",
        standalone_code,
        &[&a, &b],
        8,
        &root,
        &body,
        Instant::now() + Duration::from_secs(4),
    )
    .await;
    assert_gcra_count(
        "two nodes, 16 clients, standalone limit",
        &limit,
        admitted + 1,
        (first_send, first_recv),
        (last_send, last_recv),
    );
    assert!(codes.contains(&"RATE_LIMITED".to_owned()), "{codes:?}");
    drop(b);
}
