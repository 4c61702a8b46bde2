//! Leaked keys: each key's first report acts on it with its audit event and
//! `key.leaked` event in one transaction per batch; repeats write nothing; signed
//! batches are remembered until purged; keyspaces keep their leak policy.

use keyhaven_store::*;

use crate::support::*;

fn leak(key_id: &str, action: LeakAction, n: i64) -> LeakWrite {
    LeakWrite {
        key_id: key_id.to_owned(),
        source: "github".into(),
        url: Some(format!("https://github.com/o/r/blob/x/f{n}")),
        action,
        reason: "leaked: reported by github".into(),
        at: at(n),
        audit: event(&format!("leak{n}"), "key.leak", key_id, Some("ks_a"), n),
    }
}

pub async fn leaks_act_once_with_their_events(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    for n in 1..=4 {
        add_key(store, &key(&kid(n), "ks_a", None)).await;
    }
    // Many keys read at once: those that exist, whatever the order asked.
    let mut read: Vec<String> = (store.keys_for_verify(&[kid(3), "nope".into(), kid(1)]))
        .await
        .unwrap()
        .into_iter()
        .map(|k| {
            assert_eq!(k.keyspace_prefix, "alpha");
            k.key.key_id
        })
        .collect();
    read.sort();
    let mut expected = vec![kid(1), kid(3)];
    expected.sort();
    assert_eq!(read, expected);
    assert!(store.keys_for_verify(&[]).await.unwrap().is_empty());
    let mut log = AuditLog::read(store).await;
    let digest = [7u8; 32];
    assert!(!store.leak_batch_seen(&digest).await.unwrap());
    let writes = [
        leak(&kid(1), LeakAction::Revoked, 10),
        leak(&kid(2), LeakAction::Disabled, 11),
        leak(&kid(3), LeakAction::Notified, 12),
    ];
    let recorded = store
        .record_leaks(
            &writes,
            Some(SeenBatch {
                digest: &digest,
                at: at(20),
            }),
        )
        .await
        .unwrap();
    assert_eq!(recorded, [true, true, true]);
    assert!(store.leak_batch_seen(&digest).await.unwrap());
    let revoked = stored_key(store, &kid(1)).await;
    assert_eq!(revoked.revoked_at, Some(at(10)));
    assert_eq!(
        revoked.revoked_reason.as_deref(),
        Some("leaked: reported by github")
    );
    assert!(revoked.enabled);
    let disabled = stored_key(store, &kid(2)).await;
    assert!(!disabled.enabled);
    assert_eq!(disabled.revoked_at, None);
    assert_eq!(stored_key(store, &kid(3)).await, key(&kid(3), "ks_a", None));
    assert_eq!(stored_key(store, &kid(4)).await, key(&kid(4), "ks_a", None));
    let audit = audit_events(store, &AuditFilter::default()).await;
    assert_eq!(audit.len(), log.seen.len() + 3, "one audit event per leak");
    for write in &writes {
        assert!(audit.contains(&write.audit), "{}", write.key_id);
    }
    log.seen = audit;
    let leaked = events(store, &kind("key.leaked")).await;
    assert_eq!(leaked.len(), 3);
    let mut leaked_ids: Vec<_> = leaked.iter().filter_map(|e| e.key_id.clone()).collect();
    leaked_ids.sort();
    let mut expected = vec![kid(1), kid(2), kid(3)];
    expected.sort();
    assert_eq!(leaked_ids, expected);

    // A repeat that finds nothing to stop changes nothing; a new key in the same batch
    // is recorded; a key named twice is recorded once.
    let again = store
        .record_leaks(
            &[
                leak(&kid(1), LeakAction::Unchanged, 30),
                leak(&kid(3), LeakAction::Notified, 31),
                leak(&kid(4), LeakAction::Revoked, 32),
                leak(&kid(4), LeakAction::Revoked, 33),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(again, [false, false, true, false]);
    assert_eq!(stored_key(store, &kid(1)).await.revoked_at, Some(at(10)));
    assert_eq!(stored_key(store, &kid(4)).await.revoked_at, Some(at(32)));
    assert_eq!(events(store, &kind("key.leaked")).await.len(), 4);
    let audit = audit_events(store, &AuditFilter::default()).await;
    assert_eq!(
        audit.len(),
        log.seen.len() + 1,
        "repeats wrote no audit event"
    );

    // A key enabled again after its leak disabled it is stopped by the next report.
    let mut enabled = stored_key(store, &kid(2)).await;
    enabled.enabled = true;
    store
        .update_key(
            &enabled,
            QuotaWrite::Keep,
            Change::audited(&event("enable", "key.update", &kid(2), Some("ks_a"), 40)),
        )
        .await
        .unwrap();
    let disabled_again = store
        .record_leaks(&[leak(&kid(2), LeakAction::Disabled, 41)], None)
        .await
        .unwrap();
    assert_eq!(disabled_again, [true]);
    assert!(!stored_key(store, &kid(2)).await.enabled);
    assert_eq!(events(store, &kind("key.leaked")).await.len(), 5);

    assert_eq!(store.purge_leak_batches(at(20)).await.unwrap(), 0);
    assert_eq!(store.purge_leak_batches(at(21)).await.unwrap(), 1);
    assert!(!store.leak_batch_seen(&digest).await.unwrap());
}

pub async fn keyspace_leak_policy_round_trips(store: &dyn Store) {
    let mut ks = keyspace("ks_a", "alpha");
    assert_eq!(ks.leak_policy, LeakPolicy::Revoke);
    ks.leak_policy = LeakPolicy::Notify;
    add_keyspace(store, &ks).await;
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(ks.clone()));
    ks.leak_policy = LeakPolicy::Disable;
    store
        .update_keyspace(
            &ks,
            Change::audited(&event("u", "keyspace.update", "ks_a", Some("ks_a"), 1)),
        )
        .await
        .unwrap();
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(ks));
}
