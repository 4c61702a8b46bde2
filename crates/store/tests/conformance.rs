//! The store conformance suite: what every engine behind `Store` must do. Each check takes
//! `&dyn Store` only, so a new engine runs the same suite by adding one
//! `conformance_tests!` line with its constructor.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use keyhaven_core::{PepperVersion, Verifier};
use keyhaven_store::*;
use serde_json::{Map, json};
use time::macros::datetime;

const T0: Timestamp = datetime!(2026-11-22 10:00:00 UTC);

fn at(secs: i64) -> Timestamp {
    T0 + time::Duration::seconds(secs)
}

fn event(id: &str, action: &str, target: &str, keyspace: Option<&str>, t: i64) -> AuditEvent {
    AuditEvent {
        id: format!("evt_{id}"),
        occurred_at: at(t),
        actor: "actor1".into(),
        action: action.into(),
        target_type: "test".into(),
        target_id: target.into(),
        keyspace_id: keyspace.map(str::to_owned),
        changes: Map::new(),
        client_ip: Some("127.0.0.1".into()),
    }
}

fn keyspace(id: &str, prefix: &str) -> Keyspace {
    Keyspace {
        id: id.into(),
        name: format!("name of {id}"),
        prefix: prefix.into(),
        policy: KeyspacePolicy::default(),
        created_at: T0,
        updated_at: T0,
    }
}

fn owner(id: &str, external_id: &str) -> Owner {
    Owner {
        id: id.into(),
        external_id: external_id.into(),
        name: Some("Customer".into()),
        meta: json!({"plan": "pro"}).as_object().unwrap().clone(),
        created_at: T0,
        updated_at: T0,
    }
}

fn key(key_id: &str, keyspace_id: &str, owner_id: Option<&str>) -> KeyRecord {
    KeyRecord {
        key_id: key_id.into(),
        keyspace_id: keyspace_id.into(),
        owner_id: owner_id.map(str::to_owned),
        name: Some("a key".into()),
        last4: "abcd".into(),
        verifier: Verifier::from_parts(PepperVersion::new(1).unwrap(), [7; 32]),
        scopes: vec!["read".into()],
        meta: Map::new(),
        allowed_keyspaces: None,
        enabled: true,
        expires_at: None,
        revoked_at: None,
        revoked_reason: None,
        rotation: None,
        rotated_from: None,
        sealed_key: None,
        import: None,
        last_used_at: None,
        created_at: T0,
        updated_at: T0,
    }
}

/// Key ids: 12 base58 characters, distinct per `n`.
fn kid(n: usize) -> String {
    format!("K{n:0>11}").replace('0', "z")
}

async fn events(store: &dyn Store, filter: &AuditFilter<'_>) -> Vec<AuditEvent> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_audit_events(filter, PageRequest { limit: 2, after })
            .await
            .unwrap();
        all.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return all,
        }
    }
}

async fn audited_count(store: &dyn Store) -> usize {
    events(store, &AuditFilter::default()).await.len()
}

