//! Plans: a named template of limits, quota, scopes, roles and maximum key age that
//! keys and owners are on. What a key sets itself overrides the plan's; a plan edit
//! reaches every key on it on the next verification (and on every node within a
//! second); a plan in use cannot be deleted.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::multinode::{database, keyspace, two_nodes};

async fn post(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, answer) = app.send(Method::POST, path, Some(&body)).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

async fn patch(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, answer) = app.send(Method::PATCH, path, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

/// The verify answer's code for `key` with the extra request fields in `with`.
async fn code(app: &TestApp, key: &str, with: Value) -> String {
    let mut body = json!({"key": key});
    body.as_object_mut()
        .unwrap()
        .extend(with.as_object().unwrap().clone());
    let (status, answer) = app.send(Method::POST, "/v1/keys/verify", Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_plans_limits_scopes_roles_and_age_apply_and_its_edits_reach_every_key() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("plans").await.id;
    post(
        &app,
        &format!("/v1/keyspaces/{ks}/roles"),
        json!({"name": "viewer", "permissions": ["docs.read"]}),
    )
    .await;
    let plan = post(
        &app,
        "/v1/plans",
        json!({
            "name": "pro",
            "description": "Pro customers",
            "ratelimits": [{"name": "api", "limit": 3, "duration_ms": 60_000}],
            "scopes": ["reports:read"],
            "roles": ["viewer"],
            "max_key_age_seconds": 3600,
        }),
    )
    .await;
    assert_eq!(plan["name"], "pro");
    assert_eq!(plan["ratelimits"][0]["limit"], 3);
    // `one` takes everything from the plan; `own` sets its own limit of the same name.
    let one = app
        .create_key(json!({"keyspace_id": ks, "plan": "pro"}))
        .await;
    let own = app
        .create_key(json!({"keyspace_id": ks, "plan": "pro",
            "ratelimits": [{"name": "api", "limit": 1000, "duration_ms": 60_000}]}))
        .await;
    let (_, shown) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", one.record.key_id),
            None,
        )
        .await;
    assert_eq!(shown["plan"], "pro");
    assert_eq!(shown["scopes"], json!([]), "the key's own scopes: {shown}");

    for key in [&one.key, &own.key] {
        assert_eq!(
            code(&app, key, json!({"scopes": ["reports:read"]})).await,
            "VALID"
        );
        assert_eq!(
            code(&app, key, json!({"permissions": "docs.read"})).await,
            "VALID"
        );
        assert_eq!(code(&app, key, json!({})).await, "VALID");
    }
    assert_eq!(code(&app, &one.key, json!({})).await, "RATE_LIMITED");
    assert_eq!(
        code(&app, &own.key, json!({})).await,
        "VALID",
        "its own limit wins"
    );

    // A verify answer shows the plan's scopes among the key's.
    let (_, answer) = app
        .send(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": own.key})),
        )
        .await;
    assert_eq!(answer["scopes"], json!(["reports:read"]), "{answer}");

    // The plan's maximum age: an hour after creation the keys expire.
    app.clock.advance(3601);
    assert_eq!(code(&app, &one.key, json!({})).await, "EXPIRED");

    // One edit changes every key on the plan, from its next verification.
    let edited = patch(
        &app,
        "/v1/plans/pro",
        json!({"ratelimits": [], "scopes": ["reports:write"], "roles": [],
               "max_key_age_seconds": null}),
    )
    .await;
    assert_eq!(edited["max_key_age_seconds"], Value::Null);
    for key in [&one.key, &own.key] {
        assert_eq!(code(&app, key, json!({})).await, "VALID");
        assert_eq!(
            code(&app, key, json!({"scopes": ["reports:read"]})).await,
            "INSUFFICIENT_SCOPES"
        );
        assert_eq!(
            code(&app, key, json!({"scopes": ["reports:write"]})).await,
            "VALID"
        );
        assert_eq!(
            code(&app, key, json!({"permissions": "docs.read"})).await,
            "INSUFFICIENT_PERMISSIONS"
        );
    }
    for _ in 0..5 {
        assert_eq!(
            code(&app, &one.key, json!({})).await,
            "VALID",
            "no limit now"
        );
    }

    // A key leaves the plan: the plan no longer applies to it.
    patch(
        &app,
        &format!("/v1/keys/{}", one.record.key_id),
        json!({"plan": null}),
    )
    .await;
    assert_eq!(
        code(&app, &one.key, json!({"scopes": ["reports:write"]})).await,
        "INSUFFICIENT_SCOPES"
    );

    // Audited: created and changed, from and to.
    let (_, audit) = app
        .send(Method::GET, "/v1/audit-events?target_id=pro", None)
        .await;
    let actions: Vec<&str> = (audit["data"].as_array().unwrap().iter())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["plan.update", "plan.create"], "{audit}");
    assert_eq!(
        audit["data"][0]["changes"]["scopes"],
        json!({"from": ["reports:read"], "to": ["reports:write"]})
    );
}

