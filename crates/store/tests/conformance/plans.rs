//! Plans: stored deployment-wide, unique by name, joined to a key (and its owner) when
//! the key is read for verification; a plan named by a key or owner cannot be deleted.

use keyhaven_store::*;

use crate::support::*;

fn limit(name: &str, limit: u64) -> RateLimitDef {
    RateLimitDef {
        name: name.into(),
        limit,
        duration_ms: 60_000,
        burst: None,
    }
}

fn plan(name: &str) -> Plan {
    Plan {
        name: name.into(),
        description: Some("a plan".into()),
        limits: Limits {
            ratelimits: vec![limit("api", 10), limit("burst", 2)],
            quota: Some(Quota {
                remaining: 100,
                refill: Some(keyhaven_core::quota::Refill {
                    interval: keyhaven_core::quota::Interval::Daily,
                    amount: 100,
                }),
                refilled_at: T0,
                from_plan: false,
            }),
        },
        scopes: vec!["plan.scope".into()],
        grants: Grants {
            plan: None,
            roles: vec![],
            permissions: vec!["plan.permission".into()],
        },
        max_key_age: Some(3_600),
        created_at: T0,
        updated_at: T0,
    }
}

pub async fn plans_apply_to_their_keys_when_read(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    let audit = |n: i64| event(&format!("p{n}"), "plan.create", "plan", None, n);
    let pro = plan("pro");
    store
        .create_plan(&pro, Change::audited(&audit(1)))
        .await
        .unwrap();
    assert!(matches!(
        store.create_plan(&pro, Change::audited(&audit(2))).await,
        Err(StoreError::Conflict(Conflict::PlanTaken))
    ));
    assert_eq!(store.plan("pro").await.unwrap(), Some(pro.clone()));
    assert_eq!(store.list_plans().await.unwrap(), vec![pro.clone()]);

    // A key on the plan with a limit of its own named `api`, and a counter from the plan.
    let mut k = key(&kid(1), "ks_a", None);
    k.scopes = vec!["own.scope".into()];
    k.grants.plan = Some("pro".into());
    k.limits.ratelimits = vec![limit("api", 1_000)];
    k.limits.quota = Some(Quota {
        remaining: 100,
        refill: None,
        refilled_at: T0,
        from_plan: true,
    });
    add_key(store, &k).await;
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.key.scopes, k.scopes, "the key as stored");
    assert_eq!(found.key.limits.ratelimits, k.limits.ratelimits);
    assert_eq!(found.scopes, ["own.scope", "plan.scope"]);
    assert_eq!(found.plan_ratelimits, vec![limit("burst", 2)]);
    let quota = found.key.limits.quota.unwrap();
    assert!(quota.from_plan);
    assert_eq!(
        quota.refill,
        pro.limits.quota.unwrap().refill,
        "the plan's refill"
    );
    assert_eq!(found.max_key_age, Some(3_600));
    assert_eq!(found.permissions, ["plan.permission"]);
    let batch = store.keys_for_verify(&[kid(1)]).await.unwrap();
    assert_eq!(batch[0], found);

    // Without a quota in the plan, a counter from it ends; a quota set seeds keys
    // without one.
    let mut edited = pro.clone();
    edited.limits.quota = None;
    edited.scopes = vec![];
    store
        .update_plan(&edited, true, Change::audited(&audit(3)))
        .await
        .unwrap();
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.key.limits.quota, None);
    assert_eq!(found.scopes, ["own.scope"]);
    let mut bare = key(&kid(2), "ks_a", None);
    bare.grants.plan = Some("pro".into());
    add_key(store, &bare).await;
    let mut later = edited.clone();
    later.limits.quota = pro.limits.quota;
    later.updated_at = at(9);
    store
        .update_plan(&later, true, Change::audited(&audit(4)))
        .await
        .unwrap();
    let seeded = store.key_for_verify(&kid(2)).await.unwrap().unwrap();
    let quota = seeded.key.limits.quota.unwrap();
    assert_eq!((quota.remaining, quota.refilled_at), (100, at(9)));
    assert!(quota.from_plan);

    assert!(matches!(
        store.delete_plan("pro", Change::audited(&audit(5))).await,
        Err(StoreError::Conflict(Conflict::PlanInUse))
    ));
    assert!(matches!(
        store.delete_plan("nope", Change::audited(&audit(6))).await,
        Err(StoreError::NotFound)
    ));
    store
        .delete_key(&kid(1), Change::audited(&audit(7)))
        .await
        .unwrap();
    store
        .delete_key(&kid(2), Change::audited(&audit(8)))
        .await
        .unwrap();
    store
        .delete_plan("pro", Change::audited(&audit(9)))
        .await
        .unwrap();
    assert_eq!(store.plan("pro").await.unwrap(), None);
}
