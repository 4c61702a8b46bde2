//! Webhooks end to end: a real receiver on 127.0.0.1 checks every signature with its own
//! implementation of the Standard Webhooks scheme, fails the first attempts, and counts
//! what it processed by `webhook-id`; the server is killed mid-delivery.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;

/// The receiver's side of the Standard Webhooks scheme, written from the specification
/// and independent of the server's code: `v1,` + base64(HMAC-SHA256(base64-decoded
/// secret, "{id}.{timestamp}.{body}")), any of the space-separated signatures may match,
/// and the timestamp must be within five minutes.
fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(format!("missing {name}"))
    };
    let id = get("webhook-id")?;
    let timestamp = get("webhook-timestamp")?;
    let signatures = get("webhook-signature")?;
    let sent: i64 = timestamp.parse().map_err(|_| "bad timestamp")?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - sent).abs() > 300 {
        return Err("timestamp outside tolerance".into());
    }
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").ok_or("secret prefix")?)
        .map_err(|_| "secret encoding")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let ok = signatures.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|given| {
                // Constant time, as a receiver should.
                let mut check = Hmac::<Sha256>::new_from_slice(&key).unwrap();
                check.update(format!("{id}.{timestamp}.").as_bytes());
                check.update(body);
                check.verify_slice(&given).is_ok() && given == expected.as_slice()
            })
    });
    if ok {
        Ok(id.to_owned())
    } else {
        Err("signature mismatch".into())
    }
}

#[derive(Default)]
struct Seen {
    secret: String,
    /// Attempts per webhook-id.
    attempts: HashMap<String, u32>,
    /// Ids processed (answered 2xx), once each: what an idempotent receiver acts on.
    processed: HashSet<String>,
    /// 2xx answers to an id already processed (at-least-once redeliveries).
    duplicates: u32,
    bad_signatures: u32,
    bodies: Vec<(HeaderMap, Bytes)>,
}

type Receiver = Arc<Mutex<Seen>>;

/// Fails the first `FAILURES` attempts of every id, then accepts.
const FAILURES: u32 = 3;

async fn receive(State(seen): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let mut seen = seen.lock().unwrap();
    let id = match verify_signature(&seen.secret, &headers, &body) {
        Ok(id) => id,
        Err(_) => {
            seen.bad_signatures += 1;
            return AxumStatus::BAD_REQUEST;
        }
    };
    if seen.bodies.len() < 5 {
        seen.bodies.push((headers.clone(), body.clone()));
    }
    let n = seen.attempts.entry(id.clone()).or_default();
    *n += 1;
    if *n <= FAILURES {
        return AxumStatus::INTERNAL_SERVER_ERROR;
    }
    if !seen.processed.insert(id) {
        seen.duplicates += 1;
    }
    AxumStatus::NO_CONTENT
}

