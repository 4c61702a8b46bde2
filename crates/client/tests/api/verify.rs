//! `verify` and the admin API against a real server.

use keyhaven_client::types::{
    AuditFilter, CreateOwner, KeyFilter, Page, RevokeKey, RotateKey, UpdateKey, UpdateKeyspace,
    UpdateOwner, UsageRange,
};
use keyhaven_client::{CacheOptions, Method, NamedCost, VerifyCode, VerifyOptions};
use serde_json::json;

use crate::helpers::{TestServer, key, keyspace, limited_key, plain};

#[tokio::test]
async fn verify_answers_every_field_of_the_api() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let owner = client
        .owners()
        .create(&CreateOwner::new(format!("cust-{}", ks.prefix)))
        .await
        .unwrap();
    let mut input = keyhaven_client::types::CreateKey::new(ks.id.clone());
    input.owner_id = Some(owner.id.clone());
    input.name = Some("ci".into());
    input.scopes = vec!["orders:*".into()];
    input.meta.insert("plan".into(), json!("pro"));
    let created = client.keys().create(&input).await.unwrap();

    let answer = client.verify(&plain(&created)).await.unwrap();
    assert!(answer.valid);
    assert_eq!(answer.code, VerifyCode::Valid);
    assert_eq!(answer.key_id.as_deref(), Some(created.view.key_id.as_str()));
    assert_eq!(answer.keyspace_id.as_deref(), Some(ks.id.as_str()));
    assert_eq!(answer.keyspace.as_deref(), Some(ks.name.as_str()));
    let answered_owner = answer.owner.as_ref().unwrap();
    assert_eq!(answered_owner.id, owner.id);
    assert_eq!(
        answered_owner.external_id.as_deref(),
        Some(owner.external_id.as_str())
    );
    assert_eq!(answer.name.as_deref(), Some("ci"));
    assert_eq!(answer.scopes.as_deref(), Some(&["orders:*".to_owned()][..]));
    assert_eq!(answer.meta.as_ref().unwrap()["plan"], "pro");
    assert!(answer.ratelimits.is_empty());
    assert_eq!(answer.remaining, None);

    let scoped = client
        .verify_with(
            &plain(&created),
            &VerifyOptions::new().scope("orders:write"),
        )
        .await
        .unwrap();
    assert!(scoped.valid);
    let refused = client
        .verify_with(&plain(&created), &VerifyOptions::new().scope("admin"))
        .await
        .unwrap();
    assert_eq!(refused.code, VerifyCode::InsufficientScopes);
    assert!(!refused.valid);

    let unknown = keyhaven_client::keys::generate(&ks.prefix).unwrap();
    let unknown = client
        .verify(keyhaven_client::ExposeSecret::expose_secret(unknown.key()))
        .await
        .unwrap();
    assert_eq!(unknown.code, VerifyCode::NotFound);
    assert_eq!(unknown.key_id, None);
    let garbage = client.verify("not a key").await.unwrap();
    assert_eq!(garbage.code, VerifyCode::Malformed);
}

#[tokio::test]
async fn limited_keys_are_counted_by_the_server_every_time() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;
    let created = limited_key(&client, &ks).await;
    assert!(
        client
            .wait_until_coherent(std::time::Duration::from_secs(5))
            .await
    );
    let first = client.verify(&plain(&created)).await.unwrap();
    assert!(first.valid);
    assert_eq!(first.ratelimits.len(), 1);
    assert_eq!(first.ratelimits[0].remaining, 0);
    let second = client.verify(&plain(&created)).await.unwrap();
    assert_eq!(second.code, VerifyCode::RateLimited);
    assert!(second.ratelimits[0].exceeded);
    assert!(second.ratelimits[0].retry_after_ms.is_some());
    assert_eq!(
        client.cache_stats().hits,
        0,
        "a limited key is never cached"
    );

    // Options reach the server: cost 0 checks without consuming; an unknown named limit
    // is ignored.
    let other = limited_key(&client, &ks).await;
    let free = VerifyOptions::new()
        .cost(0)
        .ratelimits(vec![NamedCost::new("requests", Some(0))])
        .client_ip("192.0.2.7".parse().unwrap());
    for _ in 0..3 {
        assert!(
            client
                .verify_with(&plain(&other), &free)
                .await
                .unwrap()
                .valid
        );
    }
    // A call naming only limits the key does not have gets an answer listing none: it
    // must not be cached as if the key were unlimited.
    let unnamed = VerifyOptions::new().ratelimits(vec![NamedCost::new("other", None)]);
    for _ in 0..3 {
        let answer = client.verify_with(&plain(&other), &unnamed).await.unwrap();
        assert!(answer.valid && answer.ratelimits.is_empty(), "{answer:?}");
    }
    assert_eq!(client.cache_stats().inserts, 0);
    let counted = client.verify(&plain(&other)).await.unwrap();
    assert_eq!(counted.ratelimits.len(), 1, "{counted:?}");
    let too_dear = client
        .verify_with(&plain(&other), &VerifyOptions::new().cost(1_001))
        .await
        .unwrap_err();
    assert_eq!(too_dear.status(), Some(400));
}

