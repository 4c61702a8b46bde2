//! Leak response end to end: GitHub's secret scanning partner protocol signed with a
//! P-256 key pair made here (the server knows only its public key, from a file in
//! GitHub's format), the report endpoint, and self-revocation.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::helpers::*;

/// A GitHub signing key of the test, and its identifier.
struct GithubKey {
    id: &'static str,
    key: SigningKey,
}

impl GithubKey {
    fn new(id: &'static str) -> Self {
        Self {
            id,
            key: SigningKey::generate(),
        }
    }

    fn sign(&self, body: &[u8]) -> String {
        let signature: DerSignature = self.key.sign(body);
        STANDARD.encode(signature.as_bytes())
    }
}

/// Writes GitHub's `public_keys` document naming `keys`.
fn write_public_keys(path: &Path, keys: &[&GithubKey]) {
    let entries: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "key_identifier": k.id,
                "key": k.key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap(),
                "is_current": true,
            })
        })
        .collect();
    std::fs::write(path, json!({ "public_keys": entries }).to_string()).unwrap();
}

/// POSTs a GitHub batch; `signed` as (key id, signature) headers.
async fn github_post(
    app: &TestApp,
    body: &[u8],
    signed: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut request = app
        .http
        .post(app.url("/v1/leaks/github"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some((id, signature)) = signed {
        request = request
            .header("Github-Public-Key-Identifier", id)
            .header("Github-Public-Key-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn batch(tokens: &[&str]) -> Vec<u8> {
    let items: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "token": t,
                "type": "keyhaven_api_key",
                "url": format!("https://github.com/octo/app/blob/abc/config{i}.yml"),
                "source": "content",
            })
        })
        .collect();
    serde_json::to_vec(&items).unwrap()
}

