//! Roles: stored per keyspace, unique by name, and resolved into a key's permissions
//! (its own, its owner's, and those of the roles either names in the key's keyspace)
//! whenever the key is read for verification.

use keyhaven_store::*;

use crate::support::*;

fn role(keyspace_id: &str, name: &str, permissions: &[&str]) -> Role {
    Role {
        keyspace_id: keyspace_id.into(),
        name: name.into(),
        description: Some(format!("the {name} role")),
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        created_at: T0,
        updated_at: T0,
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

pub async fn roles_resolve_into_a_keys_permissions(store: &dyn Store) {
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_keyspace(store, &keyspace("ks_b", "beta")).await;
    let audit = |n: i64| event(&format!("r{n}"), "role.create", "role", Some("ks_a"), n);
    let reader = role("ks_a", "reader", &["docs.read"]);
    store
        .create_role(&reader, Change::audited(&audit(1)))
        .await
        .unwrap();
    store
        .create_role(
            &role("ks_a", "billing", &["billing.view", "docs.read"]),
            Change::audited(&audit(2)),
        )
        .await
        .unwrap();
    // The same name in another keyspace is another role.
    store
        .create_role(
            &role("ks_b", "reader", &["other.thing"]),
            Change::audited(&audit(3)),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.create_role(&reader, Change::audited(&audit(4))).await,
        Err(StoreError::Conflict(Conflict::RoleTaken))
    ));
    assert_eq!(
        store.role("ks_a", "reader").await.unwrap(),
        Some(reader.clone())
    );
    let listed: Vec<String> = (store.list_roles("ks_a").await.unwrap().into_iter())
        .map(|r| r.name)
        .collect();
    assert_eq!(listed, ["billing", "reader"]);

    let mut owner = owner("own_1", "cus_1");
    owner.grants = Grants {
        plan: None,
        roles: names(&["billing"]),
        permissions: names(&["owner.direct"]),
    };
    add_owner(store, &owner).await;
    let mut k = key(&kid(1), "ks_a", Some("own_1"));
    k.grants = Grants {
        plan: None,
        roles: names(&["reader", "gone"]),
        permissions: names(&["key.direct"]),
    };
    add_key(store, &k).await;
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.key.grants, k.grants);
    assert_eq!(
        found.permissions,
        names(&["billing.view", "docs.read", "key.direct", "owner.direct"])
    );
    let batch = store.keys_for_verify(&[kid(1)]).await.unwrap();
    assert_eq!(batch[0].permissions, found.permissions);

    // A role changed, then deleted: the next read follows.
    let mut changed = reader.clone();
    changed.permissions = names(&["docs.write"]);
    let audit = event("u", "role.update", "role", Some("ks_a"), 5);
    store
        .update_role(&changed, Change::audited(&audit))
        .await
        .unwrap();
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert!(found.permissions.contains(&"docs.write".to_owned()));
    let audit = event("d", "role.delete", "role", Some("ks_a"), 6);
    store
        .delete_role("ks_a", "billing", Change::audited(&audit))
        .await
        .unwrap();
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(
        found.permissions,
        names(&["docs.write", "key.direct", "owner.direct"])
    );
    let audit = event("d2", "role.delete", "role", Some("ks_a"), 7);
    assert!(matches!(
        store
            .delete_role("ks_a", "billing", Change::audited(&audit))
            .await,
        Err(StoreError::NotFound)
    ));

    // Deleting a keyspace takes its roles with it.
    let audit = event("k", "keyspace.delete", "ks_b", Some("ks_b"), 8);
    store
        .delete_keyspace("ks_b", Change::audited(&audit))
        .await
        .unwrap();
    assert_eq!(store.list_roles("ks_b").await.unwrap(), []);
}