#[tokio::test]
async fn without_a_cache_every_call_goes_to_the_server() {
    let server = TestServer::start().await;
    let client = server
        .builder()
        .cache(CacheOptions::disabled())
        .build()
        .unwrap();
    let ks = keyspace(&client).await;
    let created = key(&client, &ks, &[]).await;
    for _ in 0..3 {
        assert!(client.verify(&plain(&created)).await.unwrap().valid);
    }
    assert_eq!(client.cache_stats().hits, 0);
    assert!(
        !client
            .wait_until_coherent(std::time::Duration::from_millis(10))
            .await
    );
}

#[tokio::test]
async fn the_admin_api_round_trips() {
    let server = TestServer::start().await;
    let client = server.client();
    let ks = keyspace(&client).await;

    // Keyspaces.
    assert_eq!(
        client.keyspaces().get(&ks.id).await.unwrap().prefix,
        ks.prefix
    );
    let renamed = client
        .keyspaces()
        .update(
            &ks.id,
            &UpdateKeyspace {
                name: Some("renamed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "renamed");
    let page = client
        .keyspaces()
        .list(&Page {
            limit: Some(500),
            cursor: None,
        })
        .await
        .unwrap();
    assert!(page.data.iter().any(|k| k.id == ks.id));

    // Keys: create, get, list, update, rotate, revoke, delete.
    let created = key(&client, &ks, &["a"]).await;
    let id = created.view.key_id.clone();
    assert_eq!(
        created.view.start,
        keyhaven_client::keys::display(&plain(&created)).unwrap()
    );
    assert_eq!(client.keys().get(&id).await.unwrap().scopes, ["a"]);
    let listed = client
        .keys()
        .list(&KeyFilter {
            keyspace_id: Some(ks.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 1);
    let updated = client
        .keys()
        .update(
            &id,
            &UpdateKey {
                name: Some(Some("renamed".into())),
                scopes: Some(vec!["b".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name.as_deref(), Some("renamed"));
    assert_eq!(updated.scopes, ["b"]);
    let rotated = client
        .keys()
        .rotate(
            &id,
            &RotateKey {
                grace_period_seconds: Some(60),
            },
        )
        .await
        .unwrap();
    assert_eq!(rotated.view.rotated_from.as_deref(), Some(id.as_str()));
    let old = client.verify(&plain(&created)).await.unwrap();
    assert!(old.valid);
    assert_eq!(
        old.rotation.as_ref().unwrap().successor_key_id,
        rotated.view.key_id
    );
    let revoked = client
        .keys()
        .revoke(
            &rotated.view.key_id,
            &RevokeKey {
                reason: Some("test".into()),
            },
        )
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    // Owners.
    let owner = client
        .owners()
        .create(&CreateOwner::new(format!("ext-{}", ks.prefix)))
        .await
        .unwrap();
    let found = client
        .owners()
        .list(Some(&owner.external_id), &Page::default())
        .await
        .unwrap();
    assert_eq!(found.data.len(), 1);
    let changed = client
        .owners()
        .update(
            &owner.id,
            &UpdateOwner {
                name: Some(Some("Acme".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.name.as_deref(), Some("Acme"));
    assert_eq!(client.owners().get(&owner.id).await.unwrap().id, owner.id);
    client.owners().delete(&owner.id).await.unwrap();

    // Usage and audit.
    let range = UsageRange {
        granularity: Some("day".into()),
        ..Default::default()
    };
    let series = client.usage().keyspace(&ks.id, &range).await.unwrap();
    assert_eq!(series.granularity, "day");
    client
        .usage()
        .key(&rotated.view.key_id, &range)
        .await
        .unwrap();
    let totals = client
        .usage()
        .keys(&[rotated.view.key_id.as_str()], &UsageRange::default())
        .await
        .unwrap();
    assert_eq!(totals.data.len(), 1);
    let events = client
        .audit()
        .list(&AuditFilter {
            target_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events.data.iter().any(|e| e.action == "key.create"),
        "{events:?}"
    );
    client.keys().delete(&id).await.unwrap();
    client.keys().delete(&rotated.view.key_id).await.unwrap();
    let gone = client.keys().get(&id).await.unwrap_err();
    assert_eq!(gone.code(), Some("not_found"));

    // Anything else, untyped.
    let health = client.request(Method::GET, "/healthz", None).await.unwrap();
    assert!(health.is_object());
    client.keyspaces().delete(&ks.id).await.unwrap();
    let missing = client
        .request(Method::GET, &format!("/v1/keyspaces/{}", ks.id), None)
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404));
}
