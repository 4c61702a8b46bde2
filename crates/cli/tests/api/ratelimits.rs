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

/// How many of `n` calls for `identifier` in `login` (each naming 10 per minute) pass.
async fn passing(app: &TestApp, identifier: &str, n: usize) -> usize {
    let mut passed = 0;
    for _ in 0..n {
        if limit(app, &call("login", identifier, json!({}))).await["success"] == true {
            passed += 1;
        }
    }
    passed
}

async fn set_override(app: &TestApp, identifier: &str, limit: u64) -> Value {
    let (status, answer) = app
        .send(
            Method::PUT,
            "/v1/ratelimits/overrides",
            Some(&json!({"namespace": "login", "identifier": identifier,
                "limit": limit, "duration_ms": 60_000})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[tokio::test]
async fn overrides_give_identifiers_and_patterns_their_own_limit_and_the_most_specific_wins() {
    let app = spawn_app().await;
    assert_eq!(
        passing(&app, "a@acme.com", 12).await,
        10,
        "the limit each call names"
    );
    set_override(&app, "*@acme.com", 3).await;
    set_override(&app, "*@eu.acme.com", 5).await;
    let vip = set_override(&app, "ceo@acme.com", 20).await;
    assert_eq!(vip["identifier"], "ceo@acme.com");
    assert_eq!(vip["limit"], 20);
    assert_eq!(
        passing(&app, "b@acme.com", 6).await,
        3,
        "the domain's pattern"
    );
    assert_eq!(
        passing(&app, "c@eu.acme.com", 8).await,
        5,
        "the more specific pattern"
    );
    assert_eq!(
        passing(&app, "ceo@acme.com", 25).await,
        20,
        "an exact identifier wins"
    );
    assert_eq!(
        passing(&app, "d@other.org", 12).await,
        10,
        "no override matches"
    );
    assert_eq!(
        passing(&app, "x@acme.com.evil", 12).await,
        10,
        "a pattern is anchored"
    );

    // Setting again replaces; deleting restores the limit calls name.
    set_override(&app, "*@acme.com", 1).await;
    assert_eq!(passing(&app, "e@acme.com", 3).await, 1);
    let (_, listed) = app
        .send(
            Method::GET,
            "/v1/ratelimits/overrides?namespace=login",
            None,
        )
        .await;
    let ids: Vec<&str> = (listed["data"].as_array().unwrap().iter())
        .map(|o| o["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["*@acme.com", "*@eu.acme.com", "ceo@acme.com"],
        "{listed}"
    );
    let (status, _) = app
        .send(
            Method::DELETE,
            "/v1/ratelimits/overrides?namespace=login&identifier=*%40acme.com",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(passing(&app, "f@acme.com", 12).await, 10);
    let (status, _) = app
        .send(
            Method::DELETE,
            "/v1/ratelimits/overrides?namespace=login&identifier=*%40acme.com",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Audited: set (twice) and deleted, with the limit from and to.
    let (_, audit) = app
        .send(
            Method::GET,
            "/v1/audit-events?target_id=login/*%40acme.com",
            None,
        )
        .await;
    let actions: Vec<&str> = (audit["data"].as_array().unwrap().iter())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "ratelimit_override.delete",
            "ratelimit_override.set",
            "ratelimit_override.set"
        ],
        "{audit}"
    );
    assert_eq!(audit["data"][1]["changes"]["limit"]["from"]["limit"], 3);
    assert_eq!(audit["data"][1]["changes"]["limit"]["to"]["limit"], 1);
}

#[tokio::test]
async fn bad_overrides_are_refused_precisely_and_need_their_scope() {
    let app = spawn_app().await;
    let body = |namespace: &str, identifier: &str, limit: u64| {
        json!({"namespace": namespace, "identifier": identifier, "limit": limit,
            "duration_ms": 1_000})
    };
    let refused = [
        body("bad namespace", "x", 1),
        body("login", "", 1),
        body("login", "a\u{7}b", 1),
        body("login", &"y".repeat(257), 1),
        body("login", "*a*b*c*d*e", 1),
        body("login", "x", 0),
        json!({"namespace": "login", "identifier": "x", "limit": 1, "duration_ms": 1,
            "extra": true}),
    ];
    for b in refused {
        let (status, problem) = app
            .send(Method::PUT, "/v1/ratelimits/overrides", Some(&b))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}: {problem}");
    }
    let (_, listed) = app
        .send(
            Method::GET,
            "/v1/ratelimits/overrides?namespace=login",
            None,
        )
        .await;
    assert_eq!(listed["data"], json!([]), "nothing was written");
    let (status, _) = app
        .send(Method::GET, "/v1/ratelimits/overrides", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the namespace is needed");
    let (status, problem) = app
        .send(
            Method::GET,
            "/v1/ratelimits/overrides?namespace=bad%20ns",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().starts_with("namespace"),
        "{problem}"
    );
    // A root key limited to keyspaces may neither read nor change them.
    let ks = app.create_keyspace("ovr").await.id;
    let limited = app
        .root_key(&["ratelimits:read", "ratelimits:write"], Some(&[&ks]))
        .await;
    let answer = app
        .http
        .get(app.url("/v1/ratelimits/overrides?namespace=login"))
        .bearer_auth(&limited)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error(), "{}", answer.status());

    // `ratelimits:limit` counts calls; changing overrides needs `ratelimits:write`.
    let counter = app.root_key(&["ratelimits:limit"], None).await;
    let answer = app
        .http
        .put(app.url("/v1/ratelimits/overrides"))
        .bearer_auth(&counter)
        .json(&body("login", "*", 1_000))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let writer = app.root_key(&["ratelimits:write"], None).await;
    let answer = app
        .http
        .put(app.url("/v1/ratelimits/overrides"))
        .bearer_auth(&writer)
        .json(&body("login", "*", 1_000))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}
