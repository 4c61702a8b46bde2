//! Recoverable keys: revealed only with `keys:reveal`, audited, and never readable from
//! the database file alone.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn recoverable_keys_are_revealed_only_with_keys_reveal() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let k = app
        .create_key(json!({"keyspace_id": ks.id, "recoverable": true}))
        .await;
    assert!(k.record.recoverable);
    let path = format!("/v1/keys/{}/reveal", k.record.key_id);

    let keys_star = app.root_key(&["keys:*"], None).await;
    let (status, body) = app.send_as(&keys_star, Method::POST, &path, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope")),
        "keys:* does not imply reveal"
    );

    let revealer = app.root_key(&["keys:reveal"], None).await;
    let (status, body) = app.send_as(&revealer, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["key"].as_str(), Some(k.key.as_str()));
    let (_, events) = app
        .send(
            Method::GET,
            &format!(
                "/v1/audit-events?action=key.reveal&target_id={}",
                k.record.key_id
            ),
            None,
        )
        .await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        events["data"][0]["actor"].as_str(),
        Some(&revealer["kh_root_".len().."kh_root_".len() + 12])
    );

    // Another keyspace's root key cannot even see it.
    let other = app.create_keyspace("other").await;
    let outsider = app.root_key(&["*"], Some(&[other.id.as_str()])).await;
    let (status, _) = app.send_as(&outsider, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Ordinary keys cannot be revealed.
    let plain = app.create_key(json!({"keyspace_id": ks.id})).await;
    assert!(!plain.record.recoverable);
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/reveal", plain.record.key_id),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_recoverable"))
    );

    // A rotation's successor is recoverable with its own plaintext.
    let (status, successor) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/rotate", k.record.key_id),
            Some(&json!({"grace_period_seconds": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(successor["recoverable"], true);
    let (_, shown) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{}/reveal", successor["key_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(shown["key"], successor["key"]);

    // Revoked keys are not revealed.
    app.send(
        Method::POST,
        &format!("/v1/keys/{}/revoke", plain.record.key_id),
        None,
    )
    .await;
    let s_id = successor["key_id"].as_str().unwrap();
    app.send(Method::POST, &format!("/v1/keys/{s_id}/revoke"), None)
        .await;
    let (status, body) = app
        .send(Method::POST, &format!("/v1/keys/{s_id}/reveal"), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_revoked"))
    );

    // The database file and its WAL hold no 8-character piece of either secret.
    let secrets: Vec<String> = [k.key.as_str(), successor["key"].as_str().unwrap()]
        .iter()
        .map(|key| {
            let parsed = keyhaven_core::parse(key).unwrap();
            parsed.secret().expose_secret().to_owned()
        })
        .collect();
    // (SQLite: the files are ours to read. PostgreSQL's are the server's; the conformance
    // suite checks what each engine stores instead.)
    for file in ["keyhaven.db", "keyhaven.db-wal"] {
        let bytes = std::fs::read(app.db_path.with_file_name(file)).unwrap_or_default();
        for secret in &secrets {
            for window in secret.as_bytes().windows(8) {
                assert!(
                    !bytes.windows(8).any(|w| w == window),
                    "{file} holds part of a secret"
                );
            }
        }
    }
}
