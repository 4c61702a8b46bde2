//! The verify cache against a real server: revocation through the change stream, and
//! failing closed when the stream goes silent.

use std::time::{Duration, Instant};

use keyhaven_client::types::{RevokeKey, UpdateKey};
use keyhaven_client::{CacheOptions, VerifyCode, VerifyOptions};

use crate::helpers::{TestServer, key, keyspace, plain, until_cached};

/// 100 trials: a new key, verified until it comes from the cache, revoked through the
/// API, then verified until refused; each refusal within 1 s of the revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_by_the_cached_client_within_a_second() {
    let server = TestServer::start().await;
    let admin = server
        .builder()
        .cache(CacheOptions::disabled())
        .build()
        .unwrap();
    let client = server.client();
    let ks = keyspace(&admin).await;
    let mut took = Vec::new();
    for _ in 0..100 {
        let created = key(&admin, &ks, &[]).await;
        let plain = plain(&created);
        until_cached(&client, &plain).await;
        let start = Instant::now();
        admin
            .keys()
            .revoke(&created.view.key_id, &RevokeKey::default())
            .await
            .unwrap();
        loop {
            let answer = client.verify(&plain).await.unwrap();
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
        took.push(start.elapsed());
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "revocation through the cache, 100 trials: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(took[49]),
        ms(took[98]),
        ms(took[99])
    );
    assert!(took[99] < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_follow_changes_and_the_scope_rule() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let created = key(&client, &ks, &["orders:*"]).await;
    let plain = plain(&created);
    until_cached(&client, &plain).await;

    // Other scopes are decided from the cache, with the server's rule.
    let hits = client.cache_stats().hits;
    let ok = client
        .verify_with(&plain, &VerifyOptions::new().scope("orders:write"))
        .await
        .unwrap();
    assert!(ok.valid);
    let refused = client
        .verify_with(&plain, &VerifyOptions::new().scope("orders:"))
        .await
        .unwrap();
    assert_eq!(refused.code, VerifyCode::InsufficientScopes);
    assert_eq!(refused.key_id, ok.key_id);
    assert_eq!(client.cache_stats().hits, hits + 2);

    // A change to the key (its scopes) reaches the cache through the stream.
    client
        .keys()
        .update(
            &created.view.key_id,
            &UpdateKey {
                scopes: Some(vec!["admin".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let answer = client
            .verify_with(&plain, &VerifyOptions::new().scope("admin"))
            .await
            .unwrap();
        if answer.valid {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{answer:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(client.cache_stats().invalidations > 0);
}

/// A server that stops: its stream goes silent, the cache stops serving within the
/// coherence bound, and every call goes to the (unreachable) server: fail closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_means_no_cached_answers() {
    let mut server = TestServer::spawn().await;
    let client = server
        .builder()
        .attempts(1)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let ks = keyspace(&client).await;
    let created = key(&client, &ks, &[]).await;
    let plain = plain(&created);
    until_cached(&client, &plain).await;
    server.stop().await;
    // Half of the coherence bound (1 s) after the last heartbeat at most.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!client.cache_stats().coherent);
    let e = client.verify(&plain).await.unwrap_err();
    assert!(e.is_unreachable(), "{e}");
}

/// A key with an IP allowlist, cached as VALID for an address it admits, is still
/// refused from another: the cache keys answers by key and address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_answer_for_one_address_never_admits_another() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let mut input = keyhaven_client::types::CreateKey::new(ks.id.clone());
    input.ip_allowlist = vec!["192.0.2.0/24".into()];
    let created = client.keys().create(&input).await.unwrap();
    assert_eq!(created.view.ip_allowlist, ["192.0.2.0/24"]);
    let plain = plain(&created);
    let inside = VerifyOptions::new().client_ip("192.0.2.10".parse().unwrap());
    let outside = VerifyOptions::new().client_ip("198.51.100.10".parse().unwrap());
    assert!(client.wait_until_coherent(Duration::from_secs(5)).await);
    let mut cached = false;
    for _ in 0..500 {
        let before = client.cache_stats().hits;
        assert!(client.verify_with(&plain, &inside).await.unwrap().valid);
        if client.cache_stats().hits > before {
            cached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(cached, "never cached: {:?}", client.cache_stats());
    for _ in 0..3 {
        let answer = client.verify_with(&plain, &outside).await.unwrap();
        assert_eq!(answer.code, VerifyCode::ForbiddenIp);
        let answer = client.verify(&plain).await.unwrap();
        assert_eq!(answer.code, VerifyCode::ForbiddenIp);
    }
}
