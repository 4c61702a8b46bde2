//! Overrides of standalone rate limits: set (replacing), listed per namespace by
//! identifier, deleted; each change audited in its transaction.

use keyhaven_store::*;

use crate::support::*;

fn o(namespace: &str, identifier: &str, limit: u64, at_secs: i64) -> RatelimitOverride {
    RatelimitOverride {
        namespace: namespace.into(),
        identifier: identifier.into(),
        limit: RateLimitDef {
            name: namespace.into(),
            limit,
            duration_ms: 60_000,
            burst: Some(limit * 2),
        },
        created_at: at(at_secs),
        updated_at: at(at_secs),
    }
}

pub async fn ratelimit_overrides_are_set_listed_and_deleted(store: &dyn Store) {
    let audit = |n: i64| {
        event(
            &format!("o{n}"),
            "ratelimit_override.set",
            "ratelimit_override",
            None,
            n,
        )
    };
    let pattern = o("login", "*@acme.com", 3, 1);
    store
        .set_ratelimit_override(&pattern, Change::audited(&audit(1)))
        .await
        .unwrap();
    let exact = o("login", "ceo@acme.com", 20, 2);
    store
        .set_ratelimit_override(&exact, Change::audited(&audit(2)))
        .await
        .unwrap();
    store
        .set_ratelimit_override(&o("otp", "*", 1, 3), Change::audited(&audit(3)))
        .await
        .unwrap();
    assert_eq!(
        store.ratelimit_overrides("login").await.unwrap(),
        vec![pattern.clone(), exact.clone()]
    );
    // Setting again replaces the limit and keeps the creation time.
    let mut replaced = o("login", "*@acme.com", 7, 9);
    replaced.created_at = pattern.created_at;
    store
        .set_ratelimit_override(&replaced, Change::audited(&audit(4)))
        .await
        .unwrap();
    assert_eq!(
        store.ratelimit_overrides("login").await.unwrap()[0],
        replaced
    );
    store
        .delete_ratelimit_override("login", "*@acme.com", Change::audited(&audit(5)))
        .await
        .unwrap();
    assert!(matches!(
        store
            .delete_ratelimit_override("login", "*@acme.com", Change::audited(&audit(6)))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.ratelimit_overrides("login").await.unwrap(),
        vec![exact]
    );
    assert_eq!(store.ratelimit_overrides("otp").await.unwrap().len(), 1);
    assert_eq!(store.ratelimit_overrides("none").await.unwrap(), vec![]);
}