#[tokio::test]
async fn a_plans_quota_starts_counters_whose_refill_follows_the_plan() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("planq").await.id;
    post(&app, "/v1/plans", json!({"name": "free"})).await;
    let early = app
        .create_key(json!({"keyspace_id": ks, "plan": "free"}))
        .await;
    for _ in 0..3 {
        assert_eq!(
            code(&app, &early.key, json!({})).await,
            "VALID",
            "no quota yet"
        );
    }
    // The plan gains a quota: keys on it without a counter get one.
    patch(
        &app,
        "/v1/plans/free",
        json!({"quota": {"remaining": 2, "refill": {"interval": "daily", "amount": 2}}}),
    )
    .await;
    let late = app
        .create_key(json!({"keyspace_id": ks, "plan": "free"}))
        .await;
    let mine = app
        .create_key(json!({"keyspace_id": ks, "plan": "free", "quota": {"remaining": 5}}))
        .await;
    for key in [&early.key, &late.key] {
        assert_eq!(code(&app, key, json!({})).await, "VALID");
        assert_eq!(code(&app, key, json!({})).await, "VALID");
        assert_eq!(code(&app, key, json!({})).await, "USAGE_EXCEEDED");
    }
    for _ in 0..5 {
        assert_eq!(
            code(&app, &mine.key, json!({})).await,
            "VALID",
            "its own quota"
        );
    }
    assert_eq!(code(&app, &mine.key, json!({})).await, "USAGE_EXCEEDED");
    let (_, shown) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", late.record.key_id),
            None,
        )
        .await;
    assert_eq!(shown["quota"]["remaining"], 0, "{shown}");
    assert_eq!(shown["quota"]["refill"]["interval"], "daily", "{shown}");

    // The plan's refill reaches the counters: after the next boundary, 7 uses each.
    patch(
        &app,
        "/v1/plans/free",
        json!({"quota": {"remaining": 2, "refill": {"interval": "daily", "amount": 7}}}),
    )
    .await;
    app.clock.advance(86_400);
    for _ in 0..7 {
        assert_eq!(code(&app, &late.key, json!({})).await, "VALID");
    }
    assert_eq!(code(&app, &late.key, json!({})).await, "USAGE_EXCEEDED");
    // Credits on such a counter count the plan's refill that is due first.
    app.clock.advance(86_400);
    let credits = format!("/v1/keys/{}/credits", late.record.key_id);
    let changed = post(&app, &credits, json!({"op": "increment", "amount": 1})).await;
    assert_eq!(changed["remaining"], 8, "{changed}");

    // The plan drops its quota: counters taken from it end; a key's own stays.
    patch(&app, "/v1/plans/free", json!({"quota": null})).await;
    let (status, problem) = app
        .send(
            Method::POST,
            &credits,
            Some(&json!({"op": "increment", "amount": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "no_quota");
    for _ in 0..10 {
        assert_eq!(code(&app, &late.key, json!({})).await, "VALID");
    }
    assert_eq!(
        code(&app, &mine.key, json!({})).await,
        "USAGE_EXCEEDED",
        "its own quota, still spent"
    );
}

#[tokio::test]
async fn an_owners_plan_limits_all_its_keys_together() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("plano").await.id;
    post(
        &app,
        "/v1/plans",
        json!({"name": "team", "ratelimits": [{"name": "api", "limit": 3, "duration_ms": 60_000}],
               "scopes": ["team"]}),
    )
    .await;
    let owner = post(
        &app,
        "/v1/owners",
        json!({"external_id": "cus_plan", "plan": "team"}),
    )
    .await;
    assert_eq!(owner["plan"], "team");
    let keys = [
        app.create_key(json!({"keyspace_id": ks, "owner_id": owner["id"]}))
            .await,
        app.create_key(json!({"keyspace_id": ks, "owner_id": owner["id"]}))
            .await,
    ];
    let mut valid = 0;
    for i in 0..6 {
        if code(&app, &keys[i % 2].key, json!({"scopes": ["team"]})).await == "VALID" {
            valid += 1;
        }
    }
    assert_eq!(valid, 3, "three calls in all, shared by the owner's keys");
}

#[tokio::test]
async fn unknown_plans_bad_plans_and_plans_in_use_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("planx").await.id;
    let refused = [
        json!({"name": "a/b"}),
        json!({"name": ".."}),
        json!({"name": ""}),
        json!({"name": "ok", "max_key_age_seconds": 0}),
        json!({"name": "ok", "scopes": ["bad scope"]}),
        json!({"name": "ok", "ratelimits": [{"name": "x", "limit": 0, "duration_ms": 1}]}),
        json!({"name": "ok", "quota": {"remaining": 1, "refill": {"interval": "hourly", "amount": 1}}}),
        json!({"name": "ok", "surprise": true}),
    ];
    for body in refused {
        let (status, problem) = app.send(Method::POST, "/v1/plans", Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
    }
    let (_, listed) = app.send(Method::GET, "/v1/plans", None).await;
    assert_eq!(listed["data"], json!([]), "nothing was written");

    let (status, problem) = app
        .send(
            Method::POST,
            "/v1/keys",
            Some(&json!({"keyspace_id": ks, "plan": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().contains("not a plan"),
        "{problem}"
    );

    post(&app, "/v1/plans", json!({"name": "basic"})).await;
    let (status, problem) = app
        .send(Method::POST, "/v1/plans", Some(&json!({"name": "basic"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let key = app
        .create_key(json!({"keyspace_id": ks, "plan": "basic"}))
        .await;
    let (status, problem) = app.send(Method::DELETE, "/v1/plans/basic", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "plan_in_use", "{problem}");
    patch(
        &app,
        &format!("/v1/keys/{}", key.record.key_id),
        json!({"plan": null}),
    )
    .await;
    let (status, _) = app.send(Method::DELETE, "/v1/plans/basic", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.send(Method::GET, "/v1/plans/basic", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A root key limited to a keyspace may read plans but not change them.
    let limited = app
        .root_key(&["keyspaces:write", "keyspaces:read"], Some(&[&ks]))
        .await;
    let answer = app
        .http
        .post(format!("{}/v1/plans", app.base))
        .bearer_auth(&limited)
        .json(&json!({"name": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_edit_on_one_node_reaches_the_other_within_a_second() {
    let Some(url) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, root) = two_nodes(dir.path(), dir.path(), &url, &url).await;
    let http = http_client();
    let ks = keyspace(&http, &a.base, &root).await;
    let (status, _) = try_post(
        &http,
        &a.base,
        &root,
        "/v1/plans",
        &json!({"name": "gold", "scopes": ["deploy"]}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, key) = try_post(
        &http,
        &a.base,
        &root,
        "/v1/keys",
        &json!({"keyspace_id": ks, "plan": "gold"}),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let plain = key["key"].as_str().unwrap().to_owned();
    let code = |base: String| {
        let (http, root, plain) = (http.clone(), root.clone(), plain.clone());
        async move {
            try_post(
                &http,
                &base,
                &root,
                "/v1/keys/verify",
                &json!({"key": plain, "scopes": ["deploy"]}),
            )
            .await
            .1["code"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // Node B caches the key as holding `deploy` through its plan.
    assert_eq!(code(b.base.clone()).await, "VALID");
    assert_eq!(code(b.base.clone()).await, "VALID");
    let since = Instant::now();
    let changed = http
        .patch(format!("{}/v1/plans/gold", a.base))
        .bearer_auth(&root)
        .json(&json!({"scopes": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    while code(b.base.clone()).await != "INSUFFICIENT_SCOPES" {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "node B still grants `deploy`"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("plan edit reached node B after {:?}", since.elapsed());
}
