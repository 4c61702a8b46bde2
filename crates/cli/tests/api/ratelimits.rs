//! `POST /v1/ratelimits/limit`: standalone limits for things that are not keys, on one
//! node (the two-node case through Redis is in `shared_limits.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn call(namespace: &str, identifier: &str, extra: Value) -> Value {
    let mut body = json!({"namespace": namespace, "identifier": identifier,
        "limit": 10, "duration_ms": 60_000});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

async fn limit(app: &TestApp, body: &Value) -> Value {
    let (status, answer) = app
        .send(Method::POST, "/v1/ratelimits/limit", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[tokio::test]
async fn sixteen_clients_get_exactly_the_burst_and_then_the_gcra_refill() {
    let app = spawn_app().await;
    let root = app.root_key(&["ratelimits:limit"], None).await;
    let body = call("login", "ada@example.com", json!({}));
    // 16 clients, 80 calls at one instant (the clock is the test's): exactly 10 pass.
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (url, root, body, admitted) = (
            app.url("/v1/ratelimits/limit"),
            root.clone(),
            body.clone(),
            admitted.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = http_client();
            for _ in 0..5 {
                let answer = post_json(&http, &url, &root, &body).await;
                if answer["success"] == true {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::SeqCst), 10);

    // Refused: nothing left, and when to come back (60 s / 10 per call).
    let refused = limit(&app, &body).await;
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["remaining"], 0);
    assert_eq!(refused["limit"], 10);
    assert_eq!(refused["retry_after_ms"], 6000);
    // A check at cost 0 takes nothing and passes.
    let check = limit(&app, &call("login", "ada@example.com", json!({"cost": 0}))).await;
    assert_eq!(check["success"], true, "{check}");
    assert_eq!(check["remaining"], 0);
    // 6 s later exactly one more call passes.
    app.clock.advance(6);
    assert_eq!(limit(&app, &body).await["success"], true);
    assert_eq!(limit(&app, &body).await["success"], false);

    // Another identifier, or the same one in another namespace, has its own bucket.
    let other = limit(&app, &call("login", "grace@example.com", json!({}))).await;
    assert_eq!(
        (other["success"].clone(), other["remaining"].clone()),
        (json!(true), json!(9))
    );
    let elsewhere = limit(&app, &call("otp.sms", "ada@example.com", json!({}))).await;
    assert_eq!(elsewhere["success"], true);
    // A cost above the burst can never pass: no retry_after_ms.
    let never = limit(&app, &call("big", "x", json!({"cost": 11}))).await;
    assert_eq!(never["success"], false);
    assert!(never.get("retry_after_ms").is_none(), "{never}");
}

#[tokio::test]
async fn bad_calls_get_precise_400s_and_only_unrestricted_keys_with_the_scope_may_call() {
    let app = spawn_app().await;
    let refused = [
        (call("", "x", json!({})), "rate limit names"),
        (call("has space", "x", json!({})), "rate limit names"),
        (call("login", "", json!({})), "identifier"),
        (call("login", &"x".repeat(257), json!({})), "identifier"),
        (call("login", "a\u{0}b", json!({})), "identifier"),
        (call("login", "x", json!({"limit": 0})), "limit and burst"),
        (call("login", "x", json!({"burst": 0})), "limit and burst"),
        (call("login", "x", json!({"duration_ms": 0})), "duration_ms"),
        (
            call("login", "x", json!({"cost": 5000})),
            "cost must be at most 1000",
        ),
    ];
    for (body, says) in refused {
        let (status, problem) = app
            .send(Method::POST, "/v1/ratelimits/limit", Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail} should say {says}");
    }
    for body in [
        json!({"namespace": "login", "identifier": "x", "limit": 1, "duration_ms": 1, "extra": 1}),
        json!({"namespace": "login", "identifier": 7, "limit": 1, "duration_ms": 1}),
        json!({"namespace": "login", "identifier": "x"}),
    ] {
        let (status, problem) = app
            .send(Method::POST, "/v1/ratelimits/limit", Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
    }
    // Nothing was counted by the refused calls.
    let fresh = limit(&app, &call("login", "x", json!({}))).await;
    assert_eq!(fresh["remaining"], 9, "{fresh}");

    let body = call("login", "x", json!({}));
    let verifier = app.root_key(&["keys:verify"], None).await;
    let family = app.root_key(&["ratelimits:*"], None).await;
    let ks = app.create_keyspace("rlscoped").await;
    let restricted = app
        .root_key(&["ratelimits:limit"], Some(&[ks.id.as_str()]))
        .await;
    for (root, expected) in [
        (&verifier, StatusCode::FORBIDDEN),
        // Namespaces belong to the whole deployment (as owners do: the same refusal).
        (&restricted, StatusCode::BAD_REQUEST),
        (&family, StatusCode::OK),
    ] {
        let (status, answer) = app
            .send_as(root, Method::POST, "/v1/ratelimits/limit", Some(&body))
            .await;
        assert_eq!(status, expected, "{answer}");
    }
}