async fn leaked_events(app: &TestApp) -> Vec<Value> {
    let (status, page) = app
        .send(Method::GET, "/v1/events?type=key.leaked&limit=500", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"].as_array().unwrap().clone()
}

type Deliveries = Arc<Mutex<Vec<Value>>>;

async fn receive(State(seen): State<Deliveries>, body: Bytes) -> AxumStatus {
    seen.lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    AxumStatus::NO_CONTENT
}

async fn start_receiver() -> (String, Deliveries) {
    let seen: Deliveries = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn a_signed_github_batch_acts_per_keyspace_policy_with_events_webhooks_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("github-keys.json");
    let github = GithubKey::new("gh-key-1");
    write_public_keys(&keys_file, &[&github]);
    let file = keys_file.clone();
    let app = spawn_app_with(move |c| {
        c.leaks_github_public_keys_file = Some(file);
        c.webhook_allow_private_targets = true;
    })
    .await;
    let (hook_url, deliveries) = start_receiver().await;
    let (status, hook) = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&json!({"url": hook_url, "event_types": ["key.leaked"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");

    let revoking = app.create_keyspace("leak_rev").await;
    let disabling = app.create_keyspace("leak_dis").await;
    let notifying = app.create_keyspace("leak_note").await;
    for (ks, policy) in [(&disabling, "disable"), (&notifying, "notify")] {
        let (status, body) = app
            .send(
                Method::PATCH,
                &format!("/v1/keyspaces/{}", ks.id),
                Some(&json!({ "leak_policy": policy })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["leak_policy"], policy);
    }
    let a = app.create_key(json!({"keyspace_id": revoking.id})).await;
    let b = app.create_key(json!({"keyspace_id": disabling.id})).await;
    let c = app.create_key(json!({"keyspace_id": notifying.id})).await;
    let untouched = app.create_key(json!({"keyspace_id": revoking.id})).await;
    let root = app.root_key(&["keys:read"], None).await;
    assert_eq!(
        app.http
            .get(app.url("/v1/keys"))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let wrong = with_wrong_secret(&a.key, "leak_rev");
    let tokens = [
        a.key.as_str(),
        b.key.as_str(),
        c.key.as_str(),
        root.as_str(),
        wrong.as_str(),
        "some_token",
        a.key.as_str(),
    ];
    let body = batch(&tokens);
    let signature = github.sign(&body);
    let (status, verdicts) = github_post(&app, &body, Some((github.id, &signature))).await;
    assert_eq!(status, StatusCode::OK, "{verdicts}");
    let labels: Vec<&str> = (verdicts.as_array().unwrap().iter())
        .map(|v| v["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "true_positive",
            "true_positive",
            "true_positive",
            "true_positive",
            "false_positive",
            "false_positive",
            "true_positive"
        ]
    );
    for (verdict, token) in verdicts.as_array().unwrap().iter().zip(tokens) {
        assert_eq!(verdict["token_hash"], hex::encode(Sha256::digest(token)));
        assert_eq!(verdict["token_type"], "keyhaven_api_key");
    }
    // Nothing in the answer is a secret.
    let answer = verdicts.to_string();
    for token in tokens {
        assert!(!answer.contains(token));
    }

    assert_eq!(app.verify(&a.key).await.code, "REVOKED");
    assert_eq!(app.verify(&b.key).await.code, "DISABLED");
    assert_eq!(app.verify(&c.key).await.code, "VALID");
    assert_eq!(app.verify(&untouched.key).await.code, "VALID");
    let status = app
        .http
        .get(app.url("/v1/keys"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a leaked root key is revoked"
    );

    // One key.leaked event per key (the repeat of `a` in the batch is no second one).
    let events = leaked_events(&app).await;
    let by_key: Vec<(String, String)> = (events.iter())
        .map(|e| {
            let data = &e["payload"];
            assert_eq!(data["source"], "github", "{e}");
            assert!(
                data["url"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://github.com/octo/app/"),
                "{e}"
            );
            (
                data["key_id"].as_str().unwrap().to_owned(),
                data["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: HashSet<(String, String)> = [
        (a.record.key_id.clone(), "revoked"),
        (b.record.key_id.clone(), "disabled"),
        (c.record.key_id.clone(), "notified"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    let customer: HashSet<(String, String)> = by_key
        .iter()
        .filter(|(k, _)| k != root.split('_').nth(2).unwrap())
        .cloned()
        .collect();
    assert_eq!(customer, expected, "{events:?}");
    assert_eq!(events.len(), 4, "{events:?}");

    // Audited as leak:github.
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={}", a.record.key_id),
            None,
        )
        .await;
    let leak = (audit["data"].as_array().unwrap().iter())
        .find(|e| e["action"] == "key.leak")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(leak["actor"], "leak:github");
    assert_eq!(leak["changes"]["action"], "revoked");

    // The webhook hears of the customer keys' leaks.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let heard: HashSet<String> = (deliveries.lock().unwrap().iter())
            .filter(|d| d["type"] == "key.leaked")
            .filter_map(|d| d["data"]["key_id"].as_str().map(str::to_owned))
            .collect();
        let wanted: HashSet<String> = [&a.record.key_id, &b.record.key_id, &c.record.key_id]
            .into_iter()
            .cloned()
            .collect();
        if wanted.is_subset(&heard) {
            break;
        }
        assert!(Instant::now() < deadline, "webhooks heard only {heard:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A replay of the same signed batch is refused; a new batch naming `a` again is
    // answered but changes nothing (no second event).
    let (status, problem) = github_post(&app, &body, Some((github.id, &signature))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert_eq!(problem["code"], "replayed");
    let again = batch(&[a.key.as_str(), c.key.as_str()]);
    let (status, verdicts) =
        github_post(&app, &again, Some((github.id, &github.sign(&again)))).await;
    assert_eq!(status, StatusCode::OK, "{verdicts}");
    assert_eq!(verdicts[0]["label"], "true_positive");
    assert_eq!(leaked_events(&app).await.len(), 4);
    assert_eq!(app.verify(&c.key).await.code, "VALID");
}

#[tokio::test]
async fn unsigned_tampered_unknown_or_retired_github_keys_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("github-keys.json");
    let (old, new) = (GithubKey::new("gh-old"), GithubKey::new("gh-new"));
    write_public_keys(&keys_file, &[&old]);
    let file = keys_file.clone();
    let app = spawn_app_with(move |c| c.leaks_github_public_keys_file = Some(file)).await;
    let ks = app.create_keyspace("leak_guard").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let body = batch(&[key.key.as_str()]);
    let signature = old.sign(&body);

    let mut tampered = body.clone();
    let at = tampered.len() - 3;
    tampered[at] = b'X';
    let signed_by_stranger = new.sign(&body);
    for (what, body, signed, code) in [
        ("unsigned", body.clone(), None, "unsigned"),
        (
            "tampered",
            tampered,
            Some((old.id, signature.as_str())),
            "bad_signature",
        ),
        (
            "unknown key id",
            body.clone(),
            Some(("gh-nope", signature.as_str())),
            "unknown_public_key",
        ),
        (
            "another key's signature",
            body.clone(),
            Some((old.id, signed_by_stranger.as_str())),
            "bad_signature",
        ),
        (
            "garbage signature",
            body.clone(),
            Some((old.id, "bm90IGEgc2lnbmF0dXJl")),
            "bad_signature",
        ),
    ] {
        let (status, problem) = github_post(&app, &body, signed).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {problem}");
        assert_eq!(problem["code"], code, "{what}: {problem}");
    }
    assert_eq!(app.verify(&key.key).await.code, "VALID");

    // GitHub rotates its keys: the file now names only the new one. The old key is
    // stale at once (the file is read again when it changes); the new one works.
    std::thread::sleep(Duration::from_millis(20));
    write_public_keys(&keys_file, &[&new]);
    let (status, problem) = github_post(&app, &body, Some((old.id, &signature))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert_eq!(problem["code"], "unknown_public_key");
    assert_eq!(app.verify(&key.key).await.code, "VALID");
    assert!(leaked_events(&app).await.is_empty());
    let (status, verdicts) = github_post(&app, &body, Some((new.id, &new.sign(&body)))).await;
    assert_eq!(status, StatusCode::OK, "{verdicts}");
    assert_eq!(app.verify(&key.key).await.code, "REVOKED");

    // A server with no GitHub keys configured refuses every batch.
    let bare = spawn_app().await;
    let (status, problem) = github_post(&bare, &body, Some((old.id, &signature))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert_eq!(problem["code"], "github_not_configured");
}

#[tokio::test]
async fn reports_need_leaks_write_and_are_idempotent() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("leak_rep").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let reader = app.root_key(&["keys:read"], None).await;
    let reporter = app.root_key(&["leaks:write"], None).await;
    let body = json!({"keys": [key.key], "source": "trufflehog", "url": "s3://bucket/dump.txt"});
    let (status, problem) = app
        .send_as(&reader, Method::POST, "/v1/leaks/report", Some(&body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(app.verify(&key.key).await.code, "VALID");
    for (bad, why) in [
        (json!({"keys": []}), "no keys"),
        (
            json!({"keys": [key.key], "source": "Truffle Hog"}),
            "source",
        ),
        (json!({"keys": [key.key], "url": "a\nb"}), "url"),
        (
            json!({"keys": [key.key], "source": "github"}),
            "reserved source",
        ),
        (json!({"keys": [key.key], "extra": 1}), "unknown field"),
    ] {
        let (status, problem) = app
            .send_as(&reporter, Method::POST, "/v1/leaks/report", Some(&bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {problem}");
    }
    assert_eq!(app.verify(&key.key).await.code, "VALID");

    let (status, answer) = app
        .send_as(&reporter, Method::POST, "/v1/leaks/report", Some(&body))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["results"],
        json!([{"label": "true_positive", "key_id": key.record.key_id, "action": "revoked"}])
    );
    assert_eq!(app.verify(&key.key).await.code, "REVOKED");
    let (_, again) = app
        .send_as(&reporter, Method::POST, "/v1/leaks/report", Some(&body))
        .await;
    assert_eq!(again["results"][0]["action"], "already_reported", "{again}");
    let events = leaked_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["payload"]["source"], "trufflehog");
    assert_eq!(events[0]["payload"]["url"], "s3://bucket/dump.txt");
    let reporter_id = reporter.split('_').nth(2).unwrap();
    assert_eq!(events[0]["payload"]["reported_by"], reporter_id);
    assert_eq!(events[0]["payload"]["actor"], "leak:trufflehog");
}

#[tokio::test]
async fn self_revoke_needs_the_key_and_failures_are_limited_like_verify() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("leak_self").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let wrong = with_wrong_secret(&key.key, "leak_self");
    let self_revoke = |token: String, body: Value| {
        let request = app
            .http
            .post(app.url("/v1/keys/self-revoke"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let r = request.send().await.unwrap();
            let (status, headers) = (r.status(), r.headers().clone());
            (status, headers, r.json::<Value>().await.unwrap())
        }
    };
    // Failed attempts answer 401 and change nothing, until the per-key-id limit of
    // failed verifications (10 a minute by default) answers 429.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, headers, problem) = self_revoke(wrong.clone(), json!({})).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(headers["www-authenticate"], "Bearer", "{problem}");
        } else {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
            assert!(headers.contains_key("retry-after"), "{problem}");
        }
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses[..10], [401; 10]);
    assert_eq!(statuses[10..], [429; 2]);
    assert_eq!(app.verify(&key.key).await.code, "VALID");
    // Verify counts the same failures: the key id is limited there too.
    assert_eq!(app.verify(&wrong).await.code, "RATE_LIMITED");

    let (status, _, answer) =
        self_revoke(key.key.clone(), json!({"reason": "found in a gist"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["key_id"], key.record.key_id);
    assert_eq!(answer["already_revoked"], false);
    assert_eq!(app.verify(&key.key).await.code, "REVOKED");
    let (status, _, answer) = self_revoke(key.key.clone(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["already_revoked"], true);
    let (_, audit) = app
        .send(
            Method::GET,
            &format!(
                "/v1/audit-events?target_id={}&action=key.revoke",
                key.record.key_id
            ),
            None,
        )
        .await;
    let events = audit["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["actor"], format!("key:{}", key.record.key_id));
    assert_eq!(events[0]["changes"]["reason"], "found in a gist");
    let (status, _, _) = self_revoke("no-key".into(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn github_public_keys_can_come_from_a_url() {
    let github = GithubKey::new("gh-fetched");
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("keys.json");
    write_public_keys(&document, &[&github]);
    let served = std::fs::read_to_string(&document).unwrap();
    let fetches = Arc::new(Mutex::new(0u32));
    let counter = fetches.clone();
    let keys_app = axum::Router::new().route(
        "/meta/public_keys/secret_scanning",
        axum::routing::get(move || {
            *counter.lock().unwrap() += 1;
            let body = served.clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/meta/public_keys/secret_scanning",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, keys_app).await });
    let app = spawn_app_with(move |c| c.leaks_github_public_keys_url = Some(url)).await;
    let ks = app.create_keyspace("leak_url").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let body = batch(&[key.key.as_str()]);
    let (status, verdicts) = github_post(&app, &body, Some((github.id, &github.sign(&body)))).await;
    assert_eq!(status, StatusCode::OK, "{verdicts}");
    assert_eq!(verdicts[0]["label"], "true_positive");
    assert_eq!(app.verify(&key.key).await.code, "REVOKED");
    // An unknown key id within the minute does not fetch again.
    let (status, problem) = github_post(&app, &body, Some(("gh-other", "AAAA"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert_eq!(*fetches.lock().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyhaven_scan_reports_what_it_finds_and_the_server_revokes_it() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("leak_scan").await;
    let found = app.create_key(json!({"keyspace_id": ks.id})).await;
    let elsewhere = app.create_key(json!({"keyspace_id": ks.id})).await;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("repo");
    std::fs::create_dir_all(&tree).unwrap();
    let look_alike = with_wrong_secret(&elsewhere.key, "leak_scan");
    std::fs::write(
        tree.join("settings.py"),
        format!("API_KEY = \"{}\"\nOTHER = \"{look_alike}\"\n", found.key),
    )
    .unwrap();
    let root_file = dir.path().join("root-key");
    std::fs::write(&root_file, app.root_key(&["leaks:write"], None).await).unwrap();
    let args: Vec<String> = vec![
        "scan".into(),
        tree.display().to_string(),
        "--report".into(),
        app.base.clone(),
        "--root-key-file".into(),
        root_file.display().to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyhaven"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    for secret_part in [
        &found.key[found.key.len() - 36..],
        &look_alike[look_alike.len() - 36..],
    ] {
        assert!(!stdout.contains(secret_part) && !stderr.contains(secret_part));
    }
    assert_eq!(app.verify(&found.key).await.code, "REVOKED");
    assert_eq!(app.verify(&elsewhere.key).await.code, "VALID");
    let events = leaked_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["payload"]["source"], "keyhaven-scan");
    assert_eq!(events[0]["payload"]["key_id"], found.record.key_id);
    assert!(
        events[0]["payload"]["url"]
            .as_str()
            .unwrap()
            .contains("settings.py:1"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_on_an_unusable_github_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bad = dir.path().join("github-keys.json");
    std::fs::write(
        &bad,
        r#"{"public_keys": [{"key_identifier": "k", "key": "not a key"}]}"#,
    )
    .unwrap();
    for file in [bad.clone(), dir.path().join("missing.json")] {
        let mut command = keyhaven(&data).await;
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("KEYHAVEN_LEAKS_GITHUB_PUBLIC_KEYS_FILE", &file);
        let output = tokio::task::spawn_blocking(move || {
            command.stdin(std::process::Stdio::null()).output().unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("GitHub's secret scanning public keys")
                && stderr.contains(&file.display().to_string()),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn a_leaked_key_enabled_again_is_stopped_again_by_the_next_report() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("leak_again").await;
    let (status, body) = app
        .send(
            Method::PATCH,
            &format!("/v1/keyspaces/{}", ks.id),
            Some(&json!({"leak_policy": "disable"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let report = json!({"keys": [key.key], "source": "scanner"});
    let action = |answer: &Value| answer["results"][0]["action"].clone();
    let (_, first) = app
        .send(Method::POST, "/v1/leaks/report", Some(&report))
        .await;
    assert_eq!(action(&first), "disabled", "{first}");
    let (_, repeat) = app
        .send(Method::POST, "/v1/leaks/report", Some(&report))
        .await;
    assert_eq!(action(&repeat), "already_reported", "{repeat}");
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/v1/keys/{}", key.record.key_id),
            Some(&json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.verify(&key.key).await.code, "VALID");
    let (_, again) = app
        .send(Method::POST, "/v1/leaks/report", Some(&report))
        .await;
    assert_eq!(action(&again), "disabled", "{again}");
    assert_eq!(app.verify(&key.key).await.code, "DISABLED");
    assert_eq!(leaked_events(&app).await.len(), 2);
}
