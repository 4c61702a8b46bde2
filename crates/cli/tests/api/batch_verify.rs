//! `POST /v1/keys/verify/batch`: each item answered exactly as `POST /v1/keys/verify`
//! answers it (limits, quota and usage included), in order; a malformed item refuses
//! the whole batch before anything is consumed.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// A keyspace with `prefix` and its keys in every state a verify can meet; the bodies
/// to verify, and the ids to tell one fixture from another.
struct Fixture {
    bodies: Vec<Value>,
    ids: Vec<String>,
}

async fn fixture(app: &TestApp, prefix: &str) -> Fixture {
    let ks = app.create_keyspace(prefix).await;
    let (status, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": format!("{prefix}-customer")})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    let owner_id = owner["id"].as_str().unwrap().to_owned();
    let plain = app
        .create_key(
            json!({"keyspace_id": ks.id, "owner_id": owner_id, "name": "plain",
            "scopes": ["orders:read"], "meta": {"plan": "pro"}}),
        )
        .await;
    let limited = app
        .create_key(json!({"keyspace_id": ks.id, "name": "limited",
            "ratelimits": [{"name": "burst", "limit": 2, "duration_ms": 60_000}],
            "quota": {"remaining": 3}}))
        .await;
    let revoked = app.create_key(json!({"keyspace_id": ks.id})).await;
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/revoke", revoked.record.key_id),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let disabled = app.create_key(json!({"keyspace_id": ks.id})).await;
    let (status, body) = app
        .send(
            Method::PATCH,
            &format!("/v1/keys/{}", disabled.record.key_id),
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let wrong = with_wrong_secret(&plain.key, prefix);
    let bodies = vec![
        json!({"key": plain.key}),
        json!({"key": plain.key, "scopes": ["orders:read"]}),
        json!({"key": plain.key, "scopes": ["orders:write"]}),
        json!({"key": wrong}),
        json!({"key": "not a key"}),
        json!({"key": revoked.key}),
        json!({"key": disabled.key}),
        // Two fit the limit, the third is refused; then a named check at cost 0.
        json!({"key": limited.key}),
        json!({"key": limited.key}),
        json!({"key": limited.key}),
        json!({"key": limited.key, "cost": 0}),
        json!({"key": plain.key, "client_ip": "203.0.113.7"}),
    ];
    let ids = vec![
        ks.id.clone(),
        prefix.to_owned(),
        owner_id,
        plain.record.key_id,
        limited.record.key_id,
        revoked.record.key_id,
        disabled.record.key_id,
    ];
    Fixture { bodies, ids }
}

/// `value` as text with `from`'s ids written as `to`'s.
fn renamed(value: &Value, from: &Fixture, to: &Fixture) -> String {
    let mut text = value.to_string();
    for (a, b) in from.ids.iter().zip(&to.ids) {
        text = text.replace(a.as_str(), b);
    }
    text
}

#[tokio::test]
async fn a_batch_answers_each_item_as_a_single_verify_would_in_order() {
    let app = spawn_app().await;
    // The same keys twice: one set verified one call at a time, the other in one batch.
    let single = fixture(&app, "bvone").await;
    let batched = fixture(&app, "bvtwo").await;
    let mut singles = Vec::new();
    for body in &single.bodies {
        let (status, answer) = app.send(Method::POST, "/v1/keys/verify", Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        singles.push(answer);
    }
    let (status, answer) = app
        .send(
            Method::POST,
            "/v1/keys/verify/batch",
            Some(&json!({"items": batched.bodies})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), singles.len());
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "VALID",
            "VALID",
            "INSUFFICIENT_SCOPES",
            "NOT_FOUND",
            "MALFORMED",
            "REVOKED",
            "DISABLED",
            "VALID",
            "VALID",
            "RATE_LIMITED",
            // Cost 0 checks without consuming: nothing is asked of the spent limit.
            "VALID",
            "VALID"
        ]
    );
    for (i, (one, batch)) in singles.iter().zip(results).enumerate() {
        assert_eq!(
            renamed(one, &single, &batched),
            batch.to_string(),
            "item {i}: the batch answered otherwise than a single verify"
        );
    }
    // The quota and the limit were charged by the batch as by single calls.
    let limited = &batched.bodies[7];
    let (_, after) = app
        .send(Method::POST, "/v1/keys/verify", Some(limited))
        .await;
    assert_eq!(after["code"], "RATE_LIMITED");
    assert_eq!(after["remaining"], 1, "{after}");
}

#[tokio::test]
async fn a_malformed_item_refuses_the_whole_batch_and_consumes_nothing() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("bvbad").await;
    let limited = app
        .create_key(json!({"keyspace_id": ks.id,
            "ratelimits": [{"name": "burst", "limit": 1, "duration_ms": 60_000}]}))
        .await;
    let batch = |items: Value| json!({ "items": items });
    let refused = [
        (batch(json!([])), "items: 1 to 100"),
        (
            batch(Value::Array(vec![json!({"key": limited.key}); 101])),
            "items: 1 to 100",
        ),
        (
            batch(json!([{"key": limited.key}, {"key": limited.key, "cost": 5000}])),
            "items[1]: cost must be at most 1000",
        ),
        (
            batch(json!([{"key": limited.key}, {"key": limited.key, "scopes": [""]}])),
            "items[1]:",
        ),
    ];
    for (body, says) in refused {
        let (status, problem) = app
            .send(Method::POST, "/v1/keys/verify/batch", Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail} should say {says}");
    }
    // Not JSON of the right shape: a precise 400 too.
    for body in [
        json!({"items": [{"key": 7}]}),
        json!({"items": [{"key": limited.key}], "extra": 1}),
        json!({"items": "x"}),
    ] {
        let (status, problem) = app
            .send(Method::POST, "/v1/keys/verify/batch", Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
    }
    // None of them took the one call the limit allows.
    assert_eq!(app.verify(&limited.key).await.code, "VALID");
    // And a root key without keys:verify may not ask.
    let reader = app.root_key(&["keys:read"], None).await;
    let (status, _) = app
        .send_as(
            &reader,
            Method::POST,
            "/v1/keys/verify/batch",
            Some(&batch(json!([{"key": limited.key}]))),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
