//! IP allowlists on keys, owners and keyspaces: stored in canonical form, changed and
//! removed by updates, and read with the key for verification.

use keyhaven_core::IpAllowlist;
use keyhaven_store::*;

use crate::support::*;

fn list(entries: &[&str]) -> Option<IpAllowlist> {
    IpAllowlist::parse(entries).unwrap()
}

pub async fn ip_allowlists_round_trip_and_reach_verification(store: &dyn Store) {
    let mut ks = keyspace("ks_a", "alpha");
    ks.ip_allowlist = list(&["10.0.0.0/8", "::ffff:10.0.0.0/104"]);
    add_keyspace(store, &ks).await;
    let mut owner = owner("own_1", "cus_1");
    owner.ip_allowlist = list(&["10.1.0.0/16"]);
    add_owner(store, &owner).await;
    let mut k = key(&kid(1), "ks_a", Some("own_1"));
    k.ip_allowlist = list(&["10.1.2.3", "2001:db8::7"]);
    add_key(store, &k).await;

    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(ks.clone()));
    assert_eq!(store.owner("own_1").await.unwrap(), Some(owner.clone()));
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.key, k);
    assert_eq!(found.owner_ip_allowlist, owner.ip_allowlist);
    assert_eq!(found.keyspace_ip_allowlist, ks.ip_allowlist);
    assert_eq!(
        found.key.ip_allowlist.as_ref().unwrap().entries(),
        ["10.1.2.3/32", "2001:db8::7/128"]
    );

    // Changed on each, then removed: each read sees the write.
    ks.ip_allowlist = list(&["0.0.0.0/0"]);
    let change = event("u1", "keyspace.update", "ks_a", Some("ks_a"), 1);
    (store.update_keyspace(&ks, Change::audited(&change)).await).unwrap();
    owner.ip_allowlist = None;
    let change = event("u2", "owner.update", "own_1", None, 2);
    (store
        .update_owner(&owner, QuotaWrite::Keep, Change::audited(&change))
        .await)
        .unwrap();
    k.ip_allowlist = None;
    let change = event("u3", "key.update", &kid(1), Some("ks_a"), 3);
    (store
        .update_key(&k, QuotaWrite::Keep, Change::audited(&change))
        .await)
        .unwrap();
    let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
    assert_eq!(found.key.ip_allowlist, None);
    assert_eq!(found.owner_ip_allowlist, None);
    assert_eq!(found.keyspace_ip_allowlist, list(&["0.0.0.0/0"]));
    assert_eq!(store.keyspace("ks_a").await.unwrap(), Some(ks));
    assert_eq!(store.owner("own_1").await.unwrap(), Some(owner));
}
