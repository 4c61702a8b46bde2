//! Signed tokens through the client: checked offline against the server's JWKS,
//! answered offline once their key is vouched for, and refused within a second of the
//! key's revocation by a client that follows the change stream.

use std::time::{Duration, Instant};

use keyhaven_client::types::RevokeKey;
use keyhaven_client::{CacheOptions, Client, VerifyCode, VerifyOptions};
use serde_json::{Value, json};

use crate::helpers::{TestServer, key, keyspace, limited_key, plain};

/// `POST /v1/tokens` with `key` as the credential.
async fn mint(server: &TestServer, key: &str, body: Value) -> String {
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/v1/tokens", server.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned()
}

async fn admin(server: &TestServer) -> Client {
    server
        .builder()
        .cache(CacheOptions::disabled())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_verify_offline_once_their_key_is_vouched_for_and_stop_within_a_second_of_revocation()
 {
    let server = TestServer::start().await;
    let admin = admin(&server).await;
    let client = server.client();
    assert!(client.wait_until_coherent(Duration::from_secs(5)).await);
    let ks = keyspace(&admin).await;
    let created = key(&admin, &ks, &["read", "write"]).await;
    let first = mint(&server, &plain(&created), json!({"scopes": ["read"]})).await;

    // The first token of the key asks the server; the key's next tokens are offline.
    let answer = client.verify(&first).await.unwrap();
    assert!(answer.valid && answer.token, "{answer:?}");
    assert_eq!(answer.scopes.as_deref(), Some(&["read".to_owned()][..]));
    let second = mint(&server, &plain(&created), json!({"scopes": ["write"]})).await;
    let hits = client.cache_stats().hits;
    let answer = client.verify(&second).await.unwrap();
    assert!(answer.valid && answer.token, "{answer:?}");
    assert_eq!(
        answer.scopes.as_deref(),
        Some(&["write".to_owned()][..]),
        "the token's scopes"
    );
    assert_eq!(answer.key_id.as_deref(), Some(created.view.key_id.as_str()));
    assert_eq!(client.cache_stats().hits, hits + 1, "answered offline");
    let refused = client
        .verify_with(&second, &VerifyOptions::new().scope("read"))
        .await
        .unwrap();
    assert_eq!(refused.code, VerifyCode::InsufficientScopes);

    // Forgeries are refused offline.
    let (head, rest) = second.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged = format!("{head}.{}.{signature}", first.split('.').nth(1).unwrap());
    assert_eq!(
        client.verify(&forged).await.unwrap().code,
        VerifyCode::NotFound
    );

    let start = Instant::now();
    admin
        .keys()
        .revoke(&created.view.key_id, &RevokeKey::default())
        .await
        .unwrap();
    loop {
        let answer = client.verify(&second).await.unwrap();
        if !answer.valid {
            assert_eq!(answer.code, VerifyCode::Revoked);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still valid 1 s after revocation"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("a revoked key's token refused after {:?}", start.elapsed());
    // And stays refused (the server answers: the key is no longer vouched for).
    assert_eq!(
        client.verify(&first).await.unwrap().code,
        VerifyCode::Revoked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audiences_are_checked_offline_and_limited_keys_always_ask() {
    let server = TestServer::start().await;
    let admin = admin(&server).await;
    let client = server.client();
    assert!(client.wait_until_coherent(Duration::from_secs(5)).await);
    let ks = keyspace(&admin).await;
    let created = key(&admin, &ks, &[]).await;
    let token = mint(&server, &plain(&created), json!({"audience": "billing"})).await;
    assert_eq!(
        client.verify(&token).await.unwrap().code,
        VerifyCode::NotFound
    );
    let billing = VerifyOptions::new().audience("billing");
    assert!(client.verify_with(&token, &billing).await.unwrap().valid);
    let search = VerifyOptions::new().audience("search");
    assert_eq!(
        client.verify_with(&token, &search).await.unwrap().code,
        VerifyCode::NotFound
    );

    // A key with a rate limit: its tokens count against it, so each asks the server.
    let limited = limited_key(&admin, &ks).await;
    let token = mint(&server, &plain(&limited), json!({})).await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(client.verify(&token).await.unwrap().code);
    }
    assert!(codes.contains(&VerifyCode::RateLimited), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vouched_key_is_vouched_for_from_the_address_the_server_saw_only() {
    let server = TestServer::start().await;
    let admin = admin(&server).await;
    let client = server.client();
    assert!(client.wait_until_coherent(Duration::from_secs(5)).await);
    let ks = keyspace(&admin).await;
    let mut input = keyhaven_client::types::CreateKey::new(ks.id.clone());
    input.ip_allowlist = vec!["10.0.0.1".into()];
    let created = admin.keys().create(&input).await.unwrap();
    // Minted by the root key for the key (the key itself may not be used from here).
    let token = mint(
        &server,
        &server.root_key,
        json!({"key_id": created.view.key_id}),
    )
    .await;
    let from = |ip: &str| VerifyOptions::new().client_ip(ip.parse().unwrap());
    for _ in 0..2 {
        assert!(
            client
                .verify_with(&token, &from("10.0.0.1"))
                .await
                .unwrap()
                .valid
        );
    }
    let elsewhere = client.verify_with(&token, &from("10.0.0.2")).await.unwrap();
    assert_eq!(elsewhere.code, VerifyCode::ForbiddenIp);
}
