//! Credits: `POST /v1/keys/{key_id}/credits` and `POST /v1/owners/{id}/credits` set,
//! raise or lower a quota's counter in one transaction: every change through any node
//! counts, a decrement never takes it below zero, verifications spend from the new
//! counter at once, and each change is audited and idempotent.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::multinode::{database, keyspace, two_nodes};

async fn credits(app: &TestApp, path: &str, op: &str, amount: u64) -> (StatusCode, Value) {
    app.send(
        Method::POST,
        path,
        Some(&json!({"op": op, "amount": amount})),
    )
    .await
}

async fn stored_remaining(app: &TestApp, path: &str) -> Value {
    let (status, view) = app.send(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view["quota"]["remaining"].clone()
}

#[tokio::test]
async fn credits_are_set_raised_and_lowered_and_never_below_zero() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("cred").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "quota": {"remaining": 10}}))
        .await;
    let key_path = format!("/v1/keys/{}", key.record.key_id);
    let path = format!("{key_path}/credits");
    for (op, amount, status, remaining) in [
        ("increment", 5, StatusCode::OK, 15),
        ("decrement", 16, StatusCode::CONFLICT, 15),
        ("decrement", 15, StatusCode::OK, 0),
        ("decrement", 1, StatusCode::CONFLICT, 0),
        ("decrement", 0, StatusCode::OK, 0),
    ] {
        let (got, body) = credits(&app, &path, op, amount).await;
        assert_eq!(got, status, "{op} {amount}: {body}");
        if status == StatusCode::OK {
            assert_eq!(body, json!({"remaining": remaining}));
        } else {
            assert_eq!(body["code"], "insufficient_credits", "{body}");
        }
        assert_eq!(stored_remaining(&app, &key_path).await, remaining);
    }
    // Verifications spend from the changed counter at once.
    assert_eq!(app.verify(&key.key).await.code, "USAGE_EXCEEDED");
    let (_, body) = credits(&app, &path, "increment", 2).await;
    assert_eq!(body, json!({"remaining": 2}));
    let answer = app.verify(&key.key).await;
    assert_eq!((answer.code.as_str(), answer.remaining), ("VALID", Some(1)));
    let (_, body) = credits(&app, &path, "set", 100).await;
    assert_eq!(body, json!({"remaining": 100}));
    assert_eq!(app.verify(&key.key).await.remaining, Some(99));

    // Past the largest counter: refused, nothing added.
    let max = 1u64 << 50;
    assert_eq!(credits(&app, &path, "set", max).await.0, StatusCode::OK);
    let (status, body) = credits(&app, &path, "increment", 1).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "credits_overflow");
    assert_eq!(stored_remaining(&app, &key_path).await, max);

    // A key without a quota, an unknown key, a key another root key may not see.
    let plain = app.create_key(json!({"keyspace_id": ks.id})).await;
    let (status, body) = credits(
        &app,
        &format!("/v1/keys/{}/credits", plain.record.key_id),
        "increment",
        1,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_quota"))
    );
    let (status, _) = credits(&app, "/v1/keys/AAAAAAAAAAAA/credits", "increment", 1).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = app.create_keyspace("credother").await;
    let limited = app.root_key(&["keys:*"], Some(&[other.id.as_str()])).await;
    let (status, _) = app
        .send_as(
            &limited,
            Method::POST,
            &path,
            Some(&json!({"op": "set", "amount": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reader = app.root_key(&["keys:read"], None).await;
    let (status, _) = app
        .send_as(
            &reader,
            Method::POST,
            &path,
            Some(&json!({"op": "set", "amount": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Malformed bodies: a precise 400, nothing changed.
    for body in [
        json!({"op": "add", "amount": 1}),
        json!({"op": "increment", "amount": -1}),
        json!({"op": "increment", "amount": 1.5}),
        json!({"op": "increment"}),
        json!({"amount": 1}),
        json!({"op": "increment", "amount": 1, "extra": true}),
        json!({"op": "increment", "amount": max + 1}),
        json!([]),
    ] {
        let (status, problem) = app.send(Method::POST, &path, Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert!(problem["detail"].as_str().is_some(), "{problem}");
    }
    assert_eq!(stored_remaining(&app, &key_path).await, max);

    // Audited, from and to.
    let (_, audit) = app
        .send(
            Method::GET,
            &format!(
                "/v1/audit-events?target_id={}&action=key.credits",
                key.record.key_id
            ),
            None,
        )
        .await;
    let changes: Vec<&Value> = (audit["data"].as_array().unwrap().iter())
        .map(|e| &e["changes"])
        .collect();
    assert!(
        changes.contains(&&json!({"op": "increment", "amount": 5,
            "remaining": {"from": 10, "to": 15}})),
        "{audit}"
    );
    assert_eq!(changes.len(), 6, "one event per applied change: {audit}");
}

#[tokio::test]
async fn a_refill_that_is_due_counts_before_a_credits_change() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("credr").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "quota": {"remaining": 1,
            "refill": {"interval": "daily", "amount": 1000}}}))
        .await;
    assert_eq!(app.verify(&key.key).await.remaining, Some(0));
    // Two days later, before any verification: the day's 1000 are there to add to.
    app.clock.advance(2 * 86_400);
    let path = format!("/v1/keys/{}/credits", key.record.key_id);
    let (status, body) = credits(&app, &path, "increment", 50).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"remaining": 1050}));
    let (_, body) = credits(&app, &path, "decrement", 1040).await;
    assert_eq!(body, json!({"remaining": 10}));
    assert_eq!(app.verify(&key.key).await.remaining, Some(9));
}

#[tokio::test]
async fn owners_have_credits_and_a_retried_change_is_applied_once() {
    let app = spawn_app().await;
    let (status, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "credit-customer", "quota": {"remaining": 3}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    let owner_path = format!("/v1/owners/{}", owner["id"].as_str().unwrap());
    let ks = app.create_keyspace("credo").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "owner_id": owner["id"]}))
        .await;
    assert_eq!(app.verify(&key.key).await.remaining, Some(2));

    // The same Idempotency-Key: applied once, the first answer replayed.
    let send = || {
        app.request(Method::POST, &format!("{owner_path}/credits"))
            .header("idempotency-key", "refund-42")
            .json(&json!({"op": "increment", "amount": 10}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(first, json!({"remaining": 12}));
    assert_eq!(stored_remaining(&app, &owner_path).await, 12);
    assert_eq!(app.verify(&key.key).await.remaining, Some(11));
    // The key reused for another change is refused.
    let other = app
        .request(Method::POST, &format!("{owner_path}/credits"))
        .header("idempotency-key", "refund-42")
        .json(&json!({"op": "increment", "amount": 11}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Owners' credits need an unrestricted root key.
    let limited = app.root_key(&["owners:*"], Some(&[ks.id.as_str()])).await;
    let (status, _) = app
        .send_as(
            &limited,
            Method::POST,
            &format!("{owner_path}/credits"),
            Some(&json!({"op": "set", "amount": 1})),
        )
        .await;
    assert!(
        status.is_client_error() && status != StatusCode::OK,
        "{status}"
    );
    assert_eq!(stored_remaining(&app, &owner_path).await, 11);
}

/// 16 clients change one key's credits at once: 8 add 1 at a time, 8 take 3 at a time,
/// far more than there is. No change is lost and none goes below zero.
async fn hammer(bases: &[String], root: &str, key_id: &str) -> (u64, u64) {
    let http = http_client();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..16 {
        let (http, base, root) = (
            http.clone(),
            bases[client % bases.len()].clone(),
            root.to_owned(),
        );
        let path = format!("/v1/keys/{key_id}/credits");
        tasks.spawn(async move {
            let (op, amount) = if client % 2 == 0 {
                ("increment", 1)
            } else {
                ("decrement", 3)
            };
            let mut applied = 0u64;
            for _ in 0..25 {
                let (status, body) = try_post(
                    &http,
                    &base,
                    &root,
                    &path,
                    &json!({"op": op, "amount": amount}),
                )
                .await;
                match status {
                    200 => applied += 1,
                    409 => assert_eq!(body["code"], "insufficient_credits", "{body}"),
                    _ => panic!("{status}: {body}"),
                }
            }
            (op, applied)
        });
    }
    let mut added = 0;
    let mut taken = 0;
    for (op, applied) in tasks.join_all().await {
        if op == "increment" {
            assert_eq!(applied, 25, "an increment is never refused");
            added += applied;
        } else {
            taken += 3 * applied;
        }
    }
    (added, taken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_clients_lose_no_change_and_never_go_below_zero() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("credh").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "quota": {"remaining": 100}}))
        .await;
    let base = app.url("");
    let (added, taken) = hammer(&[base], &app.root_key, &key.record.key_id).await;
    let left = stored_remaining(&app, &format!("/v1/keys/{}", key.record.key_id)).await;
    assert_eq!(added, 200);
    assert!(taken <= 300, "took {taken} of 300");
    assert_eq!(
        left,
        json!(100 + added - taken),
        "added {added}, took {taken}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_exact_counter() {
    let Some(url) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, root) = two_nodes(dir.path(), dir.path(), &url, &url).await;
    let http = http_client();
    let ks = keyspace(&http, &a.base, &root).await;
    let (status, key) = try_post(
        &http,
        &a.base,
        &root,
        "/v1/keys",
        &json!({"keyspace_id": ks, "quota": {"remaining": 100}}),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    let (added, taken) = hammer(&[a.base.clone(), b.base.clone()], &root, &key_id).await;
    let view: Value = http
        .get(format!("{}/v1/keys/{key_id}", b.base))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added, 200);
    assert_eq!(view["quota"]["remaining"], json!(100 + added - taken));

    // Emptied through one node: the other refuses the key within a second.
    let plain = key["key"].as_str().unwrap().to_owned();
    let verify = |base: String| {
        let (http, root, plain) = (http.clone(), root.clone(), plain.clone());
        async move {
            try_post(
                &http,
                &base,
                &root,
                "/v1/keys/verify",
                &json!({"key": plain}),
            )
            .await
            .1["code"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (status, _) = try_post(
        &http,
        &a.base,
        &root,
        &format!("/v1/keys/{key_id}/credits"),
        &json!({"op": "set", "amount": 5}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(verify(b.base.clone()).await, "VALID");
    let since = Instant::now();
    let (status, _) = try_post(
        &http,
        &a.base,
        &root,
        &format!("/v1/keys/{key_id}/credits"),
        &json!({"op": "set", "amount": 0}),
    )
    .await;
    assert_eq!(status, 200);
    while verify(b.base.clone()).await != "USAGE_EXCEEDED" {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "node B still spends"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
