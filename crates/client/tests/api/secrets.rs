//! No key and no root key in any error message or `Debug` output, whatever fails.

use std::time::Duration;

use keyhaven_client::types::CreateKey;
use keyhaven_client::{CacheOptions, Client, Error, Method, VerifyOptions};
use serde_json::json;

use crate::helpers::{TestServer, dead_url, key, keyspace, plain};

/// Fails unless neither the text nor the Debug form of `e` holds any of `secrets`.
fn assert_clean(e: &Error, secrets: &[&str]) {
    let shown = format!("{e} / {e:?} / {e:#?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "a secret in {shown}");
        // Nor its secret part alone.
        if let Ok(parsed) = keyhaven_client::keys::parse(secret) {
            assert!(!shown.contains(parsed.secret().expose_secret()), "{shown}");
        }
    }
}

#[tokio::test]
async fn failures_never_show_a_key_or_the_root_key() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let created = key(&client, &ks, &[]).await;
    let key = plain(&created);
    let root = server.root_key.clone();
    let mut errors = Vec::new();

    // Unreachable: after the retries.
    let dead = Client::builder(dead_url().await, root.clone())
        .attempts(2)
        .backoff(Duration::from_millis(5))
        .build()
        .unwrap();
    let e = dead.verify(&key).await.unwrap_err();
    assert!(e.is_unreachable());
    errors.push(e);
    errors.push(dead.keys().get("x").await.unwrap_err());

    // A root key the server refuses (401), and one without the scope (403).
    let wrong_root = format!("{root}x");
    let refused = Client::new(server.url.clone(), wrong_root.clone()).unwrap();
    let e = refused.verify(&key).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    errors.push(e);
    let reader = server.root_key_with(&["keys:read"]).await;
    let e = Client::new(server.url.clone(), reader.clone())
        .unwrap()
        .verify(&key)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    errors.push(e);

    // Requests the server refuses (400), with the key in the same body.
    let e = client
        .verify_with(&key, &VerifyOptions::new().cost(5_000))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    errors.push(e);
    let e = client
        .verify_with(&key, &VerifyOptions::new().scope("bad scope"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    errors.push(e);
    let e = client
        .request(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": key, "oops": 1})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    errors.push(e);
    let e = client
        .request(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": 5, "x": key})),
        )
        .await
        .unwrap_err();
    errors.push(e);

    // A timeout: a listener that accepts and never answers (a 1 ns timeout against the
    // real server raced it: timers tick in milliseconds and loopback can answer first).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = Client::builder(
        format!("http://{}", silent.local_addr().unwrap()),
        root.clone(),
    )
    .timeout(Duration::from_millis(200))
    .attempts(1)
    .cache(CacheOptions::disabled())
    .build()
    .unwrap();
    errors.push(slow.verify(&key).await.unwrap_err());

    // A bad base URL.
    errors.push(Client::new(format!("ftp://{root}@x"), root.clone()).unwrap_err());

    for e in &errors {
        assert_clean(e, &[&key, &root, &wrong_root, &reader]);
    }

    // Debug of the client, its builder, and a created key.
    let shown = format!("{client:?} {:?} {created:?}", server.builder());
    assert!(!shown.contains(&key) && !shown.contains(&root), "{shown}");
    let _ = CreateKey::new("x");
}
