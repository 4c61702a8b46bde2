//! Key lifecycle with the server's clock moved by hand: expiry, rotation with grace.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn rfc3339(t: keyhaven_store::Timestamp) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn expiry_refuses_from_its_second_on() {
    let app = spawn_app().await;
    let t0 = app.clock.now();
    let ks = app.create_keyspace("acme_live").await;
    let expires = t0 + time::Duration::seconds(100);
    let k = app
        .create_key(json!({"keyspace_id": ks.id, "expires_at": rfc3339(expires)}))
        .await;
    app.clock.set(expires - time::Duration::seconds(1));
    assert_eq!(app.verify(&k.key).await.code, "VALID");
    app.clock.set(expires);
    assert_eq!(app.verify(&k.key).await.code, "EXPIRED");
    app.clock.set(expires + time::Duration::seconds(1));
    let v = app.verify(&k.key).await;
    assert_eq!((v.code.as_str(), v.valid), ("EXPIRED", false));
    // Extending the expiry brings it back on the very next verify.
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/v1/keys/{}", k.record.key_id),
            Some(&json!({"expires_at": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.verify(&k.key).await.code, "VALID");
}

#[tokio::test]
async fn rotation_keeps_the_old_key_through_its_grace_period() {
    let app = spawn_app().await;
    let t0 = app.clock.now();
    let ks = app.create_keyspace("acme_live").await;
    let (_, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "cus_9"})),
        )
        .await;
    let old = app
        .create_key(json!({
            "keyspace_id": ks.id, "owner_id": owner["id"], "name": "ci",
            "scopes": ["read"], "meta": {"plan": "pro"}
        }))
        .await;
    assert_eq!(app.verify(&old.key).await.code, "VALID");

    let (status, new) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/rotate", old.record.key_id),
            Some(&json!({"grace_period_seconds": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{new}");
    let new_key = new["key"].as_str().unwrap();
    let new_id = new["key_id"].as_str().unwrap();
    assert_ne!(new_id, old.record.key_id);
    for field in ["keyspace_id", "owner_id", "name", "scopes", "meta"] {
        assert_eq!(
            new[field],
            serde_json::to_value(&old.record).unwrap()[field],
            "{field}"
        );
    }
    assert_eq!(new["rotated_from"], json!(old.record.key_id));

    let grace_end = t0 + time::Duration::seconds(3600);
    let v = app.verify(&old.key).await;
    assert_eq!(v.code, "VALID");
    let rotation = v.rotation.unwrap();
    assert_eq!(rotation.successor_key_id, new_id);
    assert_eq!(rotation.grace_until, rfc3339(grace_end));
    assert_eq!(app.verify(new_key).await.code, "VALID");
    assert!(app.verify(new_key).await.rotation.is_none());

    app.clock.set(grace_end - time::Duration::seconds(1));
    assert_eq!(app.verify(&old.key).await.code, "VALID");
    app.clock.set(grace_end);
    assert_eq!(app.verify(&old.key).await.code, "REVOKED");
    app.clock.set(grace_end + time::Duration::seconds(1));
    assert_eq!(app.verify(&old.key).await.code, "REVOKED");
    assert_eq!(app.verify(new_key).await.code, "VALID");

    let (_, listed) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", old.record.key_id),
            None,
        )
        .await;
    assert_eq!(
        (
            listed["rotated_to"].as_str(),
            listed["grace_until"].as_str()
        ),
        (Some(new_id), Some(rfc3339(grace_end).as_str()))
    );
    let (_, events) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={}", old.record.key_id),
            None,
        )
        .await;
    assert_eq!(events["data"][0]["action"], "key.rotate");
    assert_eq!(
        events["data"][0]["changes"]["successor_key_id"],
        json!(new_id)
    );
}

#[tokio::test]
async fn a_rotation_without_grace_ends_the_old_key_now() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let old = app.create_key(json!({"keyspace_id": ks.id})).await;
    let path = format!("/v1/keys/{}/rotate", old.record.key_id);
    let (status, body) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({"grace_period_seconds": 400_000_000})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("validation_failed"))
    );
    let (status, _) = app.send(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app.verify(&old.key).await.code, "REVOKED");
    let (status, body) = app.send(Method::POST, &path, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_rotated"))
    );

    let revoked = app.create_key(json!({"keyspace_id": ks.id})).await;
    app.send(
        Method::POST,
        &format!("/v1/keys/{}/revoke", revoked.record.key_id),
        None,
    )
    .await;
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/rotate", revoked.record.key_id),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_revoked"))
    );
}

