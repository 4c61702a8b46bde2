//! Key listings: expiring keys and their events, and key lists' filters and pages.

use keyhaven_store::*;
use serde_json::json;

use crate::support::*;

pub async fn expiring_keys_and_their_events(store: &dyn Store) {
    let mut ks = keyspace("ks_a", "alpha");
    ks.policy = KeyspacePolicy {
        max_key_age: Some(1000),
        default_grace: None,
        expiry_warning: Some(100),
        ..Default::default()
    };
    add_keyspace(store, &ks).await;
    add_keyspace(store, &keyspace("ks_b", "beta")).await;
    assert_eq!(
        store.keyspace("ks_a").await.unwrap().unwrap().policy,
        ks.policy
    );
    // By age (1000 s), by own expiry (950 s, earlier), in another keyspace with the
    // default 7-day window, a revoked one, and a root key (never reported).
    add_key(store, &key(&kid(1), "ks_a", None)).await;
    let mut own = key(&kid(2), "ks_a", None);
    own.expires_at = Some(at(950));
    add_key(store, &own).await;
    let mut b = key(&kid(3), "ks_b", None);
    b.expires_at = Some(at(5000));
    add_key(store, &b).await;
    let mut gone = key(&kid(4), "ks_a", None);
    gone.revoked_at = Some(at(1));
    add_key(store, &gone).await;
    let mut root = key(&kid(5), ROOT_KEYSPACE_ID, None);
    root.expires_at = Some(at(5000));
    add_key(store, &root).await;
    let log = AuditLog::read(store).await;
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.effective_expiry(), Some(at(1000)));

    let ids = |v: Vec<ExpiringKey>| {
        v.into_iter()
            .map(|e| (e.key.key_id, e.expires))
            .collect::<Vec<_>>()
    };
    assert!(
        ids(store
            .expiring_keys(None, Some("ks_a"), at(849), 10)
            .await
            .unwrap())
        .is_empty()
    );
    assert_eq!(
        ids(store
            .expiring_keys(None, Some("ks_a"), at(850), 10)
            .await
            .unwrap()),
        [(kid(2), at(950))]
    );
    assert_eq!(
        ids(store.expiring_keys(None, None, at(900), 10).await.unwrap()),
        [(kid(2), at(950)), (kid(1), at(1000)), (kid(3), at(5000))]
    );
    assert_eq!(
        ids(store.expiring_keys(None, None, at(900), 2).await.unwrap()),
        [(kid(2), at(950)), (kid(1), at(1000))],
        "soonest first, up to the limit"
    );
    let only_b = vec!["ks_b".to_owned()];
    assert_eq!(
        ids(store
            .expiring_keys(Some(&only_b), None, at(900), 10)
            .await
            .unwrap()),
        [(kid(3), at(5000))]
    );
    assert!(
        ids(store.expiring_keys(None, None, at(5000), 10).await.unwrap()).is_empty(),
        "expired is not expiring"
    );

    assert_eq!(store.record_expiring_events(at(900)).await.unwrap(), 3);
    assert_eq!(
        store.record_expiring_events(at(901)).await.unwrap(),
        0,
        "once per key and expiry"
    );
    log.expect_none(store, "recording lifecycle events").await;
    let page = store
        .list_events(&kind("key.expiring"), first(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = store
        .list_events(
            &kind("key.expiring"),
            PageRequest {
                limit: 2,
                after: page.next,
            },
        )
        .await
        .unwrap();
    assert_eq!((rest.items.len(), rest.next), (1, None));
    assert!(
        store
            .list_events(&kind("key.other"), first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let b_events = store
        .list_events(
            &EventFilter {
                visible: Some(&only_b),
                kind: Some("key.expiring"),
                ..EventFilter::default()
            },
            first(10),
        )
        .await
        .unwrap();
    assert_eq!(b_events.items.len(), 1);
    let e = &b_events.items[0];
    assert_eq!(
        (
            e.kind.as_str(),
            e.key_id.as_deref(),
            e.keyspace_id.as_deref(),
            e.created_at
        ),
        ("key.expiring", Some(kid(3).as_str()), Some("ks_b"), at(900))
    );
    assert_eq!(e.payload["expires_at"], json!("2026-11-22T11:23:20Z"));
}

pub async fn key_lists_filter_and_paginate(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_keyspace(store, &keyspace("ks_b", "beta")).await;
    add_owner(store, &owner("own_1", "cus_1")).await;
    add_owner(store, &owner("own_2", "cus_2")).await;
    // Twelve keys, with root keys between them that no listing may show.
    for n in 0..12 {
        let ks = if n % 3 == 0 { "ks_b" } else { "ks_a" };
        let owner = (n % 2 == 0).then_some("own_1");
        let mut k = key(&kid(n), ks, owner);
        k.verifier = verifier(u8::try_from(n).unwrap());
        add_key(store, &k).await;
        if n % 4 == 1 {
            add_key(store, &key(&kid(100 + n), ROOT_KEYSPACE_ID, None)).await;
        }
    }
    let expect =
        |f: &dyn Fn(usize) -> bool| (0..12).rev().filter(|n| f(*n)).map(kid).collect::<Vec<_>>();
    let all = KeyFilter::default();
    for limit in [1, 2, 5, 11, 12, 13, 100] {
        assert_eq!(
            key_ids(store, &all, limit).await,
            expect(&|_| true),
            "limit {limit}"
        );
    }
    let page = store.list_keys(&all, first(12)).await.unwrap();
    assert_eq!(
        (page.items.len(), page.next),
        (12, None),
        "no cursor to an empty page"
    );
    let page = store.list_keys(&all, first(3)).await.unwrap();
    assert_eq!(page.items[0], {
        let mut k = key(&kid(11), "ks_a", None);
        k.verifier = verifier(11);
        k
    });
    assert!(page.next.is_some());

    let ks_a = KeyFilter {
        keyspace_id: Some("ks_a"),
        ..Default::default()
    };
    assert_eq!(key_ids(store, &ks_a, 3).await, expect(&|n| n % 3 != 0));
    let own_1 = KeyFilter {
        owner_id: Some("own_1"),
        ..Default::default()
    };
    assert_eq!(key_ids(store, &own_1, 2).await, expect(&|n| n % 2 == 0));
    let both = KeyFilter {
        keyspace_id: Some("ks_b"),
        owner_id: Some("own_1"),
        ..Default::default()
    };
    assert_eq!(key_ids(store, &both, 1).await, expect(&|n| n % 6 == 0));
    let own_2 = KeyFilter {
        owner_id: Some("own_2"),
        ..Default::default()
    };
    assert!(key_ids(store, &own_2, 2).await.is_empty());

    let only_b = vec!["ks_b".to_owned()];
    let visible_b = KeyFilter {
        visible: Some(&only_b),
        ..Default::default()
    };
    assert_eq!(key_ids(store, &visible_b, 2).await, expect(&|n| n % 3 == 0));
    let a_and_b = vec![
        "ks_a".to_owned(),
        "ks_b".to_owned(),
        ROOT_KEYSPACE_ID.to_owned(),
    ];
    let visible_all = KeyFilter {
        visible: Some(&a_and_b),
        ..Default::default()
    };
    assert_eq!(key_ids(store, &visible_all, 5).await, expect(&|_| true));
    let visible_b_own_1 = KeyFilter {
        visible: Some(&only_b),
        owner_id: Some("own_1"),
        ..Default::default()
    };
    assert_eq!(
        key_ids(store, &visible_b_own_1, 2).await,
        expect(&|n| n % 6 == 0)
    );
    let narrowed = KeyFilter {
        visible: Some(&only_b),
        keyspace_id: Some("ks_a"),
        owner_id: None,
        ..KeyFilter::default()
    };
    assert!(
        key_ids(store, &narrowed, 2).await.is_empty(),
        "a filter never widens the visible set"
    );
    let nothing: Vec<String> = Vec::new();
    let visible_none = KeyFilter {
        visible: Some(&nothing),
        ..Default::default()
    };
    assert!(key_ids(store, &visible_none, 2).await.is_empty());
}
