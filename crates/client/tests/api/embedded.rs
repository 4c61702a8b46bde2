//! The embedded mode: Keyhaven's application layer in this process, over a data
//! directory, with the same `verify` as the remote client.

use keyhaven_client::keyhaven_service::idempotency::{Done, Idempotent, Rendered};
use keyhaven_client::keyhaven_service::keys::{self, RevokeKey};
use keyhaven_client::keyhaven_service::{Actor, keyspaces};
use keyhaven_client::{Client, Error, ExposeSecret, VerifyCode, VerifyOptions};
use serde_json::json;

/// Creates a keyspace and a key with `scopes` through the embedded service; the key.
async fn new_key(client: &Client, prefix: &str, scopes: &[&str]) -> (String, String) {
    let service = client.service().unwrap();
    let actor = Actor::local("test");
    let idem = Idempotent::none(service, &actor);
    let input = serde_json::from_value(json!({"name": prefix, "prefix": prefix})).unwrap();
    let mut keyspace_id = String::new();
    keyspaces::create(service, &actor, input, &idem, |ks| {
        keyspace_id = ks.id.clone();
        Ok(Rendered {
            status: 201,
            body: Default::default(),
        })
    })
    .await
    .unwrap();
    let input =
        serde_json::from_value(json!({"keyspace_id": keyspace_id, "scopes": scopes})).unwrap();
    let mut plaintext = String::new();
    let mut key_id = String::new();
    let done = keys::create(service, &actor, input, &idem, |new| {
        plaintext = new.plaintext().expose_secret().to_owned();
        key_id = new.key.key_id.clone();
        Ok(Rendered {
            status: 201,
            body: Default::default(),
        })
    })
    .await
    .unwrap();
    assert!(matches!(done, Done::Fresh(_)));
    (plaintext, key_id)
}

#[tokio::test]
async fn an_embedded_client_verifies_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::embedded(dir.path().join("data")).await.unwrap();
    let (key, key_id) = new_key(&client, "emb", &["orders:*"]).await;

    let answer = client.verify(&key).await.unwrap();
    assert!(answer.valid, "{answer:?}");
    assert_eq!(answer.key_id.as_deref(), Some(key_id.as_str()));
    assert_eq!(answer.keyspace.as_deref(), Some("emb"));
    let scoped = client
        .verify_with(&key, &VerifyOptions::new().scope("orders:read"))
        .await
        .unwrap();
    assert!(scoped.valid);
    let refused = client
        .verify_with(&key, &VerifyOptions::new().scope("admin"))
        .await
        .unwrap();
    assert_eq!(refused.code, VerifyCode::InsufficientScopes);
    assert_eq!(
        client.verify("garbage").await.unwrap().code,
        VerifyCode::Malformed
    );
    let bad = client
        .verify_with(&key, &VerifyOptions::new().cost(5_000))
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400));
    assert!(!bad.to_string().contains(&key));
    // A batch is each item verified in turn.
    let admin = VerifyOptions::new().scope("admin");
    let batch = client
        .verify_batch(&[
            (&key, &VerifyOptions::new()),
            (&key, &admin),
            ("garbage", &admin),
        ])
        .await
        .unwrap();
    let codes: Vec<VerifyCode> = batch.iter().map(|a| a.code).collect();
    assert_eq!(
        codes,
        [
            VerifyCode::Valid,
            VerifyCode::InsufficientScopes,
            VerifyCode::Malformed
        ]
    );

    // A revocation is seen on the next verification (same process, same cache).
    let service = client.service().unwrap();
    let actor = Actor::local("test");
    let idem = Idempotent::none(service, &actor);
    keys::revoke(
        service,
        &actor,
        &key_id,
        RevokeKey::default(),
        &idem,
        |_| {
            Ok(Rendered {
                status: 200,
                body: Default::default(),
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(client.verify(&key).await.unwrap().code, VerifyCode::Revoked);

    // The admin API needs a server.
    let e = client.keys().get(&key_id).await.unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    let e = client.plans().list().await.unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    assert!(client.cache_stats().hits == 0);
    assert!(!format!("{client:?}").contains(&key));
    client.shutdown().await;
}

#[tokio::test]
async fn one_process_serves_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = Client::embedded(dir.path()).await.unwrap();
    let second = Client::embedded(dir.path()).await.unwrap_err();
    assert!(matches!(second, Error::Embedded(_)), "{second}");
    drop(first);
}