#[tokio::test]
async fn concurrent_rotations_yield_exactly_one_successor() {
    let app = spawn_app().await;
    let t0 = app.clock.now();
    let ks = app.create_keyspace("acme_live").await;
    let old = app.create_key(json!({"keyspace_id": ks.id})).await;
    let path = format!("/v1/keys/{}/rotate", old.record.key_id);
    let body = json!({"grace_period_seconds": 60});
    let calls = (0..100).map(|_| app.send(Method::POST, &path, Some(&body)));
    let results: Vec<(StatusCode, Value)> = futures_join_all(calls).await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    let conflicts = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "already_rotated")
        .count();
    assert_eq!((created.len(), conflicts), (1, 99), "{results:?}");
    let (_, keys) = app
        .send(
            Method::GET,
            &format!("/v1/keys?keyspace_id={}", ks.id),
            None,
        )
        .await;
    assert_eq!(
        keys["data"].as_array().unwrap().len(),
        2,
        "one successor, no orphans"
    );

    assert_eq!(app.verify(&old.key).await.code, "VALID");
    app.clock.set(t0 + time::Duration::seconds(60));
    assert_eq!(app.verify(&old.key).await.code, "REVOKED");
    assert_eq!(
        app.verify(created[0]["key"].as_str().unwrap()).await.code,
        "VALID"
    );
}

/// Runs the futures concurrently on this task (no extra crate for `join_all`).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn keyspace_policy_caps_age_sets_default_grace_and_warns_before_expiry() {
    let app = spawn_app_with(|c| c.usage_flush_interval_ms = 100).await;
    let t0 = app.clock.now();
    let at = |s: i64| t0 + time::Duration::seconds(s);
    let (status, ks) = app
        .send(
            Method::POST,
            "/v1/keyspaces",
            Some(
                &json!({"name": "p", "prefix": "pol", "max_key_age_seconds": 1000,
                          "default_grace_seconds": 300, "expiry_warning_seconds": 200}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ks}");
    let ks_id = ks["id"].as_str().unwrap().to_owned();
    let k = app.create_key(json!({"keyspace_id": ks_id})).await;
    assert_eq!(
        k.record.expires_at.as_deref(),
        Some(rfc3339(at(1000)).as_str()),
        "max age caps the expiry"
    );

    app.clock.set(at(799));
    assert!(expiring(&app, &ks_id).await.is_empty());
    app.clock.set(at(800));
    let listed = expiring(&app, &ks_id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0]["key"]["key_id"].as_str(),
            listed[0]["expires"].as_str()
        ),
        (
            Some(k.record.key_id.as_str()),
            Some(rfc3339(at(1000)).as_str())
        )
    );

    // The server's sweep stores one key.expiring event, once.
    let mut events = Vec::new();
    for _ in 0..100 {
        events = app
            .send(Method::GET, "/v1/events?type=key.expiring", None)
            .await
            .1["data"]
            .as_array()
            .unwrap()
            .clone();
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["payload"]["key_id"].as_str(),
        Some(k.record.key_id.as_str())
    );
    assert_eq!(
        events[0]["payload"]["expires_at"].as_str(),
        Some(rfc3339(at(1000)).as_str())
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let again = app
        .send(Method::GET, "/v1/events?type=key.expiring", None)
        .await
        .1;
    assert_eq!(
        again["data"].as_array().unwrap().len(),
        1,
        "one event per key and expiry"
    );

    app.clock.set(at(999));
    assert_eq!(app.verify(&k.key).await.code, "VALID");
    app.clock.set(at(1000));
    assert_eq!(app.verify(&k.key).await.code, "EXPIRED");
    app.clock.set(at(1001));
    assert_eq!(app.verify(&k.key).await.code, "EXPIRED");
    assert!(
        expiring(&app, &ks_id).await.is_empty(),
        "expired keys are no longer 'expiring'"
    );

    // Rotation without a grace period uses the keyspace default.
    app.clock.set(at(2000));
    let old = app.create_key(json!({"keyspace_id": ks_id})).await;
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/rotate", old.record.key_id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.clock.set(at(2299));
    assert_eq!(app.verify(&old.key).await.code, "VALID");
    app.clock.set(at(2300));
    assert_eq!(app.verify(&old.key).await.code, "REVOKED");
}

#[tokio::test]
async fn a_new_max_age_applies_to_existing_keys_at_once() {
    let app = spawn_app().await;
    let t0 = app.clock.now();
    let ks = app.create_keyspace("acme_live").await;
    let k = app.create_key(json!({"keyspace_id": ks.id})).await;
    app.clock.set(t0 + time::Duration::seconds(600));
    assert_eq!(app.verify(&k.key).await.code, "VALID");
    let (status, body) = app
        .send(
            Method::PATCH,
            &format!("/v1/keyspaces/{}", ks.id),
            Some(&json!({"max_key_age_seconds": 500})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.verify(&k.key).await.code,
        "EXPIRED",
        "the key is older than the new maximum"
    );
    let (_, body) = app
        .send(
            Method::PATCH,
            &format!("/v1/keyspaces/{}", ks.id),
            Some(&json!({"max_key_age_seconds": null})),
        )
        .await;
    assert_eq!(body["max_key_age_seconds"], Value::Null);
    assert_eq!(app.verify(&k.key).await.code, "VALID");
    let (status, body) = app
        .send(
            Method::PATCH,
            &format!("/v1/keyspaces/{}", ks.id),
            Some(&json!({"max_key_age_seconds": 0})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("validation_failed"))
    );
}

async fn expiring(app: &TestApp, ks_id: &str) -> Vec<Value> {
    let path = format!("/v1/keys/expiring?keyspace_id={ks_id}");
    app.send(Method::GET, &path, None).await.1["data"]
        .as_array()
        .unwrap()
        .clone()
}
