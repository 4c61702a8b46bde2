//! The audit log: one event per mutation, and its filters and pages.

use keyhaven_core::{PepperVersion, Verifier};
use keyhaven_store::*;
use serde_json::json;

use crate::support::*;

pub async fn every_mutation_writes_exactly_one_audit_event(store: &dyn Store) {
    let mut log = AuditLog::read(store).await;
    assert!(log.seen.is_empty(), "a new store has no audit events");

    let mut ks = keyspace("ks_a", "alpha");
    let mut audit = event("1", "keyspace.create", "ks_a", Some("ks_a"), 1);
    audit.changes = obj(json!({"name": ks.name, "prefix": "alpha"}));
    audit.client_ip = None;
    store
        .create_keyspace(&ks, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    ks.name = "renamed".into();
    let audit = event("2", "keyspace.update", "ks_a", Some("ks_a"), 2);
    store
        .update_keyspace(&ks, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    let mut o = owner("own_1", "cus_1");
    let audit = event("3", "owner.create", "own_1", None, 3);
    store
        .create_owner(&o, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    o.name = None;
    let audit = event("4", "owner.update", "own_1", None, 4);
    store
        .update_owner(&o, QuotaWrite::Keep, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    let mut k = key(&kid(1), "ks_a", Some("own_1"));
    let mut audit = event("5", "key.create", &kid(1), Some("ks_a"), 5);
    audit.changes = obj(json!({"name": "a key", "scopes": ["read"]}));
    store.create_key(&k, Change::audited(&audit)).await.unwrap();
    log.expect_one(store, &audit).await;

    k.enabled = false;
    let audit = event("6", "key.update", &kid(1), Some("ks_a"), 6);
    store
        .update_key(&k, QuotaWrite::Keep, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    let successor = KeyRecord {
        key_id: kid(2),
        rotated_from: Some(kid(1)),
        ..k.clone()
    };
    let audit = event("7", "key.rotate", &kid(1), Some("ks_a"), 7);
    store
        .rotate_key(&kid(1), &successor, at(60), Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    let audit = event("8", "key.revoke", &kid(2), Some("ks_a"), 8);
    store
        .revoke_key(&kid(2), at(8), Some("why"), Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    let audit = event("9", "key.reveal", &kid(2), Some("ks_a"), 9);
    store.append_audit(&audit).await.unwrap();
    log.expect_one(store, &audit).await;
    assert!(
        store.append_audit(&audit).await.is_err(),
        "audit event ids are unique"
    );
    log.expect_none(store, "a duplicate audit event").await;

    let imported = imported_key(kid(3), "ks_a", "lookup-3");
    let audit = event("10", "key.import", "ks_a", Some("ks_a"), 10);
    assert_eq!(
        store
            .import_keys(std::slice::from_ref(&imported), &audit)
            .await
            .unwrap(),
        [true]
    );
    let mut expected = audit.clone();
    expected.changes.insert("imported".into(), json!(1));
    expected.changes.insert("key_ids".into(), json!([kid(3)]));
    log.expect_one(store, &expected).await;
    let audit = event("11", "key.import", "ks_a", Some("ks_a"), 11);
    assert_eq!(
        store
            .import_keys(std::slice::from_ref(&imported), &audit)
            .await
            .unwrap(),
        [false]
    );
    log.expect_none(store, "an import that inserted nothing")
        .await;

    for (i, id) in [kid(1), kid(2), kid(3)].iter().enumerate() {
        let audit = event(&format!("12_{i}"), "key.delete", id, Some("ks_a"), 12);
        store.delete_key(id, Change::audited(&audit)).await.unwrap();
        log.expect_one(store, &audit).await;
    }
    let audit = event("13", "owner.delete", "own_1", None, 13);
    store
        .delete_owner("own_1", Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let audit = event("14", "keyspace.delete", "ks_a", Some("ks_a"), 14);
    store
        .delete_keyspace("ks_a", Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    // What is not an admin change is not audited.
    add_keyspace(store, &keyspace("ks_b", "beta")).await;
    add_key(store, &imported_key(kid(4), "ks_b", "lookup-4")).await;
    log = AuditLog::read(store).await;
    store
        .record_usage(&UsageBatch {
            counts: vec![UsageCount {
                key_id: kid(4),
                minute: unix(0),
                outcome: "VALID".into(),
                count: 1,
            }],
            last_used: vec![(kid(4), at(20))],
        })
        .await
        .unwrap();
    let v2 = Verifier::from_parts(PepperVersion::new(2).unwrap(), [2; 32]);
    assert!(store.complete_import(&kid(4), &v2).await.unwrap());
    let v3 = Verifier::from_parts(PepperVersion::new(3).unwrap(), [3; 32]);
    assert!(store.rehash_key(&kid(4), 2, &v3).await.unwrap());
    store.purge_idempotency(at(1000)).await.unwrap();
    store.record_expiring_events(at(0)).await.unwrap();
    log.expect_none(store, "usage, re-hashing and housekeeping")
        .await;
}

pub async fn audit_filters_and_pages(store: &dyn Store) {
    // Six events from mutations (and one reveal) by three actors over 40 seconds.
    let mut e1 = event("1", "keyspace.create", "ks_a", Some("ks_a"), 0);
    e1.changes = obj(json!({"name": "name of ks_a", "prefix": "alpha"}));
    let e2 = event("2", "keyspace.create", "ks_b", Some("ks_b"), 5);
    let mut e3 = event("3", "keyspace.update", "ks_b", Some("ks_b"), 10);
    e3.changes = obj(json!({"name": {"from": "b", "to": "c"}}));
    let mut e4 = event("4", "owner.create", "own_1", None, 20);
    e4.actor = "rk_actor2".into();
    e4.client_ip = Some("2001:db8::1".into());
    let e5 = event("5", "key.reveal", &kid(1), Some("ks_a"), 30);
    let mut e6 = event("6", "keyspace.update", "ks_a", Some("ks_a"), 40);
    e6.actor = "cli".into();
    e6.client_ip = None;
    let (ks_a, ks_b) = (keyspace("ks_a", "alpha"), keyspace("ks_b", "beta"));
    store
        .create_keyspace(&ks_a, Change::audited(&e1))
        .await
        .unwrap();
    store
        .create_keyspace(&ks_b, Change::audited(&e2))
        .await
        .unwrap();
    store
        .update_keyspace(&ks_b, Change::audited(&e3))
        .await
        .unwrap();
    store
        .create_owner(&owner("own_1", "cus_1"), Change::audited(&e4))
        .await
        .unwrap();
    store.append_audit(&e5).await.unwrap();
    store
        .update_keyspace(&ks_a, Change::audited(&e6))
        .await
        .unwrap();

    // Newest first, whole events, across pages without gaps or repeats.
    let everything = AuditFilter::default();
    let all = [e6, e5, e4, e3, e2, e1];
    for limit in [1, 3, 5, 6, 7] {
        let paged = all_pages(limit, |page| store.list_audit_events(&everything, page)).await;
        assert_eq!(paged, all, "limit {limit}");
    }
    let page = store
        .list_audit_events(&everything, first(4))
        .await
        .unwrap();
    assert_eq!(page.items, all[..4]);
    let after = page.next;
    let rest = store
        .list_audit_events(&everything, PageRequest { limit: 4, after })
        .await
        .unwrap();
    assert_eq!((&rest.items[..], rest.next), (&all[4..], None));

    let visible_a = vec!["ks_a".to_owned()];
    let only_a = AuditFilter {
        visible: Some(&visible_a),
        ..Default::default()
    };
    assert_eq!(
        audit_ids(store, only_a.clone()).await,
        ["evt_6", "evt_5", "evt_1"],
        "visible: only events of those keyspaces (none without a keyspace)"
    );
    let narrowed = AuditFilter {
        keyspace_id: Some("ks_b"),
        ..only_a
    };
    assert!(
        audit_ids(store, narrowed).await.is_empty(),
        "a filter never widens the visible set"
    );
    let nothing: Vec<String> = Vec::new();
    let visible_none = AuditFilter {
        visible: Some(&nothing),
        ..Default::default()
    };
    assert!(audit_ids(store, visible_none).await.is_empty());
    let by_keyspace = AuditFilter {
        keyspace_id: Some("ks_b"),
        ..Default::default()
    };
    assert_eq!(audit_ids(store, by_keyspace).await, ["evt_3", "evt_2"]);
    let by_target = AuditFilter {
        target_id: Some("own_1"),
        ..Default::default()
    };
    assert_eq!(audit_ids(store, by_target).await, ["evt_4"]);
    let by_action = AuditFilter {
        action: Some("keyspace.update"),
        ..Default::default()
    };
    assert_eq!(
        audit_ids(store, by_action.clone()).await,
        ["evt_6", "evt_3"]
    );
    let by_actor = AuditFilter {
        actor: Some("rk_actor2"),
        ..Default::default()
    };
    assert_eq!(audit_ids(store, by_actor).await, ["evt_4"]);
    let by_cli = AuditFilter {
        actor: Some("cli"),
        ..Default::default()
    };
    assert_eq!(audit_ids(store, by_cli).await, ["evt_6"]);
    // `since` is inclusive, `until` exclusive.
    let window = AuditFilter {
        since: Some(at(10)),
        until: Some(at(30)),
        ..Default::default()
    };
    assert_eq!(audit_ids(store, window).await, ["evt_4", "evt_3"]);
    let since = AuditFilter {
        since: Some(at(30)),
        ..Default::default()
    };
    assert_eq!(audit_ids(store, since).await, ["evt_6", "evt_5"]);
    let until = AuditFilter {
        until: Some(at(5)),
        ..Default::default()
    };
    assert_eq!(audit_ids(store, until).await, ["evt_1"]);
    let combined = AuditFilter {
        visible: None,
        keyspace_id: Some("ks_a"),
        target_id: Some("ks_a"),
        action: Some("keyspace.create"),
        actor: Some("rk_actor1"),
        since: Some(at(0)),
        until: Some(at(41)),
    };
    assert_eq!(
        audit_ids(store, combined).await,
        ["evt_1"],
        "filters combine"
    );
    let filtered = all_pages(1, |page| store.list_audit_events(&by_action, page)).await;
    assert_eq!(
        filtered,
        [all[0].clone(), all[3].clone()],
        "filtered lists page too"
    );
}