async fn start_receiver() -> (String, Receiver) {
    let seen: Receiver = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

async fn get_json(http: &reqwest::Client, url: &str, root: &str) -> Value {
    let r = http.get(url).bearer_auth(root).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{url}");
    r.json().await.unwrap()
}

/// Every event id of `kind`, following the cursor.
async fn event_ids(http: &reqwest::Client, base: &str, root: &str, kind: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/events?type={kind}&limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(http, &url, root).await;
        for e in page["data"].as_array().unwrap() {
            ids.insert(e["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_arrive_exactly_once_despite_failures_and_kill_9() {
    let (hook_url, seen) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let envs = [
        ("KEYHAVEN_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("KEYHAVEN_WEBHOOK_RETRY_INITIAL_MS", "50"),
        ("KEYHAVEN_WEBHOOK_RETRY_MAX_DELAY_MS", "200"),
        ("KEYHAVEN_WEBHOOK_TIMEOUT_MS", "2000"),
    ];
    let mut server = spawn_process(dir.path(), logs.path(), &envs).await;
    let root = server.first_root_key();
    let http = http_client();
    let ks = post_json(
        &http,
        &format!("{}/v1/keyspaces", server.base),
        &root,
        &json!({"name": "Hooks", "prefix": "hook"}),
    )
    .await;
    let created = post_json(
        &http,
        &format!("{}/v1/webhooks", server.base),
        &root,
        &json!({"url": hook_url, "event_types": ["key.created"]}),
    )
    .await;
    seen.lock().unwrap().secret = created["secret"].as_str().unwrap().to_owned();
    let hook_id = created["id"].as_str().unwrap().to_owned();

    // 1,000 key.created events, eight writers at a time.
    let ks_id = ks["id"].as_str().unwrap().to_owned();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (http, base, root, ks_id) = (
            http.clone(),
            server.base.clone(),
            root.clone(),
            ks_id.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0..125 {
                post_json(
                    &http,
                    &format!("{base}/v1/keys"),
                    &root,
                    &json!({"keyspace_id": ks_id, "name": format!("k{w}-{i}")}),
                )
                .await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let events = event_ids(&http, &server.base, &root, "key.created").await;
    assert_eq!(events.len(), 1_000);

    // Kill the server mid-delivery, then start it again on the same data.
    let start = Instant::now();
    while seen.lock().unwrap().processed.len() < 250 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "deliveries stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let at_kill = seen.lock().unwrap().processed.len();
    assert!(at_kill < 1_000, "the kill should land mid-delivery");
    let server = spawn_process(dir.path(), logs.path(), &envs).await;
    let start = Instant::now();
    while seen.lock().unwrap().processed.len() < 1_000 {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "only {} of 1000 delivered after the restart",
            seen.lock().unwrap().processed.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.processed, events, "every event, and nothing else");
        assert_eq!(seen.bad_signatures, 0);
        assert!(
            seen.attempts.values().all(|n| *n > FAILURES),
            "each delivered only after its failures"
        );
        println!(
            "webhooks: 1000 events; {at_kill} processed before the kill -9; {} attempts; \
             {} redelivered after success (at least once, deduplicated by webhook-id)",
            seen.attempts.values().sum::<u32>(),
            seen.duplicates
        );
        // The receiver's check is real: a tampered body or a wrong secret is refused.
        let (headers, body) = seen.bodies[0].clone();
        assert!(verify_signature(&seen.secret, &headers, &body).is_ok());
        let mut tampered = body.to_vec();
        tampered[0] = b' ';
        assert!(verify_signature(&seen.secret, &headers, &tampered).is_err());
        assert!(
            verify_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &headers, &body).is_err()
        );
        let payload: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(payload["type"], "key.created");
        assert_eq!(payload["data"]["keyspace_id"], ks_id.as_str());
        assert!(payload["data"]["key_id"].is_string());
    }

    // Deliveries the killed server had sent but not recorded are sent again (at least
    // once); wait until none is pending.
    let start = Instant::now();
    loop {
        let pending = get_json(
            &http,
            &format!(
                "{}/v1/webhooks/{hook_id}/deliveries?status=pending",
                server.base
            ),
            &root,
        )
        .await;
        if pending["data"] == json!([]) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{pending}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.lock().unwrap().processed, events);
    // The delivery log agrees: all delivered, each after its failed attempts.
    let page = get_json(
        &http,
        &format!(
            "{}/v1/webhooks/{hook_id}/deliveries?status=delivered&limit=500",
            server.base
        ),
        &root,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 500);
    // Each log is failures (500) then one success (204). A delivery that was in flight at
    // the kill -9 may lack an attempt the receiver counted but the killed server never
    // wrote, so it can show fewer than FAILURES failures; the others (all but at most
    // `webhook_concurrency`, 16, of any 40) show all of them.
    let mut complete = 0;
    for delivery in page["data"].as_array().unwrap().iter().take(40) {
        let id = delivery["id"].as_str().unwrap();
        let detail = get_json(
            &http,
            &format!("{}/v1/webhooks/{hook_id}/deliveries/{id}", server.base),
            &root,
        )
        .await;
        let log = detail["attempt_log"].as_array().unwrap();
        let (last, failed) = log.split_last().unwrap();
        assert_eq!(last["status_code"], 204, "{detail}");
        assert!(
            !failed.is_empty() && failed.len() <= FAILURES as usize,
            "{detail}"
        );
        assert!(failed.iter().all(|a| a["status_code"] == 500), "{detail}");
        assert_eq!(detail["status"], "delivered");
        complete += usize::from(failed.len() == FAILURES as usize);
    }
    assert!(
        complete >= 10,
        "{complete} of 20 logs show every failed attempt"
    );
}

#[tokio::test]
async fn webhooks_are_managed_audited_and_never_show_their_secret_twice() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("wh").await;
    // Private targets are refused by default.
    for (body, why) in [
        (json!({"url": "http://127.0.0.1:9/x"}), "loopback"),
        (json!({"url": "http://169.254.169.254/latest"}), "metadata"),
        (json!({"url": "ftp://example.com/"}), "scheme"),
        (json!({"url": "https://u:p@example.com/"}), "credentials"),
        (
            json!({"url": "https://example.com/", "event_types": ["key.nope"]}),
            "event type",
        ),
        (
            json!({"url": "https://example.com/", "event_types": []}),
            "no types",
        ),
        (
            json!({"url": "https://example.com/", "secret": "x"}),
            "unknown field",
        ),
    ] {
        let (status, problem) = app.send(Method::POST, "/v1/webhooks", Some(&body)).await;
        assert!(status.is_client_error(), "{why}: {status} {problem}");
        assert!(problem["code"].is_string(), "{why}: {problem}");
    }
    let (status, created) = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&json!({
                "url": "https://hooks.example.com/keyhaven",
                "event_types": ["key.revoked", "usage.anomaly"],
                "keyspace_id": ks.id,
                "description": "pager",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();
    let (_, got) = app
        .send(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert!(got.get("secret").is_none(), "{got}");
    assert_eq!(got["event_types"], json!(["key.revoked", "usage.anomaly"]));
    let (status, patched) = app
        .send(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&json!({"enabled": false, "description": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (patched["enabled"].clone(), patched["description"].clone()),
        (json!(false), Value::Null)
    );

    // A root key of another keyspace sees none of it; one of this keyspace does.
    let other = app.create_keyspace("other").await;
    let outsider = app.root_key(&["*"], Some(&[other.id.as_str()])).await;
    let (status, _) = app
        .send_as(&outsider, Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = app
        .send_as(&outsider, Method::GET, "/v1/webhooks", None)
        .await;
    assert_eq!(listed["data"], json!([]));
    let (status, _) = app
        .send_as(
            &outsider,
            Method::POST,
            "/v1/webhooks",
            Some(&json!({"url": "https://example.com/"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "restricted keys name a keyspace"
    );

    // Audited, without the secret; counted in /metrics.
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={id}"),
            None,
        )
        .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["webhook.update", "webhook.create"]);
    assert!(!audit.to_string().contains(&secret));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("keyhaven_audit_events_total{action=\"webhook.create\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains(&secret));

    let (status, _) = app
        .send(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .send(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
