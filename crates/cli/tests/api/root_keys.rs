//! `/v1/root-keys`: root keys listed, created no broader than their creator, revoked
//! (refused on their next call) and rotated with a grace period.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

async fn verify_status(app: &crate::helpers::TestApp, root: &str) -> StatusCode {
    let (status, _) = app
        .send_as(
            root,
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": "acme_x"})),
        )
        .await;
    status
}

#[tokio::test]
async fn root_keys_are_created_no_broader_than_their_creator() {
    let app = spawn_app().await;
    let (status, list) = app.send(Method::GET, "/v1/root-keys", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "the first key");
    assert!(
        list["data"][0]["start"]
            .as_str()
            .unwrap()
            .starts_with("kh_root_")
    );
    assert!(
        !list.to_string().contains(&app.root_key[12..]),
        "never the secret"
    );

    let (status, created) = app
        .send(
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify", "root_keys:*"], "name": "billing"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let narrow = created["key"].as_str().unwrap().to_owned();
    assert!(narrow.starts_with("kh_root_"));
    assert_eq!(created["scopes"], json!(["keys:verify", "root_keys:*"]));
    assert_eq!(verify_status(&app, &narrow).await, StatusCode::OK);
    let (status, _) = app
        .send_as(&narrow, Method::GET, "/v1/keyspaces", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only its scopes");

    // It may hand out its own scopes, and nothing more.
    for scopes in [
        json!(["*"]),
        json!(["keys:reveal"]),
        json!(["keys:read"]),
        json!(["keys:*"]),
    ] {
        let (status, body) = app
            .send_as(
                &narrow,
                Method::POST,
                "/v1/root-keys",
                Some(&json!({"scopes": scopes})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{scopes}: {body}");
    }
    let (status, _) = app
        .send_as(
            &narrow,
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // A key limited to keyspaces manages no root keys; one without the scope neither.
    let ks = app.create_keyspace("acme").await;
    let limited = app.root_key(&["*"], Some(&[&ks.id])).await;
    let verify_only = app.root_key(&["keys:verify"], None).await;
    for key in [&limited, &verify_only] {
        let (status, _) = app.send_as(key, Method::GET, "/v1/root-keys", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Bad input: a clear 400 and nothing stored.
    for body in [
        json!({"scopes": []}),
        json!({"scopes": ["keys:everything"]}),
        json!({"scopes": ["keys:verify"], "expires_at": "2000-01-01T00:00:00Z"}),
        json!({"scopes": ["keys:verify"], "keyspace_ids": ["ks_nope"]}),
        json!({"scopes": ["keys:verify"], "nope": 1}),
    ] {
        let (status, _) = app.send(Method::POST, "/v1/root-keys", Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(app.store.count_root_keys().await.unwrap(), 5);
}

#[tokio::test]
async fn a_revoked_root_key_is_refused_on_its_next_call() {
    let app = spawn_app().await;
    let (_, created) = app
        .send(
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify"]})),
        )
        .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["key_id"].as_str().unwrap().to_owned();
    assert_eq!(
        verify_status(&app, &key).await,
        StatusCode::OK,
        "cached as valid"
    );
    let (status, revoked) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{id}/revoke"),
            Some(&json!({"reason": "left the team"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["revoked_reason"], "left the team");
    assert_eq!(verify_status(&app, &key).await, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{id}/revoke"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "already revoked");
    // A normal key's id is no root key's.
    let ks = app.create_keyspace("acme").await;
    let normal = app.create_key(json!({"keyspace_id": ks.id})).await;
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{}/revoke", normal.record.key_id),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
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
    assert_eq!(actions, ["root_key.revoke", "root_key.create"]);
}

#[tokio::test]
async fn rotation_keeps_the_old_root_key_for_its_grace_period_and_expiry_ends_a_key() {
    let app = spawn_app_with(|c| c.usage_flush_interval_ms = 100).await;
    let (_, created) = app
        .send(
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify"], "name": "ci"})),
        )
        .await;
    let old = created["key"].as_str().unwrap().to_owned();
    let id = created["key_id"].as_str().unwrap().to_owned();
    let (status, rotated) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{id}/rotate"),
            Some(&json!({"grace_period_seconds": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["name"], "ci");
    assert_eq!(rotated["scopes"], json!(["keys:verify"]));
    assert_eq!(rotated["rotated_from"], Value::String(id.clone()));
    assert_eq!(verify_status(&app, &new).await, StatusCode::OK);
    assert_eq!(
        verify_status(&app, &old).await,
        StatusCode::OK,
        "within the grace period"
    );
    app.clock.advance(3601);
    assert_eq!(
        verify_status(&app, &old).await,
        StatusCode::UNAUTHORIZED,
        "after it"
    );
    assert_eq!(verify_status(&app, &new).await, StatusCode::OK);

    // Last use is recorded.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let new_id = rotated["key_id"].as_str().unwrap();
    let (_, got) = app
        .send(Method::GET, &format!("/v1/root-keys/{new_id}"), None)
        .await;
    assert!(got["last_used_at"].is_string(), "{got}");

    // An expiring root key stops at its expiry.
    let at = keyhaven_service::validate::rfc3339(app.clock.now() + time::Duration::seconds(60));
    let (_, brief) = app
        .send(
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify"], "expires_at": at})),
        )
        .await;
    let brief = brief["key"].as_str().unwrap().to_owned();
    assert_eq!(verify_status(&app, &brief).await, StatusCode::OK);
    app.clock.advance(61);
    assert_eq!(verify_status(&app, &brief).await, StatusCode::UNAUTHORIZED);
}
