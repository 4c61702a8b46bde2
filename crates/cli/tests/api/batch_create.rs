//! `POST /v1/keys/batch`: many keys in one request and one transaction, each made as
//! `POST /v1/keys` makes one; all or nothing, audited per key, idempotent, and durable
//! once acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::helpers::*;

async fn batch(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    app.send(Method::POST, "/v1/keys/batch", Some(body)).await
}

async fn key_count(app: &TestApp, ks: &str) -> usize {
    let (status, list) = app
        .send(
            Method::GET,
            &format!("/v1/keys?keyspace_id={ks}&limit=500"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_batch_creates_every_key_in_order_each_verifying_and_audited() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let (_, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "cust_1"})),
        )
        .await;
    let (status, answer) = batch(
        &app,
        &json!({"keys": [
            {"keyspace_id": ks.id, "name": "first", "scopes": ["docs:read"]},
            {"keyspace_id": ks.id, "name": "second", "owner_id": owner["id"],
             "ratelimits": [{"name": "requests", "limit": 5, "duration_ms": 1000}]},
            {"keyspace_id": ks.id, "name": "third", "quota": {"remaining": 3}},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let keys = answer["keys"].as_array().unwrap();
    let names: Vec<&str> = keys.iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert_eq!(keys[0]["scopes"], json!(["docs:read"]));
    assert_eq!(keys[1]["owner_id"], owner["id"]);
    assert_eq!(keys[1]["ratelimits"][0]["limit"], 5);
    assert_eq!(keys[2]["quota"]["remaining"], 3);
    for key in keys {
        let plaintext = key["key"].as_str().unwrap();
        assert!(plaintext.starts_with("acme_live_"), "{plaintext}");
        let verdict = app.verify(plaintext).await;
        assert_eq!(verdict.code, "VALID");
        assert_eq!(verdict.key_id.as_deref(), key["key_id"].as_str());
    }
    let (_, audit) = app
        .send(Method::GET, "/v1/audit-events?action=key.create", None)
        .await;
    let mut audited: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    audited.sort_unstable();
    let mut created: Vec<&str> = keys.iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    created.sort_unstable();
    assert_eq!(audited, created, "one audit event per key");
}

#[tokio::test]
async fn one_bad_item_refuses_the_whole_batch_naming_it_and_nothing_is_created() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let good = json!({"keyspace_id": ks.id, "name": "good"});
    let cases = [
        (
            json!({"keys": [good, {"keyspace_id": ks.id, "scopes": ["bad scope"]}]}),
            "keys[1]: ",
        ),
        (
            json!({"keys": [good, good, {"keyspace_id": "ks_nope"}]}),
            "keys[2]: keyspace_id",
        ),
        (
            json!({"keys": [{"keyspace_id": ks.id, "owner_id": "own_nope"}, good]}),
            "keys[0]: owner_id",
        ),
        (
            json!({"keys": [good, {"keyspace_id": ks.id, "plan": "gold"}]}),
            "keys[1]: plan",
        ),
        (json!({"keys": []}), "1 to 1000 keys"),
        (
            json!({"keys": vec![good.clone(); 1001]}),
            "1 to 1000 keys, not 1001",
        ),
    ];
    for (body, detail) in cases {
        let (status, problem) = batch(&app, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(problem["code"], "validation_failed", "{problem}");
        let said = problem["detail"].as_str().unwrap();
        assert!(said.contains(detail), "{said:?} should name {detail:?}");
    }
    let (status, problem) = batch(&app, &json!({"keys": [good], "extra": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(key_count(&app, &ks.id).await, 0, "nothing was created");
    let (_, audit) = app
        .send(Method::GET, "/v1/audit-events?action=key.create", None)
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 0, "{audit}");

    // A key restricted to one keyspace cannot reach into another through a batch.
    let other = app.create_keyspace("other_live").await;
    let restricted = app.root_key(&["keys:write"], Some(&[&ks.id])).await;
    let (status, problem) = app
        .send_as(
            &restricted,
            Method::POST,
            "/v1/keys/batch",
            Some(&json!({"keys": [good, {"keyspace_id": other.id}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(problem["detail"].as_str().unwrap().starts_with("keys[1]: "));
    assert_eq!(key_count(&app, &other.id).await, 0);
    assert_eq!(key_count(&app, &ks.id).await, 0);
}

#[tokio::test]
async fn a_batch_with_an_idempotency_key_is_created_once() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let body = json!({"keys": [{"keyspace_id": ks.id}, {"keyspace_id": ks.id}]});
    let send = || {
        app.request(Method::POST, "/v1/keys/batch")
            .header("Idempotency-Key", "batch-once")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = first.text().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.text().await.unwrap(), first, "byte-identical replay");
    assert_eq!(key_count(&app, &ks.id).await, 2, "created once");
}

#[tokio::test]
async fn a_batch_needs_keys_write() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let reader = app.root_key(&["keys:read"], None).await;
    let (status, problem) = app
        .send_as(
            &reader,
            Method::POST,
            "/v1/keys/batch",
            Some(&json!({"keys": [{"keyspace_id": ks.id}]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(key_count(&app, &ks.id).await, 0);
}

/// Batches of 50 sent by 8 clients, the server killed with SIGKILL part way: every key
/// of every acknowledged batch verifies after a restart, and no batch is stored in part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_kill_9_and_none_lands_in_part() {
    const PER_BATCH: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    let http = http_client();
    let (status, ks) = try_post(
        &http,
        &server.base,
        &root,
        "/v1/keyspaces",
        &json!({"name": "c", "prefix": "crash"}),
    )
    .await;
    assert_eq!(status, 201);
    let ks_id = ks["id"].as_str().unwrap().to_owned();

    let done = Arc::new(AtomicUsize::new(0));
    let limit = Arc::new(Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (http, base, root, done, limit) = (
            http.clone(),
            server.base.clone(),
            root.clone(),
            done.clone(),
            limit.clone(),
        );
        let body = json!({"keys": vec![json!({"keyspace_id": ks_id}); PER_BATCH]});
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let r = try_post(&http, &base, &root, "/v1/keys/batch", &body).await;
            done.fetch_add(1, Ordering::SeqCst);
            r
        });
    }
    while done.load(Ordering::SeqCst) < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            (201, body) => {
                let keys = body["keys"].as_array().unwrap();
                assert_eq!(keys.len(), PER_BATCH);
                acknowledged.extend(keys.iter().map(|k| k["key"].as_str().unwrap().to_owned()));
            }
            _ => failed += 1,
        }
    }
    println!(
        "{} batches acknowledged, {failed} cut off by the kill",
        acknowledged.len() / PER_BATCH
    );
    assert!(
        acknowledged.len() >= 40 * PER_BATCH,
        "{}",
        acknowledged.len()
    );
    assert!(failed > 0, "the kill should land mid-run");
    drop(server);

    let again = spawn_process(&data, dir.path(), &[]).await;
    for key in &acknowledged {
        let (status, v) = try_post(
            &http,
            &again.base,
            &root,
            "/v1/keys/verify",
            &json!({ "key": key }),
        )
        .await;
        assert_eq!((status, v["code"].as_str()), (200, Some("VALID")), "{key}");
    }
    let mut stored = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            Some(c) => format!("/v1/keys?keyspace_id={ks_id}&limit=500&cursor={c}"),
            None => format!("/v1/keys?keyspace_id={ks_id}&limit=500"),
        };
        let list: Value = http
            .get(format!("{}{page}", again.base))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stored += list["data"].as_array().unwrap().len();
        match list["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        stored % PER_BATCH,
        0,
        "{stored} keys: a batch landed in part"
    );
    assert!(stored >= acknowledged.len());
}
