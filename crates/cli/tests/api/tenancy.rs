//! A root key limited to one keyspace must not be able to see, change or even detect
//! another keyspace's objects: every answer is byte-identical to the one for an id that
//! does not exist, and the other keyspace is left exactly as it was.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn raw(
    app: &TestApp,
    root: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let mut req = app.request_as(root, method, path);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn snapshot(app: &TestApp, b_id: &str, kb_id: &str) -> (Value, Value, Value) {
    let (_, ks) = app
        .send(Method::GET, &format!("/v1/keyspaces/{b_id}"), None)
        .await;
    let (_, key) = app
        .send(Method::GET, &format!("/v1/keys/{kb_id}"), None)
        .await;
    let (_, events) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?keyspace_id={b_id}"),
            None,
        )
        .await;
    (ks, key, events)
}

#[tokio::test]
async fn cross_tenant_matrix() {
    let app = spawn_app().await;
    let a = app.create_keyspace("tenant_a").await;
    let b = app.create_keyspace("tenant_b").await;
    let ka = app
        .create_key(json!({"keyspace_id": a.id, "name": "a key"}))
        .await;
    let kb = app
        .create_key(json!({"keyspace_id": b.id, "name": "b key"}))
        .await;
    let root_a = app.root_key(&["*"], Some(&[a.id.as_str()])).await;
    let root_b = app.root_key(&["*"], Some(&[b.id.as_str()])).await;

    let before = snapshot(&app, &b.id, &kb.record.key_id).await;

    // Random ids of the right shapes, that exist nowhere.
    let ghost_ks = "ks_1111111111111111";
    let ghost_key = "111111111111";
    let ks_paths = |id: &str| {
        vec![
            (Method::GET, format!("/v1/keyspaces/{id}"), None),
            (
                Method::PATCH,
                format!("/v1/keyspaces/{id}"),
                Some(json!({"name": "pwned"})),
            ),
            (Method::DELETE, format!("/v1/keyspaces/{id}"), None),
            (
                Method::POST,
                "/v1/keys".to_owned(),
                Some(json!({"keyspace_id": id})),
            ),
            (Method::GET, format!("/v1/keys?keyspace_id={id}"), None),
            (
                Method::GET,
                format!("/v1/audit-events?keyspace_id={id}"),
                None,
            ),
        ]
    };
    let key_paths = |id: &str| {
        vec![
            (Method::GET, format!("/v1/keys/{id}"), None),
            (
                Method::PATCH,
                format!("/v1/keys/{id}"),
                Some(json!({"name": "pwned", "enabled": false})),
            ),
            (
                Method::POST,
                format!("/v1/keys/{id}/revoke"),
                Some(json!({"reason": "pwned"})),
            ),
            (Method::DELETE, format!("/v1/keys/{id}"), None),
            (
                Method::GET,
                format!("/v1/audit-events?target_id={id}"),
                None,
            ),
        ]
    };
    let mut checked = 0;
    for (real, ghost) in [
        (ks_paths(&b.id), ks_paths(ghost_ks)),
        (key_paths(&kb.record.key_id), key_paths(ghost_key)),
    ] {
        for ((method, path, body), (gmethod, gpath, gbody)) in real.into_iter().zip(ghost) {
            let other = raw(&app, &root_a, method.clone(), &path, body.as_ref()).await;
            let missing = raw(&app, &root_a, gmethod, &gpath, gbody.as_ref()).await;
            assert_eq!(other, missing, "{method} {path} differs from a missing id");
            assert!(
                other.0 == StatusCode::NOT_FOUND
                    || other.0 == StatusCode::BAD_REQUEST
                    || (other.0 == StatusCode::OK && other.1.contains("\"data\":[]")),
                "{method} {path}: {other:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 11);

    // Verify: the other keyspace's key is NOT_FOUND, like a key that does not exist.
    let (_, foreign) = raw(
        &app,
        &root_a,
        Method::POST,
        "/v1/keys/verify",
        Some(&json!({"key": kb.key})),
    )
    .await;
    let unknown =
        keyhaven_core::generate(&keyhaven_core::Prefix::new("tenant_b").unwrap()).unwrap();
    let (_, ghost) = raw(
        &app,
        &root_a,
        Method::POST,
        "/v1/keys/verify",
        Some(&json!({"key": secrecy::ExposeSecret::expose_secret(unknown.key())})),
    )
    .await;
    assert_eq!(foreign, ghost);
    assert!(foreign.contains("\"NOT_FOUND\""));
    assert_eq!(app.verify_as(&root_a, &ka.key).await.code, "VALID");

    // Lists show only the root key's own keyspace.
    let (_, list) = app
        .send_as(&root_a, Method::GET, "/v1/keyspaces", None)
        .await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a.id.as_str()]);
    let (_, keys) = app.send_as(&root_a, Method::GET, "/v1/keys", None).await;
    let keys: Vec<&str> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec![ka.record.key_id.as_str()]);
    let (_, events) = app
        .send_as(&root_a, Method::GET, "/v1/audit-events?limit=500", None)
        .await;
    assert!(
        events["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["keyspace_id"] == json!(a.id)),
        "{events}"
    );
    // A restricted root key cannot create keyspaces (it could not see them afterwards).
    let (status, _) = app
        .send_as(
            &root_a,
            Method::POST,
            "/v1/keyspaces",
            Some(&json!({"name": "n", "prefix": "newone"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The other tenant is untouched.
    assert_eq!(snapshot(&app, &b.id, &kb.record.key_id).await, before);
    assert_eq!(app.verify_as(&root_b, &kb.key).await.code, "VALID");
    assert_eq!(app.verify_as(&root_b, &ka.key).await.code, "NOT_FOUND");
}

#[tokio::test]
async fn restricted_root_keys_can_neither_see_nor_change_owners() {
    let app = spawn_app().await;
    let a = app.create_keyspace("tenant_a").await;
    let b = app.create_keyspace("tenant_b").await;
    let (_, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "cus_b"})),
        )
        .await;
    let owner_id = owner["id"].as_str().unwrap();
    let kb = app
        .create_key(json!({"keyspace_id": b.id, "owner_id": owner_id}))
        .await;
    let root_a = app.root_key(&["*"], Some(&[a.id.as_str()])).await;
    for (method, path, body) in [
        (Method::GET, "/v1/owners".to_owned(), None),
        (Method::GET, "/v1/owners?external_id=cus_b".to_owned(), None),
        (Method::GET, format!("/v1/owners/{owner_id}"), None),
        (
            Method::PATCH,
            format!("/v1/owners/{owner_id}"),
            Some(json!({"external_id": "attacker"})),
        ),
        (Method::DELETE, format!("/v1/owners/{owner_id}"), None),
        (
            Method::POST,
            "/v1/owners".to_owned(),
            Some(json!({"external_id": "cus_b"})),
        ),
    ] {
        let (status, body) = app
            .send_as(&root_a, method.clone(), &path, body.as_ref())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }
    let (status, _) = app
        .send_as(
            &root_a,
            Method::POST,
            "/v1/keys",
            Some(&json!({"keyspace_id": a.id, "owner_id": owner_id})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v = app.verify(&kb.key).await;
    assert_eq!(
        v.owner.unwrap().external_id.as_deref(),
        Some("cus_b"),
        "B's owner untouched"
    );
}
