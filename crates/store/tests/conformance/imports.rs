//! Imported keys and pepper versions: taken import lookups are skipped, and the pepper
//! versions in use are counted.

use keyhaven_core::{PepperVersion, Verifier};
use keyhaven_store::*;
use serde_json::json;

use crate::support::*;

pub async fn imports_skip_taken_lookups(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_key(store, &key(&kid(9), "ks_a", None)).await;
    let mut log = AuditLog::read(store).await;
    assert!(!store.has_imported_keys().await.unwrap());

    let k1 = imported_key(kid(1), "ks_a", "lookup-a");
    let k2 = imported_key(kid(2), "ks_a", "lookup-b");
    let audit = event("1", "key.import", "ks_a", Some("ks_a"), 1);
    assert_eq!(
        store
            .import_keys(&[k1.clone(), k2.clone()], &audit)
            .await
            .unwrap(),
        [true, true]
    );
    let mut expected = audit.clone();
    expected.changes.insert("imported".into(), json!(2));
    expected
        .changes
        .insert("key_ids".into(), json!([kid(1), kid(2)]));
    log.expect_one(store, &expected).await;
    assert!(store.has_imported_keys().await.unwrap());
    assert_eq!(stored_key(store, &kid(1)).await, k1);
    assert_eq!(
        store.key_id_by_import_lookup("lookup-b").await.unwrap(),
        Some(kid(2))
    );
    assert_eq!(
        store.key_id_by_import_lookup("lookup-z").await.unwrap(),
        None
    );

    // A re-run skips what is stored and imports the rest.
    let k3 = imported_key(kid(3), "ks_a", "lookup-a");
    let k4 = imported_key(kid(4), "ks_a", "lookup-c");
    let audit = event("2", "key.import", "ks_a", Some("ks_a"), 2);
    assert_eq!(
        store.import_keys(&[k3, k4.clone()], &audit).await.unwrap(),
        [false, true]
    );
    let mut expected = audit.clone();
    expected.changes.insert("imported".into(), json!(1));
    expected.changes.insert("key_ids".into(), json!([kid(4)]));
    log.expect_one(store, &expected).await;
    assert_eq!(store.key_for_verify(&kid(3)).await.unwrap(), None);
    assert_eq!(
        store.key_id_by_import_lookup("lookup-a").await.unwrap(),
        Some(kid(1))
    );
    assert_eq!(
        key_ids(store, &KeyFilter::default(), 10).await,
        [kid(4), kid(2), kid(1), kid(9)]
    );

    // An import into a missing keyspace fails whole.
    let lost = imported_key(kid(5), "ks_nope", "lookup-d");
    let fine = imported_key(kid(6), "ks_a", "lookup-e");
    let refused = store
        .import_keys(&[fine, lost], &event("3", "key.import", "ks_nope", None, 3))
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Conflict(Conflict::MissingReference))
        ),
        "got {refused:?}"
    );
    log.expect_none(store, "a failed import").await;
    assert_eq!(store.key_for_verify(&kid(6)).await.unwrap(), None);

    // The first verify moves a key to the native verifier, once.
    let native = Verifier::from_parts(PepperVersion::new(2).unwrap(), [2; 32]);
    assert!(store.complete_import(&kid(1), &native).await.unwrap());
    let done = stored_key(store, &kid(1)).await;
    assert_eq!(
        done,
        KeyRecord {
            verifier: native.clone(),
            import: Some(Import {
                digest: None,
                ..k1.import.clone().unwrap()
            }),
            ..k1.clone()
        }
    );
    let other = Verifier::from_parts(PepperVersion::new(3).unwrap(), [3; 32]);
    assert!(!store.complete_import(&kid(1), &other).await.unwrap());
    assert_eq!(stored_key(store, &kid(1)).await.verifier, native);
    assert!(
        !store.complete_import(&kid(9), &other).await.unwrap(),
        "not imported"
    );
    assert_eq!(stored_key(store, &kid(9)).await.verifier, verifier(7));
    assert!(
        !store.complete_import(&kid(8), &other).await.unwrap(),
        "missing"
    );
    assert_eq!(
        store.key_id_by_import_lookup("lookup-a").await.unwrap(),
        Some(kid(1)),
        "still found by its lookup"
    );
    log.expect_none(store, "completing an import").await;
}

pub async fn pepper_versions_in_use(store: &dyn Store) {
    store.ping().await.unwrap();
    assert!(store.pepper_versions().await.unwrap().is_empty());
    assert!(store.pepper_version_counts().await.unwrap().is_empty());
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    let mut k3 = key(&kid(3), "ks_a", None);
    k3.verifier = Verifier::from_parts(PepperVersion::new(3).unwrap(), [9; 32]);
    add_key(store, &key(&kid(1), "ks_a", None)).await;
    add_key(store, &k3).await;
    let mut root = key(&kid(4), ROOT_KEYSPACE_ID, None);
    root.verifier = Verifier::from_parts(PepperVersion::new(3).unwrap(), [4; 32]);
    add_key(store, &root).await;
    assert_eq!(
        store.pepper_versions().await.unwrap(),
        vec![1, 3],
        "root keys count too"
    );
    assert_eq!(
        store.pepper_version_counts().await.unwrap(),
        vec![(1, 1), (3, 2)]
    );
    let v3 = Verifier::from_parts(PepperVersion::new(3).unwrap(), [5; 32]);
    assert!(store.rehash_key(&kid(1), 1, &v3).await.unwrap());
    assert!(
        !store.rehash_key(&kid(1), 1, &v3).await.unwrap(),
        "only from the stated version"
    );
    assert!(!store.rehash_key(&kid(8), 1, &v3).await.unwrap());
    assert_eq!(stored_key(store, &kid(1)).await.verifier, v3);
    assert_eq!(store.pepper_versions().await.unwrap(), vec![3]);
    assert_eq!(store.pepper_version_counts().await.unwrap(), vec![(3, 3)]);
    assert_eq!(stored_key(store, &kid(3)).await.verifier, k3.verifier);
    store.migrate().await.unwrap(); // idempotent
    assert_eq!(
        stored_key(store, &kid(3)).await,
        k3,
        "migrating again keeps the data"
    );
}
