//! Rate limits and quotas: stored with keyspaces, owners and keys; quota counters move
//! only as documented.

use keyhaven_store::*;

use crate::support::*;

/// Limits travel with keyspaces, owners and keys; quota counters move only by
/// `record_quota_use` (relative, never below zero, a refill once per boundary) or an
/// explicit `QuotaWrite::Set`, never by an update that keeps them.
pub async fn limits_and_quota_counters(store: &dyn Store) {
    let rl = |name: &str, limit: u64| RateLimitDef {
        name: name.into(),
        limit,
        duration_ms: 60_000,
        burst: None,
    };
    let quota = |remaining: u64| Quota {
        remaining,
        refill: Some(keyhaven_core::quota::Refill {
            interval: keyhaven_core::quota::Interval::Daily,
            amount: 50,
        }),
        refilled_at: at(0),
        from_plan: false,
    };
    let mut ks = keyspace("ks_a", "alpha");
    ks.ratelimits = vec![rl("requests", 100)];
    add_keyspace(store, &ks).await;
    let mut own = owner("own_1", "cus_1");
    own.limits = Limits {
        ratelimits: vec![rl("requests", 1_000)],
        quota: Some(quota(500)),
    };
    add_owner(store, &own).await;
    let mut k = key(&kid(1), "ks_a", Some("own_1"));
    k.limits = Limits {
        ratelimits: vec![rl("burst", 5)],
        quota: Some(quota(10)),
    };
    add_key(store, &k).await;

    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.keyspace_ratelimits, ks.ratelimits);
    assert_eq!(found.owner_limits, own.limits);
    assert_eq!(found.key.limits, k.limits);
    assert_eq!(
        store.keyspace("ks_a").await.unwrap().unwrap().ratelimits,
        ks.ratelimits
    );

    let key_target = QuotaTarget::Key(kid(1));
    let owner_target = QuotaTarget::Owner("own_1".into());
    store
        .record_quota_use(&[
            QuotaUse {
                target: key_target.clone(),
                used: 3,
                refilled: None,
            },
            QuotaUse {
                target: owner_target.clone(),
                used: 7,
                refilled: None,
            },
        ])
        .await
        .unwrap();
    let remaining = |k: KeyForVerify| {
        (
            k.key.limits.quota.unwrap().remaining,
            k.owner_limits.quota.unwrap().remaining,
        )
    };
    let now = || async { store.key_for_verify(&kid(1)).await.unwrap().unwrap() };
    assert_eq!(remaining(now().await), (7, 493));

    // An update that keeps the quota leaves the moving counter alone, even when the
    // record it writes carries an older value.
    let mut stale = k.clone();
    stale.name = Some("renamed".into());
    stale.limits.ratelimits = vec![];
    store
        .update_key(
            &stale,
            QuotaWrite::Keep,
            Change::audited(&event("u1", "key.update", &kid(1), Some("ks_a"), 5)),
        )
        .await
        .unwrap();
    let after = now().await;
    assert_eq!(after.key.limits.ratelimits, vec![]);
    assert_eq!(remaining(after), (7, 493));
    let mut stale_owner = own.clone();
    stale_owner.name = None;
    store
        .update_owner(
            &stale_owner,
            QuotaWrite::Keep,
            Change::audited(&event("u2", "owner.update", "own_1", None, 5)),
        )
        .await
        .unwrap();
    assert_eq!(remaining(now().await), (7, 493));

    // Never below zero.
    store
        .record_quota_use(&[QuotaUse {
            target: key_target.clone(),
            used: 100,
            refilled: None,
        }])
        .await
        .unwrap();
    assert_eq!(remaining(now().await).0, 0);

    // A refill sets the counter to the amount less the uses after it, once: a second
    // writer reporting the same refill only subtracts its uses.
    let refill = Some((at(86_400), 50));
    store
        .record_quota_use(&[QuotaUse {
            target: key_target.clone(),
            used: 2,
            refilled: refill,
        }])
        .await
        .unwrap();
    let k_now = now().await;
    assert_eq!(k_now.key.limits.quota.unwrap().refilled_at, at(86_400));
    assert_eq!(remaining(k_now).0, 48);
    store
        .record_quota_use(&[QuotaUse {
            target: key_target.clone(),
            used: 1,
            refilled: refill,
        }])
        .await
        .unwrap();
    assert_eq!(remaining(now().await).0, 47);

    // Set writes the quota wholesale (a top-up), and can remove it.
    let mut topped = stale.clone();
    topped.limits.quota = Some(quota(1_000));
    store
        .update_key(
            &topped,
            QuotaWrite::Set,
            Change::audited(&event("u3", "key.update", &kid(1), Some("ks_a"), 6)),
        )
        .await
        .unwrap();
    assert_eq!(now().await.key.limits.quota, Some(quota(1_000)));
    topped.limits.quota = None;
    store
        .update_key(
            &topped,
            QuotaWrite::Set,
            Change::audited(&event("u4", "key.update", &kid(1), Some("ks_a"), 7)),
        )
        .await
        .unwrap();
    assert_eq!(now().await.key.limits.quota, None);
    // Uses of a key without a quota change nothing.
    store
        .record_quota_use(&[QuotaUse {
            target: key_target,
            used: 1,
            refilled: refill,
        }])
        .await
        .unwrap();
    assert_eq!(now().await.key.limits.quota, None);
}
