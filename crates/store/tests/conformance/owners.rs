//! Owners: their life cycle and unique external ids.

use keyhaven_store::*;
use serde_json::json;

use crate::support::*;

pub async fn owners_crud_and_external_ids(store: &dyn Store) {
    let mut log = AuditLog::read(store).await;
    let o = owner("own_1", "cus_1");
    let audit = event("1", "owner.create", "own_1", None, 0);
    store
        .create_owner(&o, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.owner("own_1").await.unwrap(), Some(o.clone()));
    assert_eq!(store.owner("own_missing").await.unwrap(), None);
    assert_eq!(
        store.owner_by_external_id("cus_1").await.unwrap(),
        Some(o.clone())
    );
    assert_eq!(store.owner_by_external_id("cus_2").await.unwrap(), None);

    let dup = store
        .create_owner(
            &owner("own_2", "cus_1"),
            Change::audited(&event("2", "owner.create", "own_2", None, 0)),
        )
        .await;
    assert_eq!(conflict(dup), Conflict::ExternalIdTaken);
    log.expect_none(store, "an owner with a taken external id")
        .await;
    assert_eq!(store.owner("own_2").await.unwrap(), None);

    let three = owner("own_3", "cus_3");
    let audit = event("3", "owner.create", "own_3", None, 0);
    store
        .create_owner(&three, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;

    // Updating onto another owner's external id conflicts and changes nothing.
    let mut taken = three.clone();
    taken.external_id = "cus_1".into();
    taken.name = Some("changed".into());
    taken.updated_at = at(1);
    let clash = store
        .update_owner(
            &taken,
            QuotaWrite::Keep,
            Change::audited(&event("4", "owner.update", "own_3", None, 1)),
        )
        .await;
    assert_eq!(conflict(clash), Conflict::ExternalIdTaken);
    log.expect_none(store, "an update onto a taken external id")
        .await;
    assert_eq!(store.owner("own_3").await.unwrap(), Some(three.clone()));
    assert_eq!(
        store.owner_by_external_id("cus_1").await.unwrap(),
        Some(o.clone())
    );

    // Keeping one's own external id is no conflict.
    let mut same = three.clone();
    same.name = Some("Same id".into());
    same.updated_at = at(2);
    let audit = event("5", "owner.update", "own_3", None, 2);
    store
        .update_owner(&same, QuotaWrite::Keep, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.owner("own_3").await.unwrap(), Some(same));

    let mut changed = owner("own_3", "cus_33");
    changed.name = None;
    changed.meta = obj(json!({"tier": 2, "tags": ["a", "b"], "nested": {"x": null}}));
    changed.updated_at = at(3);
    let audit = event("6", "owner.update", "own_3", None, 3);
    store
        .update_owner(&changed, QuotaWrite::Keep, Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.owner("own_3").await.unwrap(), Some(changed.clone()));
    assert_eq!(
        store.owner_by_external_id("cus_33").await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(
        store.owner_by_external_id("cus_3").await.unwrap(),
        None,
        "old id released"
    );

    not_found(
        store
            .update_owner(
                &owner("own_9", "cus_9"),
                QuotaWrite::Keep,
                Change::audited(&event("7", "owner.update", "own_9", None, 3)),
            )
            .await,
    );
    log.expect_none(store, "updating a missing owner").await;
    assert_eq!(
        store.owner("own_9").await.unwrap(),
        None,
        "update never inserts"
    );

    let owners: Vec<_> = all_pages(1, |page| store.list_owners(page))
        .await
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(owners, ["own_3", "own_1"]);
    assert_eq!(
        store.list_owners(first(10)).await.unwrap().items,
        vec![changed, o.clone()]
    );

    // An owner with keys stays.
    add_keyspace(store, &keyspace("ks_a", "alpha")).await;
    add_key(store, &key(&kid(1), "ks_a", Some("own_1"))).await;
    log = AuditLog::read(store).await;
    let busy = store
        .delete_owner(
            "own_1",
            Change::audited(&event("8", "owner.delete", "own_1", None, 4)),
        )
        .await;
    assert_eq!(conflict(busy), Conflict::OwnerHasKeys);
    log.expect_none(store, "deleting an owner with keys").await;
    assert_eq!(store.owner("own_1").await.unwrap(), Some(o));

    let audit = event("9", "owner.delete", "own_3", None, 4);
    store
        .delete_owner("own_3", Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert_eq!(store.owner("own_3").await.unwrap(), None);
    assert_eq!(store.owner_by_external_id("cus_33").await.unwrap(), None);
    not_found(
        store
            .delete_owner(
                "own_3",
                Change::audited(&event("10", "owner.delete", "own_3", None, 5)),
            )
            .await,
    );
    log.expect_none(store, "deleting a missing owner").await;

    // Once its keys are gone, so can the owner be.
    let audit = event("11", "key.delete", &kid(1), Some("ks_a"), 6);
    store
        .delete_key(&kid(1), Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    let audit = event("12", "owner.delete", "own_1", None, 6);
    store
        .delete_owner("own_1", Change::audited(&audit))
        .await
        .unwrap();
    log.expect_one(store, &audit).await;
    assert!(store.list_owners(first(10)).await.unwrap().items.is_empty());
}
