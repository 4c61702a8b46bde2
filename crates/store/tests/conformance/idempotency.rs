//! Idempotent responses: written in the mutation's transaction, or not at all.

use keyhaven_store::*;

use crate::support::*;

pub async fn idempotent_responses_share_the_transaction(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_keyspace(store, &keyspace("ks_empty", "empty")).await;
    add_owner(store, &owner("own_1", "cus_1")).await;
    let mut log = AuditLog::read(store).await;
    assert_eq!(
        store
            .idempotent_response("rk_actor1", "idem-1")
            .await
            .unwrap(),
        None
    );

    let saved = IdempotentResponse {
        actor: "rk_actor1".into(),
        idempotency_key: "idem-1".into(),
        request_hash: [3; 32],
        status: 201,
        sealed_response: vec![1, 2, 3, 4, 0, 255],
        created_at: at(0),
    };
    let k1 = key(&kid(1), "ks_a", Some("own_1"));
    let audit = event("1", "key.create", &kid(1), Some("ks_a"), 0);
    store
        .create_key(
            &k1,
            Change {
                audit: &audit,
                idempotency: Some(&saved),
            },
        )
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(
        store
            .idempotent_response("rk_actor1", "idem-1")
            .await
            .unwrap(),
        Some(saved.clone())
    );
    assert_eq!(
        store
            .idempotent_response("rk_actor2", "idem-1")
            .await
            .unwrap(),
        None,
        "keys are per actor"
    );
    assert_eq!(
        store
            .idempotent_response("rk_actor1", "idem-2")
            .await
            .unwrap(),
        None
    );

    // Any mutation that reuses (actor, key) is refused whole: no object, no change,
    // no audit event, and the stored response stays as it was.
    let reuse = IdempotentResponse {
        request_hash: [4; 32],
        status: 200,
        sealed_response: vec![9],
        created_at: at(1),
        ..saved.clone()
    };
    let audits: Vec<AuditEvent> = (0..10)
        .map(|i| event(&format!("refused_{i}"), "any.change", "t", None, 1))
        .collect();
    let with = |i: usize| Change {
        audit: &audits[i],
        idempotency: Some(&reuse),
    };
    let refusals: Vec<(&str, Result<(), StoreError>)> = vec![
        (
            "create_keyspace",
            store
                .create_keyspace(&keyspace("ks_b", "beta"), with(0))
                .await,
        ),
        (
            "update_keyspace",
            store
                .update_keyspace(
                    &Keyspace {
                        name: "changed".into(),
                        policy: KeyspacePolicy {
                            max_key_age: Some(60),
                            ..Default::default()
                        },
                        updated_at: at(1),
                        ..keyspace("ks_a", "alpha")
                    },
                    with(1),
                )
                .await,
        ),
        (
            "delete_keyspace",
            store.delete_keyspace("ks_empty", with(2)).await,
        ),
        (
            "create_owner",
            store.create_owner(&owner("own_2", "cus_2"), with(3)).await,
        ),
        (
            "update_owner",
            store
                .update_owner(&owner("own_1", "cus_changed"), QuotaWrite::Keep, with(4))
                .await,
        ),
        (
            "create_key",
            store.create_key(&key(&kid(2), "ks_a", None), with(5)).await,
        ),
        (
            "update_key",
            store
                .update_key(
                    &KeyRecord {
                        name: Some("changed".into()),
                        enabled: false,
                        ..k1.clone()
                    },
                    QuotaWrite::Keep,
                    with(6),
                )
                .await,
        ),
        (
            "revoke_key",
            store.revoke_key(&kid(1), at(1), Some("r"), with(7)).await,
        ),
        (
            "rotate_key",
            store
                .rotate_key(&kid(1), &key(&kid(3), "ks_a", None), at(60), with(8))
                .await,
        ),
        ("delete_key", store.delete_key(&kid(1), with(9)).await),
    ];
    for (what, result) in refusals {
        assert!(
            matches!(
                result,
                Err(StoreError::Conflict(Conflict::IdempotencyKeyTaken))
            ),
            "{what}: expected IdempotencyKeyTaken, got {result:?}"
        );
    }
    log.expect_none(store, "a mutation with a taken idempotency key")
        .await;
    assert_eq!(store.keyspace("ks_b").await.unwrap(), None);
    assert_eq!(
        store.keyspace("ks_a").await.unwrap(),
        Some(keyspace("ks_a", "alpha"))
    );
    assert_eq!(
        store.keyspace("ks_empty").await.unwrap(),
        Some(keyspace("ks_empty", "empty"))
    );
    assert_eq!(store.owner("own_2").await.unwrap(), None);
    assert_eq!(store.owner_by_external_id("cus_2").await.unwrap(), None);
    assert_eq!(
        store.owner("own_1").await.unwrap(),
        Some(owner("own_1", "cus_1"))
    );
    assert_eq!(
        stored_key(store, &kid(1)).await,
        k1,
        "not updated, revoked, rotated or deleted"
    );
    assert_eq!(store.key_for_verify(&kid(2)).await.unwrap(), None);
    assert_eq!(store.key_for_verify(&kid(3)).await.unwrap(), None);
    assert_eq!(
        store
            .idempotent_response("rk_actor1", "idem-1")
            .await
            .unwrap(),
        Some(saved.clone())
    );

    // The same key under another actor is another key.
    let other = IdempotentResponse {
        actor: "rk_actor2".into(),
        created_at: at(50),
        ..saved.clone()
    };
    let audit = event("2", "keyspace.create", "ks_b", Some("ks_b"), 50);
    store
        .create_keyspace(
            &keyspace("ks_b", "beta"),
            Change {
                audit: &audit,
                idempotency: Some(&other),
            },
        )
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let newer = IdempotentResponse {
        idempotency_key: "idem-2".into(),
        created_at: at(100),
        ..saved.clone()
    };
    let audit = event("3", "owner.create", "own_2", None, 100);
    store
        .create_owner(
            &owner("own_2", "cus_2"),
            Change {
                audit: &audit,
                idempotency: Some(&newer),
            },
        )
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    // Purging removes only responses created strictly before the cut-off.
    assert_eq!(store.purge_idempotency(at(50)).await.unwrap(), 1);
    assert_eq!(
        store
            .idempotent_response("rk_actor1", "idem-1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .idempotent_response("rk_actor2", "idem-1")
            .await
            .unwrap(),
        Some(other.clone())
    );
    assert_eq!(
        store
            .idempotent_response("rk_actor1", "idem-2")
            .await
            .unwrap(),
        Some(newer.clone())
    );
    assert_eq!(store.purge_idempotency(at(50)).await.unwrap(), 0);
    log.expect_none(store, "purging idempotency keys").await;
    // A purged key can be used again.
    let audit = event("4", "key.create", &kid(2), Some("ks_a"), 101);
    let again = IdempotentResponse {
        created_at: at(101),
        ..saved.clone()
    };
    store
        .create_key(
            &key(&kid(2), "ks_a", None),
            Change {
                audit: &audit,
                idempotency: Some(&again),
            },
        )
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(
        store
            .idempotent_response("rk_actor1", "idem-1")
            .await
            .unwrap(),
        Some(again)
    );
    assert_eq!(store.purge_idempotency(at(1000)).await.unwrap(), 3);
    assert_eq!(
        store
            .idempotent_response("rk_actor2", "idem-1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .idempotent_response("rk_actor1", "idem-2")
            .await
            .unwrap(),
        None
    );
}

/// Creations made at the same moment (on SQLite: queued together, so one group commit
/// holds them all): twins sharing an idempotency key, a key whose id is taken, and a
/// plain one. Each is answered for itself: one twin and the plain key are stored with
/// their audit events; the other twin and the taken id are refused, leaving nothing.
pub async fn concurrent_creations_are_answered_each_for_itself(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_g", "gamma")).await;
    let taken = key(&kid(71), "ks_g", None);
    let audit = event("g0", "key.create", &kid(71), Some("ks_g"), 0);
    store
        .create_key(&taken, Change::audited(&audit))
        .await
        .unwrap();
    let saved = IdempotentResponse {
        actor: "rk_actor1".into(),
        idempotency_key: "twins".into(),
        request_hash: [7; 32],
        status: 201,
        sealed_response: vec![7],
        created_at: at(0),
    };
    let (twin_a, twin_b, plain) = (
        key(&kid(72), "ks_g", None),
        key(&kid(73), "ks_g", None),
        key(&kid(74), "ks_g", None),
    );
    let audits = [
        event("g1", "key.create", &kid(72), Some("ks_g"), 1),
        event("g2", "key.create", &kid(73), Some("ks_g"), 1),
        event("g3", "key.create", &kid(71), Some("ks_g"), 1),
        event("g4", "key.create", &kid(74), Some("ks_g"), 1),
    ];
    let with_saved = |audit| Change {
        audit,
        idempotency: Some(&saved),
    };
    // Polled in turn on this task: every one is queued before any is written.
    let (a, b, clash, lone) = tokio::join!(
        store.create_key(&twin_a, with_saved(&audits[0])),
        store.create_key(&twin_b, with_saved(&audits[1])),
        store.create_key(&taken, Change::audited(&audits[2])),
        store.create_key(&plain, Change::audited(&audits[3])),
    );
    let twins = [a, b];
    assert_eq!(
        twins.iter().filter(|r| r.is_ok()).count(),
        1,
        "one twin wins: {twins:?}"
    );
    let lost = twins.into_iter().find(|r| r.is_err()).unwrap();
    assert_eq!(conflict(lost), Conflict::IdempotencyKeyTaken);
    assert_eq!(conflict(clash), Conflict::DuplicateId);
    lone.unwrap();
    let mut found = 0;
    for twin in [&twin_a, &twin_b] {
        if store.key_for_verify(&twin.key_id).await.unwrap().is_some() {
            found += 1;
        }
    }
    assert_eq!(found, 1, "only the winning twin is stored");
    assert!(store.key_for_verify(&plain.key_id).await.unwrap().is_some());
    let logged = audit_ids(store, AuditFilter::default()).await;
    assert!(logged.contains(&"evt_g4".to_owned()), "{logged:?}");
    assert!(!logged.contains(&"evt_g3".to_owned()), "{logged:?}");
    let twin_events = ["evt_g1", "evt_g2"]
        .iter()
        .filter(|id| logged.contains(&(**id).to_owned()))
        .count();
    assert_eq!(twin_events, 1, "{logged:?}");
}

/// A creation whose caller went away before it was written (its future dropped after
/// one poll, queued for SQLite's group commit) is never stored; one made after it is.
pub async fn a_creation_nobody_waits_for_is_not_written(store: &dyn Store) {
    use std::future::Future as _;
    add_keyspace(store, &keyspace("ks_d", "delta")).await;
    let (gone, kept) = (key(&kid(81), "ks_d", None), key(&kid(82), "ks_d", None));
    let audits = [
        event("d1", "key.create", &kid(81), Some("ks_d"), 1),
        event("d2", "key.create", &kid(82), Some("ks_d"), 1),
    ];
    let mut abandoned = Box::pin(store.create_key(&gone, Change::audited(&audits[0])));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(abandoned.as_mut().poll(&mut context).is_pending());
    drop(abandoned);
    store
        .create_key(&kept, Change::audited(&audits[1]))
        .await
        .unwrap();
    assert!(store.key_for_verify(&kid(82)).await.unwrap().is_some());
    assert!(store.key_for_verify(&kid(81)).await.unwrap().is_none());
    let logged = audit_ids(store, AuditFilter::default()).await;
    assert!(!logged.contains(&"evt_d1".to_owned()), "{logged:?}");
}