fn conflict(r: Result<(), StoreError>) -> Conflict {
    match r {
        Err(StoreError::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn keyspace_crud(store: &dyn Store) {
    let ks = keyspace("ks_a", "alpha");
    store
        .create_keyspace(
            &ks,
            Change::audited(&event("1", "keyspace.create", "ks_a", Some("ks_a"), 0)),
        )
        .await
        .unwrap();
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(ks.clone()));
    assert_eq!(store.keyspace("ks_missing").await.unwrap(), None);

    let mut renamed = ks.clone();
    renamed.name = "renamed".into();
    renamed.updated_at = at(5);
    store
        .update_keyspace(
            &renamed,
            Change::audited(&event("2", "keyspace.update", "ks_a", Some("ks_a"), 5)),
        )
        .await
        .unwrap();
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(renamed));

    let ghost = keyspace("ks_ghost", "ghost");
    assert!(matches!(
        store
            .update_keyspace(
                &ghost,
                Change::audited(&event("3", "x", "ks_ghost", None, 6))
            )
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .delete_keyspace(
            "ks_a",
            Change::audited(&event("4", "keyspace.delete", "ks_a", Some("ks_a"), 7)),
        )
        .await
        .unwrap();
    assert_eq!(store.keyspace("ks_a").await.unwrap(), None);
    assert!(matches!(
        store
            .delete_keyspace("ks_a", Change::audited(&event("5", "x", "ks_a", None, 8)))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        audited_count(store).await,
        3,
        "failed mutations write no audit event"
    );
}

pub async fn root_keyspace_is_invisible(store: &dyn Store) {
    assert_eq!(store.keyspace(ROOT_KEYSPACE_ID).await.unwrap(), None);
    let page = store
        .list_keyspaces(
            None,
            PageRequest {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    assert!(page.items.is_empty());
    let renamed = keyspace(ROOT_KEYSPACE_ID, ROOT_PREFIX);
    assert!(matches!(
        store
            .update_keyspace(&renamed, Change::audited(&event("1", "x", "r", None, 0)))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .delete_keyspace(
                ROOT_KEYSPACE_ID,
                Change::audited(&event("2", "x", "r", None, 0))
            )
            .await
            .is_err()
    );
    // Root keys live there but never show up in key lists.
    let mut root = key(&kid(1), ROOT_KEYSPACE_ID, None);
    root.allowed_keyspaces = Some(vec!["ks_a".into()]);
    store
        .create_key(
            &root,
            Change::audited(&event("3", "root_key.create", &kid(1), None, 0)),
        )
        .await
        .unwrap();
    assert_eq!(store.count_root_keys().await.unwrap(), 1);
    let listed = store
        .list_keys(
            &KeyFilter::default(),
            PageRequest {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.key, root);
    assert_eq!(found.keyspace_prefix, ROOT_PREFIX);
}

pub async fn prefixes_are_unique(store: &dyn Store) {
    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("1", "x", "a", None, 0)),
        )
        .await
        .unwrap();
    let dup = store
        .create_keyspace(
            &keyspace("ks_b", "alpha"),
            Change::audited(&event("2", "x", "b", None, 0)),
        )
        .await;
    assert_eq!(conflict(dup), Conflict::PrefixTaken);
    let reserved = store
        .create_keyspace(
            &keyspace("ks_c", ROOT_PREFIX),
            Change::audited(&event("3", "x", "c", None, 0)),
        )
        .await;
    assert_eq!(conflict(reserved), Conflict::PrefixTaken);
    assert_eq!(audited_count(store).await, 1);
}

pub async fn keyspace_list_scopes_and_pages(store: &dyn Store) {
    for i in 0..5 {
        let id = format!("ks_{i}");
        store
            .create_keyspace(
                &keyspace(&id, &format!("p{i}")),
                Change::audited(&event(&i.to_string(), "x", &id, None, i)),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_keyspaces(None, PageRequest { limit: 2, after })
            .await
            .unwrap();
        seen.extend(page.items.into_iter().map(|k| k.id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["ks_4", "ks_3", "ks_2", "ks_1", "ks_0"]);
    let visible = vec!["ks_1".to_owned(), "ks_3".to_owned(), "ks_9".to_owned()];
    let page = store
        .list_keyspaces(
            Some(&visible),
            PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    let ids: Vec<_> = page.items.into_iter().map(|k| k.id).collect();
    assert_eq!(ids, ["ks_3", "ks_1"]);
    let none: Vec<String> = Vec::new();
    assert!(
        store
            .list_keyspaces(
                Some(&none),
                PageRequest {
                    limit: 10,
                    after: None
                }
            )
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn owners_crud_and_external_ids(store: &dyn Store) {
    let o = owner("own_1", "cus_1");
    store
        .create_owner(
            &o,
            Change::audited(&event("1", "owner.create", "own_1", None, 0)),
        )
        .await
        .unwrap();
    assert_eq!(store.owner("own_1").await.unwrap(), Some(o.clone()));
    assert_eq!(
        store.owner_by_external_id("cus_1").await.unwrap(),
        Some(o.clone())
    );
    assert_eq!(store.owner_by_external_id("cus_2").await.unwrap(), None);
    let dup = store
        .create_owner(
            &owner("own_2", "cus_1"),
            Change::audited(&event("2", "x", "own_2", None, 0)),
        )
        .await;
    assert_eq!(conflict(dup), Conflict::ExternalIdTaken);

    store
        .create_owner(
            &owner("own_3", "cus_3"),
            Change::audited(&event("3", "x", "own_3", None, 0)),
        )
        .await
        .unwrap();
    let mut taken = owner("own_3", "cus_1");
    taken.updated_at = at(1);
    let clash = store
        .update_owner(&taken, Change::audited(&event("4", "x", "own_3", None, 1)))
        .await;
    assert_eq!(conflict(clash), Conflict::ExternalIdTaken);
    let mut changed = owner("own_3", "cus_33");
    changed.name = None;
    changed.meta = Map::new();
    changed.updated_at = at(2);
    store
        .update_owner(
            &changed,
            Change::audited(&event("5", "x", "own_3", None, 2)),
        )
        .await
        .unwrap();
    assert_eq!(store.owner("own_3").await.unwrap(), Some(changed));
    let page = store
        .list_owners(PageRequest {
            limit: 1,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(page.items[0].id, "own_3");
    let rest = store
        .list_owners(PageRequest {
            limit: 1,
            after: page.next,
        })
        .await
        .unwrap();
    assert_eq!((rest.items[0].id.as_str(), rest.next), ("own_1", None));

    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("6", "x", "ks_a", None, 3)),
        )
        .await
        .unwrap();
    store
        .create_key(
            &key(&kid(1), "ks_a", Some("own_1")),
            Change::audited(&event("7", "x", "k", None, 3)),
        )
        .await
        .unwrap();
    let busy = store
        .delete_owner("own_1", Change::audited(&event("8", "x", "own_1", None, 4)))
        .await;
    assert_eq!(conflict(busy), Conflict::OwnerHasKeys);
    store
        .delete_owner("own_3", Change::audited(&event("9", "x", "own_3", None, 4)))
        .await
        .unwrap();
    assert_eq!(store.owner("own_3").await.unwrap(), None);
    assert_eq!(
        audited_count(store).await,
        6,
        "six changes succeeded, two conflicted"
    );
}

pub async fn keys_round_trip_and_join_for_verify(store: &dyn Store) {
    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("1", "x", "ks_a", None, 0)),
        )
        .await
        .unwrap();
    store
        .create_owner(
            &owner("own_1", "cus_1"),
            Change::audited(&event("2", "x", "own_1", None, 0)),
        )
        .await
        .unwrap();
    let k = key(&kid(1), "ks_a", Some("own_1"));
    store
        .create_key(
            &k,
            Change::audited(&event("3", "key.create", &kid(1), Some("ks_a"), 0)),
        )
        .await
        .unwrap();
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.key, k);
    assert_eq!(found.keyspace_prefix, "alpha");
    assert_eq!(found.keyspace_name, "name of ks_a");
    assert_eq!(found.owner_external_id.as_deref(), Some("cus_1"));
    assert_eq!(store.key_for_verify(&kid(2)).await.unwrap(), None);

    let dup = store
        .create_key(&k, Change::audited(&event("4", "x", "k", None, 0)))
        .await;
    assert_eq!(conflict(dup), Conflict::DuplicateId);
    let orphan = store
        .create_key(
            &key(&kid(3), "ks_nope", None),
            Change::audited(&event("5", "x", "k", None, 0)),
        )
        .await;
    assert_eq!(conflict(orphan), Conflict::MissingReference);
    let no_owner = store
        .create_key(
            &key(&kid(4), "ks_a", Some("own_nope")),
            Change::audited(&event("6", "x", "k", None, 0)),
        )
        .await;
    assert_eq!(conflict(no_owner), Conflict::MissingReference);

    // Every mutable field round-trips.
    let mut changed = k.clone();
    changed.owner_id = None;
    changed.name = None;
    changed.scopes = vec!["a".into(), "b:c".into()];
    changed.meta = json!({"x": [1, 2], "y": null}).as_object().unwrap().clone();
    changed.enabled = false;
    changed.expires_at = Some(at(3600));
    changed.updated_at = at(9);
    store
        .update_key(
            &changed,
            Change::audited(&event("7", "key.update", &kid(1), Some("ks_a"), 9)),
        )
        .await
        .unwrap();
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.key, changed);
    assert_eq!(found.owner_external_id, None);
    assert!(matches!(
        store
            .update_key(
                &key(&kid(9), "ks_a", None),
                Change::audited(&event("8", "x", "k", None, 0))
            )
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(audited_count(store).await, 4);
}

pub async fn revoke_and_delete(store: &dyn Store) {
    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("1", "x", "ks_a", None, 0)),
        )
        .await
        .unwrap();
    store
        .create_key(
            &key(&kid(1), "ks_a", None),
            Change::audited(&event("2", "x", "k", None, 0)),
        )
        .await
        .unwrap();
    store
        .revoke_key(
            &kid(1),
            at(10),
            Some("leaked"),
            Change::audited(&event("3", "key.revoke", &kid(1), Some("ks_a"), 10)),
        )
        .await
        .unwrap();
    let k = store.key_for_verify(&kid(1)).await.unwrap().unwrap().key;
    assert_eq!(
        (k.revoked_at, k.revoked_reason.as_deref(), k.updated_at),
        (Some(at(10)), Some("leaked"), at(10))
    );
    let again = store
        .revoke_key(
            &kid(1),
            at(11),
            None,
            Change::audited(&event("4", "x", "k", None, 11)),
        )
        .await;
    assert_eq!(conflict(again), Conflict::AlreadyRevoked);
    assert!(matches!(
        store
            .revoke_key(
                &kid(2),
                at(11),
                None,
                Change::audited(&event("5", "x", "k", None, 11))
            )
            .await,
        Err(StoreError::NotFound)
    ));
    let busy = store
        .delete_keyspace("ks_a", Change::audited(&event("6", "x", "ks_a", None, 12)))
        .await;
    assert_eq!(conflict(busy), Conflict::KeyspaceNotEmpty);
    store
        .delete_key(
            &kid(1),
            Change::audited(&event("7", "key.delete", &kid(1), Some("ks_a"), 12)),
        )
        .await
        .unwrap();
    assert_eq!(store.key_for_verify(&kid(1)).await.unwrap(), None);
    assert!(matches!(
        store
            .delete_key(&kid(1), Change::audited(&event("8", "x", "k", None, 13)))
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .delete_keyspace("ks_a", Change::audited(&event("9", "x", "ks_a", None, 14)))
        .await
        .unwrap();
    assert_eq!(audited_count(store).await, 5);
}

pub async fn rotation_is_atomic_and_happens_once(store: &dyn Store) {
    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("1", "x", "ks_a", None, 0)),
        )
        .await
        .unwrap();
    let old = key(&kid(1), "ks_a", None);
    store
        .create_key(&old, Change::audited(&event("2", "x", "k", None, 0)))
        .await
        .unwrap();
    let successor = KeyRecord {
        key_id: kid(2),
        rotated_from: Some(kid(1)),
        created_at: at(5),
        updated_at: at(5),
        ..old.clone()
    };
    store
        .rotate_key(
            &kid(1),
            &successor,
            at(65),
            Change::audited(&event("3", "key.rotate", &kid(1), Some("ks_a"), 5)),
        )
        .await
        .unwrap();
    let rotated = store.key_for_verify(&kid(1)).await.unwrap().unwrap().key;
    assert_eq!(
        rotated.rotation,
        Some(Rotation {
            successor: kid(2),
            grace_until: at(65)
        })
    );
    assert_eq!(rotated.updated_at, at(5));
    assert_eq!(
        store.key_for_verify(&kid(2)).await.unwrap().unwrap().key,
        successor
    );

    let twin = KeyRecord {
        key_id: kid(3),
        ..successor.clone()
    };
    let again = store
        .rotate_key(
            &kid(1),
            &twin,
            at(65),
            Change::audited(&event("4", "x", "k", None, 6)),
        )
        .await;
    assert_eq!(conflict(again), Conflict::AlreadyRotated);
    assert_eq!(
        store.key_for_verify(&kid(3)).await.unwrap(),
        None,
        "no orphan successor"
    );
    store
        .revoke_key(
            &kid(2),
            at(7),
            None,
            Change::audited(&event("5", "x", "k", None, 7)),
        )
        .await
        .unwrap();
    let revoked = store
        .rotate_key(
            &kid(2),
            &twin,
            at(65),
            Change::audited(&event("6", "x", "k", None, 8)),
        )
        .await;
    assert_eq!(conflict(revoked), Conflict::AlreadyRevoked);
    assert!(matches!(
        store
            .rotate_key(
                &kid(9),
                &twin,
                at(65),
                Change::audited(&event("7", "x", "k", None, 8))
            )
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.key_for_verify(&kid(3)).await.unwrap(), None);
    assert_eq!(audited_count(store).await, 4);
}

pub async fn expiring_keys_and_their_events(store: &dyn Store) {
    let mut ks = keyspace("ks_a", "alpha");
    ks.policy = KeyspacePolicy {
        max_key_age: Some(1000),
        default_grace: None,
        expiry_warning: Some(100),
    };
    store
        .create_keyspace(&ks, Change::audited(&event("1", "x", "ks_a", None, 0)))
        .await
        .unwrap();
    store
        .create_keyspace(
            &keyspace("ks_b", "beta"),
            Change::audited(&event("2", "x", "ks_b", None, 0)),
        )
        .await
        .unwrap();
    assert_eq!(
        store.keyspace("ks_a").await.unwrap().unwrap().policy,
        ks.policy
    );
    // By age (1000 s), by own expiry (950 s, earlier), in another keyspace with the
    // default 7-day window, and a revoked one.
    store
        .create_key(
            &key(&kid(1), "ks_a", None),
            Change::audited(&event("3", "x", "k", None, 0)),
        )
        .await
        .unwrap();
    let mut own = key(&kid(2), "ks_a", None);
    own.expires_at = Some(at(950));
    store
        .create_key(&own, Change::audited(&event("4", "x", "k", None, 0)))
        .await
        .unwrap();
    let mut b = key(&kid(3), "ks_b", None);
    b.expires_at = Some(at(5000));
    store
        .create_key(&b, Change::audited(&event("5", "x", "k", None, 0)))
        .await
        .unwrap();
    let mut gone = key(&kid(4), "ks_a", None);
    gone.revoked_at = Some(at(1));
    store
        .create_key(&gone, Change::audited(&event("6", "x", "k", None, 0)))
        .await
        .unwrap();
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
    let page = store
        .list_events(
            Some("key.expiring"),
            None,
            PageRequest {
                limit: 2,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = store
        .list_events(
            Some("key.expiring"),
            None,
            PageRequest {
                limit: 2,
                after: page.next,
            },
        )
        .await
        .unwrap();
    assert_eq!((rest.items.len(), rest.next), (1, None));
    let b_events = store
        .list_events(
            None,
            Some(&only_b),
            PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(b_events.items.len(), 1);
    assert_eq!(b_events.items[0].key_id.as_deref(), Some(kid(3).as_str()));
    assert_eq!(
        b_events.items[0].payload["expires_at"],
        json!("2026-11-22T11:23:20Z")
    );
}

pub async fn key_lists_filter_and_paginate(store: &dyn Store) {
    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("a", "x", "ks_a", None, 0)),
        )
        .await
        .unwrap();
    store
        .create_keyspace(
            &keyspace("ks_b", "beta"),
            Change::audited(&event("b", "x", "ks_b", None, 0)),
        )
        .await
        .unwrap();
    store
        .create_owner(
            &owner("own_1", "cus_1"),
            Change::audited(&event("o", "x", "own_1", None, 0)),
        )
        .await
        .unwrap();
    for n in 0..9 {
        let ks = if n % 3 == 0 { "ks_b" } else { "ks_a" };
        let owner = (n % 2 == 0).then_some("own_1");
        store
            .create_key(
                &key(&kid(n), ks, owner),
                Change::audited(&event(&format!("k{n}"), "x", "k", None, 0)),
            )
            .await
            .unwrap();
    }
    let list = |filter: KeyFilter<'static>, limit: u32| async move {
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_keys(&filter, PageRequest { limit, after })
                .await
                .unwrap();
            assert!(page.items.len() <= limit as usize);
            ids.extend(page.items.into_iter().map(|k| k.key_id));
            match page.next {
                Some(n) => after = Some(n),
                None => return ids,
            }
        }
    };
    let expect =
        |f: &dyn Fn(usize) -> bool| (0..9).rev().filter(|n| f(*n)).map(kid).collect::<Vec<_>>();
    assert_eq!(list(KeyFilter::default(), 2).await, expect(&|_| true));
    assert_eq!(list(KeyFilter::default(), 9).await, expect(&|_| true));
    assert_eq!(
        list(
            KeyFilter {
                keyspace_id: Some("ks_a"),
                ..Default::default()
            },
            4
        )
        .await,
        expect(&|n| n % 3 != 0)
    );
    assert_eq!(
        list(
            KeyFilter {
                owner_id: Some("own_1"),
                ..Default::default()
            },
            2
        )
        .await,
        expect(&|n| n % 2 == 0)
    );
    let only_b: &'static [String] = Box::leak(Box::new(["ks_b".to_owned()]));
    assert_eq!(
        list(
            KeyFilter {
                visible: Some(only_b),
                ..Default::default()
            },
            2
        )
        .await,
        expect(&|n| n % 3 == 0)
    );
    assert_eq!(
        list(
            KeyFilter {
                visible: Some(only_b),
                keyspace_id: Some("ks_a"),
                owner_id: None
            },
            2
        )
        .await,
        Vec::<String>::new(),
        "a filter never widens the visible set"
    );
}

pub async fn audit_filters(store: &dyn Store) {
    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("1", "keyspace.create", "ks_a", Some("ks_a"), 0)),
        )
        .await
        .unwrap();
    store
        .create_keyspace(
            &keyspace("ks_b", "beta"),
            Change::audited(&event("2", "keyspace.create", "ks_b", Some("ks_b"), 10)),
        )
        .await
        .unwrap();
    let mut by_other = event("3", "owner.create", "own_1", None, 20);
    by_other.actor = "actor2".into();
    by_other.changes = json!({"external_id": "cus_1"}).as_object().unwrap().clone();
    store
        .create_owner(&owner("own_1", "cus_1"), Change::audited(&by_other))
        .await
        .unwrap();

    let ids = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(events(store, &AuditFilter::default()).await),
        ["evt_3", "evt_2", "evt_1"]
    );
    let all = events(store, &AuditFilter::default()).await;
    assert_eq!(all[0], by_other, "events round-trip");
    let only_a = vec!["ks_a".to_owned()];
    assert_eq!(
        ids(events(
            store,
            &AuditFilter {
                visible: Some(&only_a),
                ..Default::default()
            }
        )
        .await),
        ["evt_1"]
    );
    assert_eq!(
        ids(events(
            store,
            &AuditFilter {
                keyspace_id: Some("ks_b"),
                ..Default::default()
            }
        )
        .await),
        ["evt_2"]
    );
    assert_eq!(
        ids(events(
            store,
            &AuditFilter {
                target_id: Some("own_1"),
                ..Default::default()
            }
        )
        .await),
        ["evt_3"]
    );
    assert_eq!(
        ids(events(
            store,
            &AuditFilter {
                action: Some("keyspace.create"),
                ..Default::default()
            }
        )
        .await),
        ["evt_2", "evt_1"]
    );
    assert_eq!(
        ids(events(
            store,
            &AuditFilter {
                actor: Some("actor2"),
                ..Default::default()
            }
        )
        .await),
        ["evt_3"]
    );
    assert_eq!(
        ids(events(
            store,
            &AuditFilter {
                since: Some(at(10)),
                until: Some(at(20)),
                ..Default::default()
            }
        )
        .await),
        ["evt_2"]
    );
    store
        .append_audit(&event("4", "key.reveal", "k", Some("ks_a"), 30))
        .await
        .unwrap();
    assert_eq!(
        ids(events(
            store,
            &AuditFilter {
                action: Some("key.reveal"),
                ..Default::default()
            }
        )
        .await),
        ["evt_4"]
    );
    assert!(
        store
            .append_audit(&event("4", "dup", "k", None, 31))
            .await
            .is_err(),
        "event ids are unique"
    );
}

pub async fn idempotent_responses_share_the_transaction(store: &dyn Store) {
    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("1", "x", "ks_a", None, 0)),
        )
        .await
        .unwrap();
    let saved = IdempotentResponse {
        actor: "actor1".into(),
        idempotency_key: "idem-1".into(),
        request_hash: [3; 32],
        status: 201,
        sealed_response: vec![1, 2, 3, 4],
        created_at: at(0),
    };
    let audit = event("2", "key.create", &kid(1), Some("ks_a"), 0);
    store
        .create_key(
            &key(&kid(1), "ks_a", None),
            Change {
                audit: &audit,
                idempotency: Some(&saved),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.idempotent_response("actor1", "idem-1").await.unwrap(),
        Some(saved.clone())
    );
    assert_eq!(
        store.idempotent_response("actor2", "idem-1").await.unwrap(),
        None,
        "keys are per actor"
    );

    // A second change with the same (actor, key) is refused whole: no key, no event.
    let audit = event("3", "key.create", &kid(2), Some("ks_a"), 1);
    let twin = store
        .create_key(
            &key(&kid(2), "ks_a", None),
            Change {
                audit: &audit,
                idempotency: Some(&saved),
            },
        )
        .await;
    assert_eq!(conflict(twin), Conflict::IdempotencyKeyTaken);
    assert_eq!(store.key_for_verify(&kid(2)).await.unwrap(), None);
    assert_eq!(audited_count(store).await, 2);

    let newer = IdempotentResponse {
        idempotency_key: "idem-2".into(),
        created_at: at(100),
        ..saved.clone()
    };
    let audit = event("4", "keyspace.create", "ks_b", Some("ks_b"), 100);
    store
        .create_keyspace(
            &keyspace("ks_b", "beta"),
            Change {
                audit: &audit,
                idempotency: Some(&newer),
            },
        )
        .await
        .unwrap();
    assert_eq!(store.purge_idempotency(at(50)).await.unwrap(), 1);
    assert_eq!(
        store.idempotent_response("actor1", "idem-1").await.unwrap(),
        None
    );
    assert_eq!(
        store.idempotent_response("actor1", "idem-2").await.unwrap(),
        Some(newer)
    );
}

pub async fn usage_adds_up_and_last_use_only_moves_forward(store: &dyn Store) {
    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("1", "x", "ks_a", None, 0)),
        )
        .await
        .unwrap();
    store
        .create_key(
            &key(&kid(1), "ks_a", None),
            Change::audited(&event("2", "x", "k", None, 0)),
        )
        .await
        .unwrap();
    let count = |minute: i64, outcome: &str, count: u64| UsageCount {
        key_id: kid(1),
        minute: T0.unix_timestamp() + minute,
        outcome: outcome.into(),
        count,
    };
    store
        .record_usage(&UsageBatch {
            counts: vec![count(0, "VALID", 3), count(60, "VALID", 1)],
            last_used: vec![(kid(1), at(70))],
        })
        .await
        .unwrap();
    store
        .record_usage(&UsageBatch {
            counts: vec![count(0, "VALID", 2), count(0, "REVOKED", 1)],
            last_used: vec![(kid(1), at(30)), (kid(5), at(30))],
        })
        .await
        .unwrap();
    store.record_usage(&UsageBatch::default()).await.unwrap();
    let rows = store.usage(&kid(1), 0).await.unwrap();
    assert_eq!(
        rows,
        vec![
            count(0, "REVOKED", 1),
            count(0, "VALID", 5),
            count(60, "VALID", 1)
        ]
    );
    assert_eq!(
        store
            .usage(&kid(1), T0.unix_timestamp() + 60)
            .await
            .unwrap(),
        vec![count(60, "VALID", 1)]
    );
    let k = store.key_for_verify(&kid(1)).await.unwrap().unwrap().key;
    assert_eq!(
        k.last_used_at,
        Some(at(70)),
        "an older use never lowers last_used_at"
    );
    assert_eq!(
        audited_count(store).await,
        2,
        "usage is not an audited change"
    );
}

pub async fn pepper_versions_in_use(store: &dyn Store) {
    assert!(store.pepper_versions().await.unwrap().is_empty());
    store
        .create_keyspace(
            &keyspace("ks_a", "alpha"),
            Change::audited(&event("1", "x", "ks_a", None, 0)),
        )
        .await
        .unwrap();
    let mut k3 = key(&kid(3), "ks_a", None);
    k3.verifier = Verifier::from_parts(PepperVersion::new(3).unwrap(), [9; 32]);
    store
        .create_key(
            &key(&kid(1), "ks_a", None),
            Change::audited(&event("2", "x", "k", None, 0)),
        )
        .await
        .unwrap();
    store
        .create_key(&k3, Change::audited(&event("3", "x", "k", None, 0)))
        .await
        .unwrap();
    assert_eq!(store.pepper_versions().await.unwrap(), vec![1, 3]);
    assert_eq!(
        store.pepper_version_counts().await.unwrap(),
        vec![(1, 1), (3, 1)]
    );
    let v3 = Verifier::from_parts(PepperVersion::new(3).unwrap(), [5; 32]);
    assert!(store.rehash_key(&kid(1), 1, &v3).await.unwrap());
    assert!(
        !store.rehash_key(&kid(1), 1, &v3).await.unwrap(),
        "only from the stated version"
    );
    assert!(!store.rehash_key(&kid(8), 1, &v3).await.unwrap());
    assert_eq!(
        store
            .key_for_verify(&kid(1))
            .await
            .unwrap()
            .unwrap()
            .key
            .verifier,
        v3
    );
    assert_eq!(store.pepper_version_counts().await.unwrap(), vec![(3, 2)]);
    assert_eq!(
        store
            .key_for_verify(&kid(3))
            .await
            .unwrap()
            .unwrap()
            .key
            .verifier,
        k3.verifier
    );
    store.ping().await.unwrap();
    store.migrate().await.unwrap(); // idempotent
}

macro_rules! conformance_tests {
    ($engine:ident, $open:expr) => {
        mod $engine {
            use super::*;
            conformance_tests!(@each $open;
                keyspace_crud, root_keyspace_is_invisible, prefixes_are_unique,
                keyspace_list_scopes_and_pages, owners_crud_and_external_ids,
                keys_round_trip_and_join_for_verify, revoke_and_delete,
                key_lists_filter_and_paginate, audit_filters, rotation_is_atomic_and_happens_once, expiring_keys_and_their_events,
                idempotent_responses_share_the_transaction,
                usage_adds_up_and_last_use_only_moves_forward, pepper_versions_in_use);
        }
    };
    (@each $open:expr; $($check:ident),+) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (store, _guard) = $open.await;
                super::$check(store.as_ref()).await;
            }
        )+
    };
}

async fn sqlite() -> (Box<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("keyhaven.db"))
        .await
        .unwrap();
    (Box::new(store), dir)
}

conformance_tests!(sqlite_engine, sqlite());
