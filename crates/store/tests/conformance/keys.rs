//! Keys: stored and read back (joined for verification), updated, revoked, deleted and
//! rotated.

use keyhaven_store::*;
use serde_json::{Map, json};

use crate::support::*;

pub async fn keys_round_trip_and_join_for_verify(store: &dyn Store) {
    let mut ks = keyspace("ks_a", "alpha");
    ks.policy.max_key_age = Some(86_400);
    add_keyspace(store, &ks).await;
    add_owner(store, &owner("own_1", "cus_1")).await;
    let mut log = AuditLog::read(store).await;

    let mut minimal = key(&kid(1), "ks_a", None);
    minimal.name = None;
    minimal.scopes = Vec::new();
    let full = KeyRecord {
        key_id: kid(2),
        keyspace_id: "ks_a".into(),
        owner_id: Some("own_1".into()),
        name: Some("everything set".into()),
        last4: "Zz9x".into(),
        verifier: verifier(42),
        scopes: vec!["keys:read".into(), "billing:*".into()],
        meta: obj(json!({"n": 1, "s": "é✓", "list": [true, null], "deep": {"a": {"b": 2.5}}})),
        allowed_keyspaces: Some(vec!["ks_a".into(), "ks_x".into()]),
        enabled: false,
        expires_at: Some(at(7200)),
        revoked_at: Some(at(60)),
        revoked_reason: Some("testing".into()),
        rotation: Some(Rotation {
            successor: kid(3),
            grace_until: at(3600),
        }),
        rotated_from: Some(kid(4)),
        sealed_key: Some(vec![0, 1, 2, 254, 255]),
        import: Some(Import {
            format: "prefixed_sha256".into(),
            lookup: "lookup-full".into(),
            digest: Some(vec![9; 32]),
            public: Some("myapp_Short1".into()),
        }),
        limits: Limits {
            ratelimits: vec![
                RateLimitDef {
                    name: "requests".into(),
                    limit: 100,
                    duration_ms: 60_000,
                    burst: None,
                },
                RateLimitDef {
                    name: "burst".into(),
                    limit: 10,
                    duration_ms: 1_000,
                    burst: Some(20),
                },
            ],
            quota: Some(Quota {
                remaining: 1_000,
                refill: Some(keyhaven_core::quota::Refill {
                    interval: keyhaven_core::quota::Interval::Monthly { day: 31 },
                    amount: 5_000,
                }),
                refilled_at: at(5),
                from_plan: false,
            }),
        },
        ip_allowlist: keyhaven_core::IpAllowlist::parse(&["203.0.113.0/24", "2001:db8::/32"])
            .unwrap(),
        grants: Grants {
            plan: None,
            roles: vec!["reader".into(), "billing".into()],
            permissions: vec!["documents.read".into()],
        },
        last_used_at: Some(at(30)),
        created_at: at(1),
        updated_at: at(2),
    };
    for (i, k) in [&minimal, &full].into_iter().enumerate() {
        let audit = event(&format!("c{i}"), "key.create", &k.key_id, Some("ks_a"), 0);
        store.create_key(k, Change::audited(&audit)).await.unwrap();
        log.expect_one(store, &audit).await;
    }

    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(
        found,
        KeyForVerify {
            key: minimal.clone(),
            keyspace_prefix: "alpha".into(),
            keyspace_name: "name of ks_a".into(),
            max_key_age: Some(86_400),
            owner_external_id: None,
            keyspace_ratelimits: Vec::new(),
            owner_limits: Limits::default(),
            owner_ip_allowlist: None,
            keyspace_ip_allowlist: None,
            permissions: Vec::new(),
            scopes: minimal.scopes.clone(),
            plan_ratelimits: Vec::new(),
        }
    );
    let found = store.key_for_verify(&kid(2)).await.unwrap().unwrap();
    assert_eq!(found.key, full);
    assert_eq!(found.owner_external_id.as_deref(), Some("cus_1"));
    assert_eq!(
        store
            .list_keys(&KeyFilter::default(), first(10))
            .await
            .unwrap()
            .items,
        vec![full.clone(), minimal.clone()],
        "listed keys are whole records"
    );
    assert_eq!(store.key_for_verify(&kid(5)).await.unwrap(), None);

    // Keys need their keyspace and owner.
    let orphan = store
        .create_key(
            &key(&kid(6), "ks_nope", None),
            Change::audited(&event("6", "key.create", &kid(6), Some("ks_nope"), 0)),
        )
        .await;
    assert_eq!(conflict(orphan), Conflict::MissingReference);
    let no_owner = store
        .create_key(
            &key(&kid(7), "ks_a", Some("own_nope")),
            Change::audited(&event("7", "key.create", &kid(7), Some("ks_a"), 0)),
        )
        .await;
    assert_eq!(conflict(no_owner), Conflict::MissingReference);
    log.expect_none(store, "a key with a missing reference")
        .await;
    assert_eq!(store.key_for_verify(&kid(6)).await.unwrap(), None);
    assert_eq!(store.key_for_verify(&kid(7)).await.unwrap(), None);

    // The joined fields are read live, not copied when the key was made.
    let mut renamed = ks.clone();
    renamed.name = "renamed".into();
    renamed.policy.max_key_age = None;
    renamed.updated_at = at(3);
    store
        .update_keyspace(
            &renamed,
            Change::audited(&event("8", "keyspace.update", "ks_a", Some("ks_a"), 3)),
        )
        .await
        .unwrap();
    let mut moved = owner("own_1", "cus_1b");
    moved.updated_at = at(3);
    store
        .update_owner(
            &moved,
            QuotaWrite::Keep,
            Change::audited(&event("9", "owner.update", "own_1", None, 3)),
        )
        .await
        .unwrap();
    let found = store.key_for_verify(&kid(2)).await.unwrap().unwrap();
    assert_eq!(
        (
            found.keyspace_prefix.as_str(),
            found.keyspace_name.as_str(),
            found.max_key_age,
            found.owner_external_id.as_deref()
        ),
        ("alpha", "renamed", None, Some("cus_1b"))
    );
    assert_eq!(found.key, full);
}

