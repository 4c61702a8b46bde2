//! Keyspaces: their life cycle, the invisible root keyspace, unique prefixes and ids,
//! and scoped, paginated listings.

use keyhaven_store::*;

use crate::support::*;

pub async fn keyspace_crud(store: &dyn Store) {
    // The readiness write check changes nothing, not even the audit log.
    store.check_writable().await.unwrap();
    let mut log = AuditLog::read(store).await;
    assert!(keyspace_ids(store, None, 10).await.is_empty());

    let ks = keyspace("ks_a", "alpha");
    let audit = event("1", "keyspace.create", "ks_a", Some("ks_a"), 0);
    store
        .create_keyspace(&ks, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(ks.clone()));
    assert_eq!(store.keyspace("ks_missing").await.unwrap(), None);
    let listed = store.list_keyspaces(None, first(10)).await.unwrap();
    assert_eq!((listed.items, listed.next), (vec![ks.clone()], None));

    let mut renamed = ks.clone();
    renamed.name = "renamed".into();
    renamed.policy = KeyspacePolicy {
        max_key_age: Some(86_400),
        default_grace: Some(600),
        expiry_warning: Some(3600),
        // Round-trips too.
        secret_length: keyhaven_core::SecretLength::Long,
        token_max_ttl: Some(300),
    };
    renamed.updated_at = at(5);
    let audit = event("2", "keyspace.update", "ks_a", Some("ks_a"), 5);
    store
        .update_keyspace(&renamed, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(renamed.clone()));
    assert_eq!(
        store.list_keyspaces(None, first(10)).await.unwrap().items,
        vec![renamed.clone()]
    );
    // Policies can be cleared again.
    let mut cleared = renamed.clone();
    cleared.policy = KeyspacePolicy::default();
    cleared.updated_at = at(6);
    let audit = event("3", "keyspace.update", "ks_a", Some("ks_a"), 6);
    store
        .update_keyspace(&cleared, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(cleared));

    let ghost = keyspace("ks_ghost", "ghost");
    not_found(
        store
            .update_keyspace(
                &ghost,
                Change::audited(&event("4", "keyspace.update", "ks_ghost", None, 6)),
            )
            .await,
    );
    log.expect_none(store, "updating a missing keyspace").await;
    assert_eq!(
        store.keyspace("ks_ghost").await.unwrap(),
        None,
        "update never inserts"
    );

    let audit = event("5", "keyspace.delete", "ks_a", Some("ks_a"), 7);
    store
        .delete_keyspace("ks_a", Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.keyspace("ks_a").await.unwrap(), None);
    assert!(keyspace_ids(store, None, 10).await.is_empty());
    not_found(
        store
            .delete_keyspace(
                "ks_a",
                Change::audited(&event("6", "keyspace.delete", "ks_a", None, 8)),
            )
            .await,
    );
    log.expect_none(store, "deleting a missing keyspace").await;

    // A deleted keyspace's prefix is free again.
    let audit = event("7", "keyspace.create", "ks_b", Some("ks_b"), 9);
    store
        .create_keyspace(&keyspace("ks_b", "alpha"), Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
}

pub async fn root_keyspace_is_invisible(store: &dyn Store) {
    let root_only = vec![ROOT_KEYSPACE_ID.to_owned()];
    assert_eq!(store.keyspace(ROOT_KEYSPACE_ID).await.unwrap(), None);
    assert!(keyspace_ids(store, None, 100).await.is_empty());
    assert!(keyspace_ids(store, Some(&root_only), 100).await.is_empty());
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    let mut log = AuditLog::read(store).await;
    assert_eq!(keyspace_ids(store, None, 100).await, ["ks_a"]);

    not_found(
        store
            .update_keyspace(
                &keyspace(ROOT_KEYSPACE_ID, ROOT_PREFIX),
                Change::audited(&event("1", "keyspace.update", ROOT_KEYSPACE_ID, None, 0)),
            )
            .await,
    );
    log.expect_none(store, "updating the root keyspace").await;

    // Root keys live in the reserved keyspace.
    assert_eq!(store.count_root_keys().await.unwrap(), 0);
    let mut limited = key(&kid(1), ROOT_KEYSPACE_ID, None);
    limited.scopes = vec!["keys:read".into(), "keys:verify".into()];
    limited.allowed_keyspaces = Some(vec!["ks_a".into(), "ks_b".into()]);
    let audit = event("2", "root_key.create", &kid(1), None, 0);
    store
        .create_key(&limited, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let mut everything = key(&kid(2), ROOT_KEYSPACE_ID, None);
    everything.allowed_keyspaces = None;
    let audit = event("3", "root_key.create", &kid(2), None, 0);
    store
        .create_key(&everything, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.count_root_keys().await.unwrap(), 2);
    add_key(store, &key(&kid(3), "ks_a", None)).await;
    log = AuditLog::read(store).await;
    assert_eq!(
        store.count_root_keys().await.unwrap(),
        2,
        "ordinary keys are not root keys"
    );

    // Still invisible, and still absent for deletion, now that it holds keys.
    assert_eq!(store.keyspace(ROOT_KEYSPACE_ID).await.unwrap(), None);
    not_found(
        store
            .delete_keyspace(
                ROOT_KEYSPACE_ID,
                Change::audited(&event("4", "keyspace.delete", ROOT_KEYSPACE_ID, None, 0)),
            )
            .await,
    );
    log.expect_none(store, "deleting the root keyspace").await;
    assert!(keyspace_ids(store, Some(&root_only), 100).await.is_empty());

    // Root keys never show up in key lists, however the list is filtered.
    assert_eq!(key_ids(store, &KeyFilter::default(), 100).await, [kid(3)]);
    let by_visible = KeyFilter {
        visible: Some(&root_only),
        ..Default::default()
    };
    assert!(key_ids(store, &by_visible, 100).await.is_empty());
    let by_keyspace = KeyFilter {
        keyspace_id: Some(ROOT_KEYSPACE_ID),
        ..Default::default()
    };
    assert!(key_ids(store, &by_keyspace, 100).await.is_empty());

    // But they verify like any key, with the reserved prefix.
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.key, limited);
    assert_eq!(found.keyspace_prefix, ROOT_PREFIX);
    assert_eq!(found.owner_external_id, None);
    assert_eq!(stored_key(store, &kid(2)).await, everything);

    let audit = event("5", "root_key.delete", &kid(2), None, 1);
    store
        .delete_key(&kid(2), Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.count_root_keys().await.unwrap(), 1);
}

pub async fn prefixes_are_unique(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    let log = AuditLog::read(store).await;
    let dup = store
        .create_keyspace(
            &keyspace("ks_b", "alpha"),
            Change::audited(&event("1", "keyspace.create", "ks_b", Some("ks_b"), 0)),
        )
        .await;
    assert_eq!(conflict(dup), Conflict::PrefixTaken);
    log.expect_none(store, "a keyspace with a taken prefix")
        .await;
    assert_eq!(store.keyspace("ks_b").await.unwrap(), None);

    let reserved = store
        .create_keyspace(
            &keyspace("ks_c", ROOT_PREFIX),
            Change::audited(&event("2", "keyspace.create", "ks_c", Some("ks_c"), 0)),
        )
        .await;
    assert_eq!(
        conflict(reserved),
        Conflict::PrefixTaken,
        "the root prefix is taken"
    );
    log.expect_none(store, "a keyspace with the root prefix")
        .await;
    assert_eq!(store.keyspace("ks_c").await.unwrap(), None);
    assert_eq!(keyspace_ids(store, None, 10).await, ["ks_a"]);
}

pub async fn ids_are_unique(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_owner(store, &owner("own_1", "cus_1")).await;
    add_key(store, &key(&kid(1), "ks_a", None)).await;
    let log = AuditLog::read(store).await;

    let again = store
        .create_keyspace(
            &keyspace("ks_a", "beta"),
            Change::audited(&event("1", "keyspace.create", "ks_a", Some("ks_a"), 1)),
        )
        .await;
    assert_eq!(conflict(again), Conflict::DuplicateId);
    let root = store
        .create_keyspace(
            &keyspace(ROOT_KEYSPACE_ID, "gamma"),
            Change::audited(&event("2", "keyspace.create", ROOT_KEYSPACE_ID, None, 1)),
        )
        .await;
    assert_eq!(conflict(root), Conflict::DuplicateId);
    let again = store
        .create_owner(
            &owner("own_1", "cus_2"),
            Change::audited(&event("3", "owner.create", "own_1", None, 1)),
        )
        .await;
    assert_eq!(conflict(again), Conflict::DuplicateId);
    let mut twin = key(&kid(1), "ks_a", None);
    twin.verifier = verifier(8);
    let again = store
        .create_key(
            &twin,
            Change::audited(&event("4", "key.create", &kid(1), Some("ks_a"), 1)),
        )
        .await;
    assert_eq!(conflict(again), Conflict::DuplicateId);
    log.expect_none(store, "an object with a taken id").await;

    assert_eq!(
        store.keyspace("ks_a").await.unwrap(),
        Some(keyspace("ks_a", "alpha"))
    );
    assert_eq!(
        store.owner("own_1").await.unwrap(),
        Some(owner("own_1", "cus_1"))
    );
    assert_eq!(store.owner_by_external_id("cus_2").await.unwrap(), None);
    assert_eq!(stored_key(store, &kid(1)).await.verifier, verifier(7));
    // Nothing of the refused objects was kept: their prefix and external id are free.
    add_keyspace(store, &keyspace("ks_b", "beta")).await;
    add_owner(store, &owner("own_2", "cus_2")).await;
}

pub async fn keyspace_list_scopes_and_pages(store: &dyn Store) {
    for i in 0..5 {
        add_keyspace(store, &keyspace(&format!("ks_{i}"), &format!("p{i}"))).await;
    }
    let expected = ["ks_4", "ks_3", "ks_2", "ks_1", "ks_0"];
    for limit in [1, 2, 4, 5, 6] {
        let ids = keyspace_ids(store, None, limit).await;
        assert_eq!(ids, expected, "limit {limit}");
    }
    assert_eq!(
        store.list_keyspaces(None, first(2)).await.unwrap().items[0],
        keyspace("ks_4", "p4"),
        "listed keyspaces are whole records"
    );

    let visible = vec!["ks_1".to_owned(), "ks_3".to_owned(), "ks_9".to_owned()];
    let ids = keyspace_ids(store, Some(&visible), 1).await;
    assert_eq!(ids, ["ks_3", "ks_1"]);
    let none: Vec<String> = Vec::new();
    assert!(keyspace_ids(store, Some(&none), 10).await.is_empty());
}
