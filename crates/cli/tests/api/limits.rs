//! Rate limits, quotas and the failed-verification limiter, on one node: exact counts
//! under concurrency against the GCRA formula (with the server's clock moved by hand),
//! all-or-nothing decisions, owner-shared limits, quota refills and top-ups.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keyhaven_core::ratelimit::{Gcra, saturated_admissions};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::macros::datetime;

use crate::helpers::*;

/// Verifies `body` (a JSON object with at least `key`); returns the answer.
pub async fn verify_body(app: &TestApp, body: Value) -> Value {
    let (status, answer) = app.send(Method::POST, "/v1/keys/verify", Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

fn code(answer: &Value) -> &str {
    answer["code"].as_str().unwrap()
}

async fn keyspace_with(app: &TestApp, prefix: &str, ratelimits: Value) -> String {
    let (status, body) = app
        .send(
            Method::POST,
            "/v1/keyspaces",
            Some(&json!({"name": prefix, "prefix": prefix, "ratelimits": ratelimits})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// `clients` tasks verifying `key` in a loop until `stop`; returns the count of VALID
/// answers and of every answer, by code.
struct Load {
    stop: Arc<AtomicBool>,
    valid: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(
        app: &TestApp,
        clients: usize,
        body: Value,
        unexpected: &'static [&'static str],
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let valid = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, valid, total) = (stop.clone(), valid.clone(), total.clone());
                let http = app.http.clone();
                let url = app.url("/v1/keys/verify");
                let root = app.root_key.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let answer = post_json(&http, &url, &root, &body).await;
                        let c = answer["code"].as_str().unwrap();
                        assert!(!unexpected.contains(&c), "unexpected {answer}");
                        if c == "VALID" {
                            valid.fetch_add(1, Ordering::SeqCst);
                        }
                        total.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Self {
            stop,
            valid,
            total,
            tasks,
        }
    }

    /// Waits until `n` more answers have come in.
    async fn settle(&self, n: u64) {
        let target = self.total.load(Ordering::SeqCst) + n;
        while self.total.load(Ordering::SeqCst) < target {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.valid.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_for_two_simulated_minutes_get_exactly_the_gcra_count() {
    let app = spawn_app().await;
    let ks = keyspace_with(
        &app,
        "gcra",
        json!([{"name": "requests", "limit": 100, "duration_ms": 60_000, "burst": 100}]),
    )
    .await;
    let key = app.create_key(json!({"keyspace_id": ks})).await.key;
    let load = Load::start(&app, 8, json!({"key": key}), &["NOT_FOUND", "MALFORMED"]);
    // Two minutes in 100 ms steps; every step waits for the clients to ask again, so
    // demand never lets up.
    let step_us = 100_000;
    let steps = 1_200;
    load.settle(200).await;
    for _ in 0..steps {
        app.clock.advance_micros(step_us);
        load.settle(8).await;
    }
    load.settle(64).await;
    let admitted = load.stop().await;
    let limit = Gcra {
        limit: 100,
        period_ms: 60_000,
        burst: 100,
    };
    let formula = saturated_admissions(&limit, step_us * steps);
    assert_eq!(formula, 300);
    println!(
        "one node, 8 clients, 2 simulated minutes: admitted {admitted}, GCRA formula {formula}"
    );
    assert!(
        admitted.abs_diff(formula) <= 1,
        "admitted {admitted}, GCRA formula {formula}"
    );

    // A denied answer says which limit and when to come back, and took nothing.
    let denied = verify_body(&app, json!({"key": key})).await;
    assert_eq!(code(&denied), "RATE_LIMITED", "{denied}");
    assert_eq!(denied["valid"], false);
    let rl = &denied["ratelimits"][0];
    assert_eq!(rl["name"], "requests");
    assert_eq!(rl["scope"], "key");
    assert_eq!(rl["limit"], 100);
    assert_eq!(rl["remaining"], 0);
    assert_eq!(rl["exceeded"], true);
    assert_eq!(rl["retry_after_ms"], 600);
    assert_eq!(denied["key_id"].as_str().map(str::len), Some(12));
    app.clock.advance_micros(600_000);
    assert_eq!(code(&verify_body(&app, json!({"key": key})).await), "VALID");
}

#[tokio::test]
async fn a_call_denied_by_one_limit_or_the_quota_consumes_nothing() {
    let app = spawn_app().await;
    let ks = keyspace_with(
        &app,
        "allornothing",
        json!([{"name": "minute", "limit": 5, "duration_ms": 60_000}]),
    )
    .await;
    let key = app
        .create_key(json!({
            "keyspace_id": ks,
            "ratelimits": [{"name": "second", "limit": 2, "duration_ms": 1_000}],
            "quota": {"remaining": 10},
        }))
        .await;
    let body = json!({"key": key.key.clone()});
    for expected_remaining in [9, 8] {
        let ok = verify_body(&app, body.clone()).await;
        assert_eq!(code(&ok), "VALID", "{ok}");
        assert_eq!(ok["remaining"], expected_remaining);
    }
    let denied = verify_body(&app, body.clone()).await;
    assert_eq!(code(&denied), "RATE_LIMITED");
    let by_name = |answer: &Value, name: &str| -> Value {
        answer["ratelimits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name(&denied, "second")["exceeded"], true);
    assert_eq!(by_name(&denied, "minute")["exceeded"], false);
    assert_eq!(
        by_name(&denied, "minute")["remaining"],
        3,
        "the minute limit kept what the denied call would have taken"
    );
    assert_eq!(denied["remaining"], 8, "the quota was not charged");
    let (_, view) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", key.record.key_id),
            None,
        )
        .await;
    assert_eq!(view["quota"]["remaining"], 8);

    // Quota exhausted: the rate limits are not charged either.
    app.clock.advance(60);
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/v1/keys/{}", key.record.key_id),
            Some(&json!({"quota": {"remaining": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(code(&verify_body(&app, body.clone()).await), "VALID");
    let exhausted = verify_body(&app, body.clone()).await;
    assert_eq!(code(&exhausted), "USAGE_EXCEEDED", "{exhausted}");
    assert_eq!(exhausted["remaining"], 0);
    // The second-limit had one left and still has it.
    assert_eq!(by_name(&exhausted, "second")["remaining"], 1, "{exhausted}");

    // cost and named limits.
    app.clock.advance(60);
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/v1/keys/{}", key.record.key_id),
            Some(&json!({"quota": {"remaining": 100}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let costly = verify_body(
        &app,
        json!({"key": key.key.clone(), "ratelimits": [{"name": "minute", "cost": 4}]}),
    )
    .await;
    assert_eq!(code(&costly), "VALID", "{costly}");
    let applied = costly["ratelimits"].as_array().unwrap();
    assert_eq!(applied.len(), 1, "only the named limit: {costly}");
    assert_eq!(applied[0]["remaining"], 1);
    assert_eq!(
        costly["remaining"], 99,
        "the quota takes the call's cost (1)"
    );
    let ask = verify_body(&app, json!({"key": key.key.clone(), "cost": 0})).await;
    assert_eq!(code(&ask), "VALID");
    assert_eq!(
        by_name(&ask, "minute")["remaining"],
        1,
        "cost 0 takes nothing"
    );
    assert_eq!(ask["remaining"], 99);
    for bad in [
        json!({"key": key.key.clone(), "cost": 1001}),
        json!({"key": key.key.clone(), "cost": -1}),
        json!({"key": key.key.clone(), "ratelimits": [{"name": "minute", "cost": 5000}]}),
        json!({"key": key.key.clone(), "ratelimits": [{"nam": "minute"}]}),
        json!({"key": key.key.clone(), "client_ip": "not an ip"}),
    ] {
        let (status, problem) = app.send(Method::POST, "/v1/keys/verify", Some(&bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {problem}");
    }
}

#[tokio::test]
async fn owner_limits_are_shared_by_its_keys_and_always_apply() {
    let app = spawn_app().await;
    let ks = keyspace_with(
        &app,
        "shared",
        json!([{"name": "requests", "limit": 100, "duration_ms": 60_000}]),
    )
    .await;
    let (status, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({
                "external_id": "cus_1",
                "ratelimits": [{"name": "requests", "limit": 3, "duration_ms": 60_000}],
                "quota": {"remaining": 5, "refill": {"interval": "monthly", "amount": 5, "day": 31}},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    assert_eq!(owner["quota"]["remaining"], 5);
    assert_eq!(owner["quota"]["refill"]["day"], 31);
    let owner_id = owner["id"].as_str().unwrap();
    let a = app
        .create_key(json!({"keyspace_id": ks, "owner_id": owner_id}))
        .await
        .key;
    let b = app
        .create_key(json!({"keyspace_id": ks, "owner_id": owner_id}))
        .await
        .key;
    let own = app
        .create_key(json!({
            "keyspace_id": ks, "owner_id": owner_id,
            "ratelimits": [{"name": "requests", "limit": 10, "duration_ms": 60_000}],
        }))
        .await
        .key;
    let codes = [
        code(&verify_body(&app, json!({"key": a})).await).to_owned(),
        code(&verify_body(&app, json!({"key": b})).await).to_owned(),
        code(&verify_body(&app, json!({"key": a})).await).to_owned(),
        code(&verify_body(&app, json!({"key": b})).await).to_owned(),
    ];
    assert_eq!(codes, ["VALID", "VALID", "VALID", "RATE_LIMITED"]);
    let denied = verify_body(&app, json!({"key": a})).await;
    assert_eq!(denied["ratelimits"][0]["scope"], "owner");
    assert_eq!(denied["ratelimits"][0]["limit"], 3);
    // A key's own "requests" adds its own bucket of 10 but never lifts the owner's cap.
    let capped = verify_body(&app, json!({"key": own})).await;
    assert_eq!(code(&capped), "RATE_LIMITED", "{capped}");
    let scopes: Vec<(&str, bool)> = capped["ratelimits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["scope"].as_str().unwrap(),
                r["exceeded"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(scopes, [("key", false), ("owner", true)]);
    // A minute later the owner's 3 are back; the owner's quota (5 uses, 3 taken) binds.
    app.clock.advance(60);
    let first = verify_body(&app, json!({"key": own})).await;
    assert_eq!(code(&first), "VALID", "{first}");
    assert_eq!(first["ratelimits"][0]["remaining"], 9);
    assert_eq!(first["ratelimits"][1]["remaining"], 2);
    assert_eq!(first["remaining"], 1);
    assert_eq!(code(&verify_body(&app, json!({"key": own})).await), "VALID");
    assert_eq!(
        code(&verify_body(&app, json!({"key": own})).await),
        "USAGE_EXCEEDED"
    );
    let (_, owner_now) = app
        .send(Method::GET, &format!("/v1/owners/{owner_id}"), None)
        .await;
    assert_eq!(owner_now["quota"]["remaining"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quota_of_1000_admits_exactly_1000_and_refills_at_its_boundary() {
    let app = spawn_app().await;
    app.clock.set(datetime!(2026-11-23 23:58:00 UTC));
    let ks = app.create_keyspace("quota").await.id;
    let key = app
        .create_key(json!({
            "keyspace_id": ks,
            "quota": {"remaining": 1000, "refill": {"interval": "daily", "amount": 1000}},
        }))
        .await;
    assert_eq!(key.record.quota.as_ref().unwrap().remaining, 1000);
    let load = Load::start(
        &app,
        8,
        json!({"key": key.key.clone()}),
        &["NOT_FOUND", "RATE_LIMITED"],
    );
    // Until every client has seen the quota run out for a while.
    load.settle(1_200).await;
    let admitted = load.stop().await;
    println!("quota of 1000, 8 clients: {admitted} VALID");
    assert_eq!(admitted, 1000);
    let after = verify_body(&app, json!({"key": key.key.clone()})).await;
    assert_eq!(code(&after), "USAGE_EXCEEDED");
    assert_eq!(after["remaining"], 0);

    app.clock.set(datetime!(2026-11-23 23:59:59 UTC));
    assert_eq!(
        code(&verify_body(&app, json!({"key": key.key.clone()})).await),
        "USAGE_EXCEEDED"
    );
    app.clock.set(datetime!(2026-11-24 00:00:00 UTC));
    let refilled = verify_body(&app, json!({"key": key.key.clone()})).await;
    assert_eq!(code(&refilled), "VALID", "{refilled}");
    assert_eq!(refilled["remaining"], 999);
    let (_, view) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", key.record.key_id),
            None,
        )
        .await;
    assert_eq!(view["quota"]["refilled_at"], "2026-11-24T00:00:00Z");
    assert_eq!(view["quota"]["next_refill_at"], "2026-11-25T00:00:00Z");

    // A top-up sets the counter; the counts already made are not taken from it.
    let (status, patched) = app
        .send(
            Method::PATCH,
            &format!("/v1/keys/{}", key.record.key_id),
            Some(&json!({"quota": {"remaining": 3}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["quota"]["remaining"], 3);
    assert!(patched["quota"]["refill"].is_null());
    let codes: Vec<String> = futures_codes(&app, &key.key, 4).await;
    assert_eq!(codes, ["VALID", "VALID", "VALID", "USAGE_EXCEEDED"]);

    // The uses reached the database (flushed in the background within a second).
    let stored = wait_for_stored_quota(&app, &key.record.key_id, 0).await;
    assert_eq!(stored, 0);
    let audit = app
        .send(
            Method::GET,
            &format!(
                "/v1/audit-events?target_id={}&action=key.update",
                key.record.key_id
            ),
            None,
        )
        .await
        .1;
    assert_eq!(
        audit["data"][0]["changes"]["quota"]["to"]["remaining"], 3,
        "{audit}"
    );
}

async fn futures_codes(app: &TestApp, key: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(code(&verify_body(app, json!({"key": key})).await).to_owned());
    }
    out
}

/// Polls the store until the key's stored quota is `want` (or 5 s pass); returns it.
async fn wait_for_stored_quota(app: &TestApp, key_id: &str, want: u64) -> u64 {
    let mut last = u64::MAX;
    for _ in 0..100 {
        let k = app.store.key_for_verify(key_id).await.unwrap().unwrap();
        last = k.key.limits.quota.unwrap().remaining;
        if last == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test]
async fn failed_verifications_are_limited_per_key_id_and_ip_without_locking_out_the_holder() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("guarded").await.id;
    let key = app.create_key(json!({"keyspace_id": ks})).await;
    // A well-formed key with this key id and another secret.
    let prefix = keyhaven_core::Prefix::new("guarded").unwrap();
    let other = keyhaven_core::generate(&prefix).unwrap();
    let other = secrecy::ExposeSecret::expose_secret(other.key()).to_owned();
    let parsed = keyhaven_core::parse(&other).unwrap();
    let body = format!(
        "guarded_{}_{}",
        key.record.key_id,
        &other[other.len() - 36..other.len() - 6]
    );
    let wrong = with_checksum(&body);
    assert!(parsed.key_id() != key.record.key_id);
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(code(&verify_body(&app, json!({"key": wrong})).await).to_owned());
    }
    assert_eq!(codes[..10], vec!["NOT_FOUND"; 10][..]);
    assert_eq!(codes[10..], ["RATE_LIMITED", "RATE_LIMITED"]);
    let blocked = verify_body(&app, json!({"key": wrong})).await;
    assert_eq!(blocked["ratelimits"][0]["name"], "failed_verifications");
    assert!(
        blocked["key_id"].is_null(),
        "says nothing of the key: {blocked}"
    );
    // An unknown key id is treated the same way (the answer reveals no existence).
    let unknown = with_checksum(&format!(
        "guarded_{}_{}",
        parsed.key_id(),
        &other[other.len() - 36..other.len() - 6]
    ));
    for _ in 0..10 {
        verify_body(&app, json!({"key": unknown})).await;
    }
    assert_eq!(
        code(&verify_body(&app, json!({"key": unknown})).await),
        "RATE_LIMITED"
    );
    // The holder is never locked out.
    assert_eq!(app.verify(&key.key).await.code, "VALID");
    // After a minute the key id's budget is back.
    app.clock.advance(60);
    assert_eq!(
        code(&verify_body(&app, json!({"key": wrong})).await),
        "NOT_FOUND"
    );

    // Per client IP, across key ids, independent of other addresses.
    let attacker = "203.0.113.9";
    let mut blocked_after = None;
    for i in 0..110 {
        let garbage = format!("guarded_{i}_nonsense");
        let answer = verify_body(&app, json!({"key": garbage, "client_ip": attacker})).await;
        if code(&answer) == "RATE_LIMITED" {
            blocked_after = Some(i);
            break;
        }
        assert_eq!(code(&answer), "MALFORMED");
    }
    assert_eq!(blocked_after, Some(100));
    assert_eq!(
        code(&verify_body(&app, json!({"key": "x", "client_ip": "198.51.100.7"})).await),
        "MALFORMED"
    );
    let holder = verify_body(&app, json!({"key": key.key.clone(), "client_ip": attacker})).await;
    assert_eq!(code(&holder), "VALID", "a matching secret always passes");
}

fn with_checksum(body: &str) -> String {
    format!(
        "{body}{}",
        std::str::from_utf8(&keyhaven_core::format::checksum(body.as_bytes())).unwrap()
    )
}

/// Quota uses and a `kill -9`: with `quota_flush_interval_ms = 0` every acknowledged use
/// is in the database, so after a restart the key has exactly what it had left; with
/// the default, a graceful stop writes what was pending.
#[tokio::test]
async fn acknowledged_quota_uses_survive_kill_9_with_zero_loss_and_a_graceful_stop_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let zero_loss = [("KEYHAVEN_QUOTA_FLUSH_INTERVAL_MS", "0")];
    let server = spawn_process(dir.path(), logs.path(), &zero_loss).await;
    let root = server.first_root_key();
    let http = http_client();
    let call = |base: String, path: &'static str, body: Value| {
        let (http, root) = (http.clone(), root.clone());
        async move { post_json(&http, &format!("{base}{path}"), &root, &body).await }
    };
    let ks = call(
        server.base.clone(),
        "/v1/keyspaces",
        json!({"name": "q", "prefix": "q"}),
    )
    .await;
    let key = call(
        server.base.clone(),
        "/v1/keys",
        json!({"keyspace_id": ks["id"], "quota": {"remaining": 50}}),
    )
    .await;
    let key_str = key["key"].as_str().unwrap().to_owned();
    let verify = |base: String| call(base, "/v1/keys/verify", json!({"key": key_str.clone()}));
    // 30 concurrent uses, all acknowledged before the kill.
    let answers = futures_join(30, || verify(server.base.clone())).await;
    assert!(answers.iter().all(|a| a["code"] == "VALID"));
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let server = spawn_process(dir.path(), logs.path(), &zero_loss).await;
    let after = verify(server.base.clone()).await;
    assert_eq!(after["code"], "VALID");
    assert_eq!(
        after["remaining"], 19,
        "30 uses before the kill, 1 after: {after}"
    );
    drop(server);

    // Default batching: a graceful stop (SIGTERM) writes the pending uses.
    let server = spawn_process(dir.path(), logs.path(), &[]).await;
    for _ in 0..9 {
        assert_eq!(verify(server.base.clone()).await["code"], "VALID");
    }
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut server = server;
    server.child.wait().unwrap();
    drop(server);
    let server = spawn_process(dir.path(), logs.path(), &[]).await;
    let last = verify(server.base.clone()).await;
    assert_eq!(last["remaining"], 9, "{last}");
}

async fn futures_join<F, Fut>(n: usize, f: F) -> Vec<Value>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(f())).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn malformed_limits_and_quotas_are_precise_400s_and_write_nothing() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("strict").await.id;
    let rl = |v: Value| json!({"keyspace_id": ks, "ratelimits": v});
    let q = |v: Value| json!({"keyspace_id": ks, "quota": v});
    let many: Vec<Value> = (0..17)
        .map(|i| json!({"name": format!("l{i}"), "limit": 1, "duration_ms": 1000}))
        .collect();
    let cases = [
        rl(
            json!([{"name": "a", "limit": 1, "duration_ms": 1000}, {"name": "a", "limit": 2, "duration_ms": 1000}]),
        ),
        rl(json!([{"name": "a", "limit": 0, "duration_ms": 1000}])),
        rl(json!([{"name": "a", "limit": 1, "duration_ms": 0}])),
        rl(json!([{"name": "a", "limit": 1, "duration_ms": 2_592_000_001u64}])),
        rl(json!([{"name": "a", "limit": 1, "duration_ms": 1000, "burst": 0}])),
        rl(
            json!([{"name": "a", "limit": 1, "duration_ms": 2_592_000_000u64, "burst": 1_000_000_000}]),
        ),
        rl(json!([{"name": "", "limit": 1, "duration_ms": 1000}])),
        rl(json!([{"name": "a b", "limit": 1, "duration_ms": 1000}])),
        rl(json!([{"name": "a", "limit": -1, "duration_ms": 1000}])),
        rl(json!([{"name": "a", "limit": 1, "duration_ms": 1000, "extra": true}])),
        rl(json!(many)),
        rl(json!({"name": "a"})),
        q(json!({"remaining": -1})),
        q(json!({"remaining": 1_125_899_906_842_625u64})),
        q(json!({"remaining": 1, "refill": {"interval": "weekly", "amount": 1}})),
        q(json!({"remaining": 1, "refill": {"interval": "daily", "amount": 1, "day": 3}})),
        q(json!({"remaining": 1, "refill": {"interval": "monthly", "amount": 1, "day": 32}})),
        q(json!({"remaining": 1, "refill": {"interval": "monthly", "amount": 1, "day": 0}})),
        q(json!({"refill": {"interval": "daily", "amount": 1}})),
    ];
    for body in &cases {
        let (status, problem) = app.send(Method::POST, "/v1/keys", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {problem}");
        assert!(problem["code"].is_string(), "{problem}");
    }
    // Nothing was written: no key, and only the keyspace's creation in the audit log.
    let (_, keys) = app
        .send(Method::GET, &format!("/v1/keys?keyspace_id={ks}"), None)
        .await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 0);
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?keyspace_id={ks}"),
            None,
        )
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    // The same checks guard PATCH (and a refused PATCH changes nothing).
    let key = app
        .create_key(json!({"keyspace_id": ks, "quota": {"remaining": 7}}))
        .await;
    let path = format!("/v1/keys/{}", key.record.key_id);
    for body in [
        json!({"ratelimits": [{"name": "a", "limit": 0, "duration_ms": 1}]}),
        json!({"quota": {"remaining": 1, "refill": {"interval": "hourly", "amount": 1}}}),
        json!({"name": "ok", "quota": {"remaining": -5}}),
    ] {
        let (status, problem) = app.send(Method::PATCH, &path, Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {problem}");
    }
    let (_, view) = app.send(Method::GET, &path, None).await;
    assert_eq!(view["quota"]["remaining"], 7);
    assert!(view["name"].is_null());
}