pub async fn update_key_round_trips_every_mutable_field(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_owner(store, &owner("own_1", "cus_1")).await;
    add_owner(store, &owner("own_2", "cus_2")).await;
    let k = key(&kid(1), "ks_a", Some("own_1"));
    add_key(store, &k).await;
    // A use recorded after the caller read the key: update_key must not undo it.
    store
        .record_usage(&UsageBatch {
            counts: Vec::new(),
            last_used: vec![(kid(1), at(50))],
        })
        .await
        .unwrap();
    let mut log = AuditLog::read(store).await;

    let mut changed = k.clone();
    changed.owner_id = Some("own_2".into());
    changed.name = Some("renamed".into());
    changed.scopes = vec!["a".into(), "b:c".into(), "d:*".into()];
    changed.meta = obj(json!({"x": [1, 2], "y": null, "z": {"w": "v"}}));
    changed.enabled = false;
    changed.expires_at = Some(at(3600));
    changed.updated_at = at(9);
    // Not mutable through update_key: the verifier belongs to rehash_key.
    let mut sent = changed.clone();
    sent.verifier = verifier(99);
    let audit = event("1", "key.update", &kid(1), Some("ks_a"), 9);
    store
        .update_key(&sent, QuotaWrite::Keep, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    let expected = KeyRecord {
        last_used_at: Some(at(50)),
        ..changed.clone()
    };
    assert_eq!(found.key, expected);
    assert_eq!(found.owner_external_id.as_deref(), Some("cus_2"));

    // Optional fields clear; revocation is never written by update_key.
    let mut cleared = changed.clone();
    cleared.owner_id = None;
    cleared.name = None;
    cleared.scopes = Vec::new();
    cleared.meta = Map::new();
    cleared.enabled = true;
    cleared.expires_at = None;
    cleared.revoked_at = Some(at(10));
    cleared.revoked_reason = Some("rotated out by hand".into());
    cleared.updated_at = at(10);
    let audit = event("2", "key.update", &kid(1), Some("ks_a"), 10);
    store
        .update_key(&cleared, QuotaWrite::Keep, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    let expected = KeyRecord {
        last_used_at: Some(at(50)),
        revoked_at: None,
        revoked_reason: None,
        ..cleared.clone()
    };
    assert_eq!(found.key, expected);
    assert_eq!(found.owner_external_id, None);
    let revoke = event("3", "key.revoke", &kid(1), Some("ks_a"), 11);
    store
        .revoke_key(&kid(1), at(11), None, Change::audited(&revoke))
        .await
        .unwrap();
    log.expect_one(store, &revoke).await;
    // A PATCH built from a read taken before the revoke must not undo it.
    let stale = KeyRecord {
        name: Some("late patch".into()),
        updated_at: at(12),
        ..expected.clone()
    };
    let patch = event("3b", "key.update", &kid(1), Some("ks_a"), 12);
    store
        .update_key(&stale, QuotaWrite::Keep, Change::audited(&patch))
        .await
        .unwrap();
    log.expect_one(store, &patch).await;
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(
        found.key.revoked_at,
        Some(at(11)),
        "a stale update never un-revokes"
    );
    assert_eq!(found.key.name.as_deref(), Some("late patch"));
    let expected = found.key.clone();

    // A missing owner is refused, and nothing changes.
    let mut dangling = cleared.clone();
    dangling.owner_id = Some("own_nope".into());
    dangling.name = Some("should not stick".into());
    let missing = store
        .update_key(
            &dangling,
            QuotaWrite::Keep,
            Change::audited(&event("4", "key.update", &kid(1), Some("ks_a"), 12)),
        )
        .await;
    assert_eq!(conflict(missing), Conflict::MissingReference);
    log.expect_none(store, "an update to a missing owner").await;
    assert_eq!(stored_key(store, &kid(1)).await, expected);

    not_found(
        store
            .update_key(
                &key(&kid(9), "ks_a", None),
                QuotaWrite::Keep,
                Change::audited(&event("5", "key.update", &kid(9), Some("ks_a"), 12)),
            )
            .await,
    );
    log.expect_none(store, "updating a missing key").await;
    assert_eq!(
        store.key_for_verify(&kid(9)).await.unwrap(),
        None,
        "update never inserts"
    );
}

pub async fn revoke_and_delete(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    let k1 = key(&kid(1), "ks_a", None);
    let k2 = key(&kid(2), "ks_a", None);
    add_key(store, &k1).await;
    add_key(store, &k2).await;
    let mut log = AuditLog::read(store).await;

    let audit = event("1", "key.revoke", &kid(1), Some("ks_a"), 10);
    store
        .revoke_key(&kid(1), at(10), Some("leaked"), Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let revoked = KeyRecord {
        revoked_at: Some(at(10)),
        revoked_reason: Some("leaked".into()),
        updated_at: at(10),
        ..k1.clone()
    };
    assert_eq!(
        stored_key(store, &kid(1)).await,
        revoked,
        "revocation touches nothing else"
    );

    let again = store
        .revoke_key(
            &kid(1),
            at(11),
            Some("again"),
            Change::audited(&event("2", "key.revoke", &kid(1), Some("ks_a"), 11)),
        )
        .await;
    assert_eq!(conflict(again), Conflict::AlreadyRevoked);
    log.expect_none(store, "a second revocation").await;
    assert_eq!(
        stored_key(store, &kid(1)).await,
        revoked,
        "the first revocation stands"
    );

    let audit = event("3", "key.revoke", &kid(2), Some("ks_a"), 12);
    store
        .revoke_key(&kid(2), at(12), None, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let k = stored_key(store, &kid(2)).await;
    assert_eq!((k.revoked_at, k.revoked_reason), (Some(at(12)), None));

    not_found(
        store
            .revoke_key(
                &kid(3),
                at(13),
                None,
                Change::audited(&event("4", "key.revoke", &kid(3), Some("ks_a"), 13)),
            )
            .await,
    );
    log.expect_none(store, "revoking a missing key").await;

    let busy = store
        .delete_keyspace(
            "ks_a",
            Change::audited(&event("5", "keyspace.delete", "ks_a", Some("ks_a"), 14)),
        )
        .await;
    assert_eq!(conflict(busy), Conflict::KeyspaceNotEmpty);
    log.expect_none(store, "deleting a keyspace with keys")
        .await;
    assert!(store.keyspace("ks_a").await.unwrap().is_some());

    let audit = event("6", "key.delete", &kid(1), Some("ks_a"), 15);
    store
        .delete_key(&kid(1), Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.key_for_verify(&kid(1)).await.unwrap(), None);
    assert_eq!(key_ids(store, &KeyFilter::default(), 10).await, [kid(2)]);
    not_found(
        store
            .delete_key(
                &kid(1),
                Change::audited(&event("7", "key.delete", &kid(1), Some("ks_a"), 16)),
            )
            .await,
    );
    log.expect_none(store, "deleting a missing key").await;
    not_found(
        store
            .revoke_key(
                &kid(1),
                at(16),
                None,
                Change::audited(&event("8", "key.revoke", &kid(1), Some("ks_a"), 16)),
            )
            .await,
    );

    let audit = event("9", "key.delete", &kid(2), Some("ks_a"), 17);
    store
        .delete_key(&kid(2), Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let audit = event("10", "keyspace.delete", "ks_a", Some("ks_a"), 18);
    store
        .delete_keyspace("ks_a", Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.keyspace("ks_a").await.unwrap(), None);
}

pub async fn rotation_is_atomic_and_happens_once(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    let old = key(&kid(1), "ks_a", None);
    add_key(store, &old).await;
    let mut log = AuditLog::read(store).await;
    let successor = KeyRecord {
        key_id: kid(2),
        verifier: verifier(8),
        rotated_from: Some(kid(1)),
        created_at: at(5),
        updated_at: at(5),
        ..old.clone()
    };
    let audit = event("1", "key.rotate", &kid(1), Some("ks_a"), 5);
    store
        .rotate_key(&kid(1), &successor, at(65), Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let rotated = stored_key(store, &kid(1)).await;
    assert_eq!(
        rotated,
        KeyRecord {
            rotation: Some(Rotation {
                successor: kid(2),
                grace_until: at(65)
            }),
            updated_at: at(5),
            ..old.clone()
        }
    );
    assert_eq!(stored_key(store, &kid(2)).await, successor);
    // A later update of the old key keeps its rotation.
    let renamed = KeyRecord {
        name: Some("old one".into()),
        updated_at: at(6),
        ..rotated.clone()
    };
    let audit = event("2", "key.update", &kid(1), Some("ks_a"), 6);
    store
        .update_key(&renamed, QuotaWrite::Keep, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(stored_key(store, &kid(1)).await, renamed);

    let twin = KeyRecord {
        key_id: kid(3),
        ..successor.clone()
    };
    let again = store
        .rotate_key(
            &kid(1),
            &twin,
            at(65),
            Change::audited(&event("3", "key.rotate", &kid(1), Some("ks_a"), 6)),
        )
        .await;
    assert_eq!(conflict(again), Conflict::AlreadyRotated);
    log.expect_none(store, "a second rotation").await;
    assert_eq!(
        store.key_for_verify(&kid(3)).await.unwrap(),
        None,
        "no orphan successor"
    );
    assert_eq!(stored_key(store, &kid(1)).await, renamed);

    // A successor whose id is taken leaves the old key unrotated.
    let fresh = key(&kid(4), "ks_a", None);
    add_key(store, &fresh).await;
    log = AuditLog::read(store).await;
    let clash = KeyRecord {
        key_id: kid(2),
        ..successor.clone()
    };
    let taken = store
        .rotate_key(
            &kid(4),
            &clash,
            at(65),
            Change::audited(&event("4", "key.rotate", &kid(4), Some("ks_a"), 7)),
        )
        .await;
    assert_eq!(conflict(taken), Conflict::DuplicateId);
    log.expect_none(store, "a rotation onto a taken id").await;
    assert_eq!(stored_key(store, &kid(4)).await, fresh);

    let audit = event("5", "key.revoke", &kid(2), Some("ks_a"), 7);
    store
        .revoke_key(&kid(2), at(7), None, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let revoked = store
        .rotate_key(
            &kid(2),
            &twin,
            at(65),
            Change::audited(&event("6", "key.rotate", &kid(2), Some("ks_a"), 8)),
        )
        .await;
    assert_eq!(conflict(revoked), Conflict::AlreadyRevoked);
    not_found(
        store
            .rotate_key(
                &kid(9),
                &twin,
                at(65),
                Change::audited(&event("7", "key.rotate", &kid(9), Some("ks_a"), 8)),
            )
            .await,
    );
    log.expect_none(store, "a refused rotation").await;
    assert_eq!(store.key_for_verify(&kid(3)).await.unwrap(), None);
}

/// `create_keys`: every key with its audit event, or none of them.
pub async fn batch_creation_is_all_or_nothing(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_b", "beta")).await;
    let audited = |key: &KeyRecord, n: i64| {
        event(
            &format!("aud_b{n}"),
            "key.create",
            &key.key_id,
            Some("ks_b"),
            n,
        )
    };
    let batch = [key(&kid(61), "ks_b", None), key(&kid(62), "ks_b", None)];
    let audits = [audited(&batch[0], 1), audited(&batch[1], 2)];
    store.create_keys(&batch, &audits, None).await.unwrap();
    for key in &batch {
        assert_eq!(&stored_key(store, &key.key_id).await, key);
    }
    let logged = audit_ids(store, AuditFilter::default()).await;
    assert!(logged.contains(&"evt_aud_b1".to_owned()) && logged.contains(&"evt_aud_b2".to_owned()));

    // A new key beside one whose id is taken: neither is stored, nor its audit event.
    let clash = [key(&kid(63), "ks_b", None), key(&kid(61), "ks_b", None)];
    let audits = [audited(&clash[0], 3), audited(&clash[1], 4)];
    let refused = store.create_keys(&clash, &audits, None).await;
    assert_eq!(conflict(refused), Conflict::DuplicateId);
    not_found(
        store
            .key_for_verify(&kid(63))
            .await
            .and_then(|k| k.ok_or(StoreError::NotFound)),
    );
    let logged = audit_ids(store, AuditFilter::default()).await;
    assert!(!logged.contains(&"evt_aud_b3".to_owned()), "{logged:?}");
}
