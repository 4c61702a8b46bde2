//! Standalone rate limits and their overrides through `client.ratelimits()`.

use keyhaven_client::types::{LimitRequest, SetOverride};

use crate::helpers::{TestServer, random_lowercase};

#[tokio::test]
async fn standalone_limits_count_per_identifier() {
    let server = TestServer::start().await;
    let client = server.client();
    let namespace = format!("login.{}", random_lowercase(8));
    let limits = client.ratelimits();
    let call = LimitRequest::new(namespace.clone(), "ada@example.com", 2, 60_000);

    let first = limits.limit(&call).await.unwrap();
    assert!(first.success);
    assert_eq!((first.limit, first.remaining), (2, 1));
    assert_eq!(first.retry_after_ms, None);
    let second = limits.limit(&call).await.unwrap();
    assert!(second.success);
    assert_eq!(second.remaining, 0);
    let third = limits.limit(&call).await.unwrap();
    assert!(!third.success, "{third:?}");
    assert!(third.retry_after_ms.is_some_and(|ms| ms > 0), "{third:?}");

    // Another identifier has a bucket of its own; cost 0 checks without consuming.
    let other = LimitRequest {
        identifier: "grace@example.com".into(),
        cost: Some(0),
        ..call.clone()
    };
    for _ in 0..3 {
        let answer = limits.limit(&other).await.unwrap();
        assert!(answer.success && answer.remaining == 2, "{answer:?}");
    }
    let bad = LimitRequest::new("not a namespace", "x", 1, 1_000);
    assert_eq!(limits.limit(&bad).await.unwrap_err().status(), Some(400));
}

#[tokio::test]
async fn overrides_replace_the_limit_of_matching_identifiers() {
    let server = TestServer::start().await;
    let client = server.client();
    let namespace = format!("api.{}", random_lowercase(8));
    let limits = client.ratelimits();

    let mut vip = SetOverride::new(namespace.clone(), "vip-*", 100, 60_000);
    vip.burst = Some(50);
    let set = limits.set_override(&vip).await.unwrap();
    assert_eq!(
        (
            set.namespace.as_str(),
            set.identifier.as_str(),
            set.limit,
            set.duration_ms,
            set.burst
        ),
        (namespace.as_str(), "vip-*", 100, 60_000, Some(50))
    );
    let listed = limits.overrides(&namespace).await.unwrap();
    assert_eq!(listed.data, vec![set.clone()]);

    let asked = LimitRequest::new(namespace.clone(), "vip-7", 1, 60_000);
    let answer = limits.limit(&asked).await.unwrap();
    assert!(answer.success);
    assert_eq!(
        (answer.limit, answer.remaining),
        (100, 49),
        "the override's limit and burst"
    );
    let plain = LimitRequest::new(namespace.clone(), "someone", 1, 60_000);
    assert_eq!(limits.limit(&plain).await.unwrap().limit, 1);

    // Setting it again replaces it; deleting it ends it.
    vip.limit = 10;
    vip.burst = None;
    let replaced = limits.set_override(&vip).await.unwrap();
    assert_eq!((replaced.limit, replaced.burst), (10, None));
    assert_eq!(replaced.created_at, set.created_at);
    assert_eq!(limits.overrides(&namespace).await.unwrap().data, [replaced]);
    limits.delete_override(&namespace, "vip-*").await.unwrap();
    assert!(limits.overrides(&namespace).await.unwrap().data.is_empty());
    let after = LimitRequest::new(namespace.clone(), "vip-8", 1, 60_000);
    assert_eq!(limits.limit(&after).await.unwrap().limit, 1);
    let missing = limits
        .delete_override(&namespace, "vip-*")
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing}");
}
