#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The store conformance suite: what every engine behind `Store` must do.
//!
//! Each check in [`checks`] takes `&dyn Store` only, starts from a fresh, empty store
//! and never calls anything engine-specific, so a new engine runs the very same suite by
//! adding one line: `conformance_tests!(engine_name, constructor());`, where the
//! constructor is an async expression yielding `Some((store, guard))` (`None` skips, for an
//! engine whose server is not available; never under CI) (the guard keeps whatever
//! backs the store, a temporary directory or database, alive for the test).

use keyhaven_core::{PepperVersion, Verifier};
use keyhaven_store::*;
use serde_json::{Map, Value, json};
use time::macros::datetime;

/// Fixtures and assertions the checks share.
mod support {
    use super::*;

    pub const T0: Timestamp = datetime!(2026-11-22 10:00:00 UTC);

    /// `T0` plus `secs` seconds (timestamps are whole seconds).
    pub fn at(secs: i64) -> Timestamp {
        T0 + time::Duration::seconds(secs)
    }

    /// Unix seconds of `at(secs)`, for usage minutes.
    pub fn unix(secs: i64) -> i64 {
        at(secs).unix_timestamp()
    }

    pub fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not a JSON object: {other}"),
        }
    }

    pub fn event(
        id: &str,
        action: &str,
        target: &str,
        keyspace: Option<&str>,
        t: i64,
    ) -> AuditEvent {
        AuditEvent {
            id: format!("evt_{id}"),
            occurred_at: at(t),
            actor: "rk_actor1".into(),
            action: action.into(),
            target_type: action.split('.').next().unwrap_or("test").into(),
            target_id: target.into(),
            keyspace_id: keyspace.map(str::to_owned),
            changes: Map::new(),
            client_ip: Some("127.0.0.1".into()),
        }
    }

    pub fn keyspace(id: &str, prefix: &str) -> Keyspace {
        Keyspace {
            id: id.into(),
            name: format!("name of {id}"),
            prefix: prefix.into(),
            policy: KeyspacePolicy::default(),
            ratelimits: Vec::new(),
            alerts: AlertThresholds::default(),
            created_at: T0,
            updated_at: T0,
        }
    }

    pub fn owner(id: &str, external_id: &str) -> Owner {
        Owner {
            id: id.into(),
            external_id: external_id.into(),
            name: Some("Customer".into()),
            meta: obj(json!({"plan": "pro"})),
            limits: Limits::default(),
            created_at: T0,
            updated_at: T0,
        }
    }

    pub fn verifier(n: u8) -> Verifier {
        Verifier::from_parts(PepperVersion::new(1).unwrap(), [n; 32])
    }

    pub fn key(key_id: &str, keyspace_id: &str, owner_id: Option<&str>) -> KeyRecord {
        KeyRecord {
            key_id: key_id.into(),
            keyspace_id: keyspace_id.into(),
            owner_id: owner_id.map(str::to_owned),
            name: Some("a key".into()),
            last4: "abcd".into(),
            verifier: verifier(7),
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
            limits: Limits::default(),
            last_used_at: None,
            created_at: T0,
            updated_at: T0,
        }
    }

    /// An imported key: found by `lookup`, checked against a stored digest until its first
    /// verify.
    pub fn imported_key(key_id: String, keyspace_id: &str, lookup: &str) -> KeyRecord {
        KeyRecord {
            import: Some(Import {
                format: "sha256".into(),
                lookup: lookup.into(),
                digest: Some(lookup.as_bytes().to_vec()),
                public: None,
            }),
            ..key(&key_id, keyspace_id, None)
        }
    }

    /// A 12-character base58 key id, distinct per `n`: `Key` and `n` in base58.
    pub fn kid(n: usize) -> String {
        const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        let mut digits = [b'1'; 9];
        let mut rest = n;
        for d in digits.iter_mut().rev() {
            *d = ALPHABET[rest % 58];
            rest /= 58;
        }
        format!("Key{}", std::str::from_utf8(&digits).unwrap())
    }

    pub fn first(limit: u32) -> PageRequest {
        PageRequest { limit, after: None }
    }

    /// Events of one type.
    pub fn kind(kind: &str) -> EventFilter<'_> {
        EventFilter {
            kind: Some(kind),
            ..EventFilter::default()
        }
    }

    pub fn conflict(r: Result<(), StoreError>) -> Conflict {
        match r {
            Err(StoreError::Conflict(c)) => c,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    pub fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
        assert!(
            matches!(r, Err(StoreError::NotFound)),
            "expected NotFound, got {r:?}"
        );
    }

    /// Walks every page of a listing: newest first, each page but the last full, the last
    /// without a cursor, no item twice.
    pub async fn all_pages<T, F, Fut>(limit: u32, mut list: F) -> Vec<T>
    where
        T: std::fmt::Debug + PartialEq,
        F: FnMut(PageRequest) -> Fut,
        Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
    {
        let mut all: Vec<T> = Vec::new();
        let mut after = None;
        for _ in 0..1000 {
            let page = list(PageRequest { limit, after }).await.unwrap();
            assert!(page.items.len() <= limit as usize, "page over its limit");
            match page.next {
                Some(next) => {
                    assert_eq!(page.items.len(), limit as usize, "short page with a cursor");
                    after = Some(next);
                }
                None => after = None,
            }
            for item in page.items {
                assert!(!all.contains(&item), "{item:?} listed twice");
                all.push(item);
            }
            if after.is_none() {
                return all;
            }
        }
        panic!("pagination never ends");
    }

    pub async fn audit_events(store: &dyn Store, filter: &AuditFilter<'_>) -> Vec<AuditEvent> {
        all_pages(2, |page| store.list_audit_events(filter, page)).await
    }

    /// Ids of the audit events `filter` selects, newest first, across all pages.
    pub async fn audit_ids(store: &dyn Store, filter: AuditFilter<'_>) -> Vec<String> {
        let events = audit_events(store, &filter).await;
        events.into_iter().map(|e| e.id).collect()
    }

    pub async fn key_ids(store: &dyn Store, filter: &KeyFilter<'_>, limit: u32) -> Vec<String> {
        all_pages(limit, |page| store.list_keys(filter, page))
            .await
            .into_iter()
            .map(|k| k.key_id)
            .collect()
    }

    pub async fn keyspace_ids(
        store: &dyn Store,
        visible: KeyspaceScope<'_>,
        limit: u32,
    ) -> Vec<String> {
        all_pages(limit, |page| store.list_keyspaces(visible, page))
            .await
            .into_iter()
            .map(|k| k.id)
            .collect()
    }

    pub async fn stored_key(store: &dyn Store, key_id: &str) -> KeyRecord {
        store
            .key_for_verify(key_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("key {key_id} is not stored"))
            .key
    }

    /// The audit log as a check last saw it, to assert what one mutation added.
    pub struct AuditLog {
        pub seen: Vec<AuditEvent>,
    }

    impl AuditLog {
        pub async fn read(store: &dyn Store) -> Self {
            Self {
                seen: audit_events(store, &AuditFilter::default()).await,
            }
        }

        /// The last mutation wrote exactly `expected`, and nothing else changed.
        pub async fn expect_one(&mut self, store: &dyn Store, expected: &AuditEvent) {
            let now = audit_events(store, &AuditFilter::default()).await;
            assert_eq!(
                now.len(),
                self.seen.len() + 1,
                "one audit event per mutation ({})",
                expected.action
            );
            assert_eq!(
                &now[0], expected,
                "the newest audit event is the one written"
            );
            assert_eq!(now[1..], self.seen[..], "older audit events are untouched");
            self.seen = now;
        }

        /// The last operation (a failed mutation, or one that is not audited) wrote no
        /// audit event.
        pub async fn expect_none(&self, store: &dyn Store, what: &str) {
            let now = audit_events(store, &AuditFilter::default()).await;
            assert_eq!(now, self.seen, "{what} wrote an audit event");
        }
    }

    pub async fn add_keyspace(store: &dyn Store, ks: &Keyspace) {
        let audit = event(
            &format!("create_{}", ks.id),
            "keyspace.create",
            &ks.id,
            Some(&ks.id),
            0,
        );
        store
            .create_keyspace(ks, Change::audited(&audit))
            .await
            .unwrap();
    }

    pub async fn add_owner(store: &dyn Store, o: &Owner) {
        let audit = event(&format!("create_{}", o.id), "owner.create", &o.id, None, 0);
        store
            .create_owner(o, Change::audited(&audit))
            .await
            .unwrap();
    }

    pub async fn add_key(store: &dyn Store, k: &KeyRecord) {
        let audit = event(
            &format!("create_{}", k.key_id),
            "key.create",
            &k.key_id,
            Some(&k.keyspace_id),
            0,
        );
        store.create_key(k, Change::audited(&audit)).await.unwrap();
    }

    /// A usage series, checked to be oldest first, then sorted by outcome within each
    /// bucket (the order within a bucket is the engine's). `from` and `to` are offsets
    /// from `T0`, as for [`unix`].
    pub async fn series(
        store: &dyn Store,
        target: UsageTarget<'_>,
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Vec<UsageRow> {
        let mut rows = store
            .usage_series(target, granularity, unix(from), unix(to))
            .await
            .unwrap();
        assert!(
            rows.windows(2).all(|w| w[0].bucket <= w[1].bucket),
            "oldest first"
        );
        rows.sort_by(|a, b| (a.bucket, &a.outcome).cmp(&(b.bucket, &b.outcome)));
        rows
    }

    /// One row of a usage series, its bucket `secs` after `T0`.
    pub fn usage_row(secs: i64, outcome: &str, count: u64) -> UsageRow {
        UsageRow {
            bucket: unix(secs),
            outcome: outcome.into(),
            count,
        }
    }

    /// Usage totals of `key_ids` over `[from, to)` (offsets from `T0`), sorted by key and
    /// outcome.
    pub async fn totals(
        store: &dyn Store,
        key_ids: &[String],
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Vec<KeyUsageTotal> {
        let mut rows = store
            .usage_totals(key_ids, granularity, unix(from), unix(to))
            .await
            .unwrap();
        rows.sort_by(|a, b| (&a.key_id, &a.outcome).cmp(&(&b.key_id, &b.outcome)));
        rows
    }

    pub fn usage_total(key: usize, outcome: &str, count: u64) -> KeyUsageTotal {
        KeyUsageTotal {
            key_id: kid(key),
            outcome: outcome.into(),
            count,
        }
    }

    /// Every event `filter` selects, newest first, across all pages.
    pub async fn events(store: &dyn Store, filter: &EventFilter<'_>) -> Vec<Event> {
        all_pages(2, |page| store.list_events(filter, page)).await
    }

    /// An endpoint as a check creates it, with a sealed secret of its own.
    pub fn webhook(id: &str, event_types: &[&str], keyspace_id: Option<&str>) -> Webhook {
        Webhook {
            id: id.into(),
            url: format!("https://hooks.example.com/{id}"),
            description: Some(format!("endpoint {id}")),
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
            keyspace_id: keyspace_id.map(str::to_owned),
            enabled: true,
            sealed_secret: format!("sealed secret of {id}").into_bytes(),
            created_at: at(10),
            updated_at: at(10),
        }
    }
}

/// The checks. Each gets a fresh, empty store and is listed in `conformance_tests!`.
pub mod checks {
    use super::support::*;
    use super::*;

    pub async fn keyspace_crud(store: &dyn Store) {
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
                }),
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

    pub async fn expiring_keys_and_their_events(store: &dyn Store) {
        let mut ks = keyspace("ks_a", "alpha");
        ks.policy = KeyspacePolicy {
            max_key_age: Some(1000),
            default_grace: None,
            expiry_warning: Some(100),
        };
        add_keyspace(store, &ks).await;
        add_keyspace(store, &keyspace("ks_b", "beta")).await;
        assert_eq!(
            store.keyspace("ks_a").await.unwrap().unwrap().policy,
            ks.policy
        );
        // By age (1000 s), by own expiry (950 s, earlier), in another keyspace with the
        // default 7-day window, a revoked one, and a root key (never reported).
        add_key(store, &key(&kid(1), "ks_a", None)).await;
        let mut own = key(&kid(2), "ks_a", None);
        own.expires_at = Some(at(950));
        add_key(store, &own).await;
        let mut b = key(&kid(3), "ks_b", None);
        b.expires_at = Some(at(5000));
        add_key(store, &b).await;
        let mut gone = key(&kid(4), "ks_a", None);
        gone.revoked_at = Some(at(1));
        add_key(store, &gone).await;
        let mut root = key(&kid(5), ROOT_KEYSPACE_ID, None);
        root.expires_at = Some(at(5000));
        add_key(store, &root).await;
        let log = AuditLog::read(store).await;
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
        assert_eq!(
            ids(store.expiring_keys(None, None, at(900), 2).await.unwrap()),
            [(kid(2), at(950)), (kid(1), at(1000))],
            "soonest first, up to the limit"
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
        log.expect_none(store, "recording lifecycle events").await;
        let page = store
            .list_events(&kind("key.expiring"), first(2))
            .await
            .unwrap();
        assert_eq!(page.items.len(), 2);
        let rest = store
            .list_events(
                &kind("key.expiring"),
                PageRequest {
                    limit: 2,
                    after: page.next,
                },
            )
            .await
            .unwrap();
        assert_eq!((rest.items.len(), rest.next), (1, None));
        assert!(
            store
                .list_events(&kind("key.other"), first(10))
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let b_events = store
            .list_events(
                &EventFilter {
                    visible: Some(&only_b),
                    kind: Some("key.expiring"),
                    ..EventFilter::default()
                },
                first(10),
            )
            .await
            .unwrap();
        assert_eq!(b_events.items.len(), 1);
        let e = &b_events.items[0];
        assert_eq!(
            (
                e.kind.as_str(),
                e.key_id.as_deref(),
                e.keyspace_id.as_deref(),
                e.created_at
            ),
            ("key.expiring", Some(kid(3).as_str()), Some("ks_b"), at(900))
        );
        assert_eq!(e.payload["expires_at"], json!("2026-11-22T11:23:20Z"));
    }

    pub async fn key_lists_filter_and_paginate(store: &dyn Store) {
        add_keyspace(store, &keyspace("ks_a", "alpha")).await;
        add_keyspace(store, &keyspace("ks_b", "beta")).await;
        add_owner(store, &owner("own_1", "cus_1")).await;
        add_owner(store, &owner("own_2", "cus_2")).await;
        // Twelve keys, with root keys between them that no listing may show.
        for n in 0..12 {
            let ks = if n % 3 == 0 { "ks_b" } else { "ks_a" };
            let owner = (n % 2 == 0).then_some("own_1");
            let mut k = key(&kid(n), ks, owner);
            k.verifier = verifier(u8::try_from(n).unwrap());
            add_key(store, &k).await;
            if n % 4 == 1 {
                add_key(store, &key(&kid(100 + n), ROOT_KEYSPACE_ID, None)).await;
            }
        }
        let expect = |f: &dyn Fn(usize) -> bool| {
            (0..12).rev().filter(|n| f(*n)).map(kid).collect::<Vec<_>>()
        };
        let all = KeyFilter::default();
        for limit in [1, 2, 5, 11, 12, 13, 100] {
            assert_eq!(
                key_ids(store, &all, limit).await,
                expect(&|_| true),
                "limit {limit}"
            );
        }
        let page = store.list_keys(&all, first(12)).await.unwrap();
        assert_eq!(
            (page.items.len(), page.next),
            (12, None),
            "no cursor to an empty page"
        );
        let page = store.list_keys(&all, first(3)).await.unwrap();
        assert_eq!(page.items[0], {
            let mut k = key(&kid(11), "ks_a", None);
            k.verifier = verifier(11);
            k
        });
        assert!(page.next.is_some());

        let ks_a = KeyFilter {
            keyspace_id: Some("ks_a"),
            ..Default::default()
        };
        assert_eq!(key_ids(store, &ks_a, 3).await, expect(&|n| n % 3 != 0));
        let own_1 = KeyFilter {
            owner_id: Some("own_1"),
            ..Default::default()
        };
        assert_eq!(key_ids(store, &own_1, 2).await, expect(&|n| n % 2 == 0));
        let both = KeyFilter {
            keyspace_id: Some("ks_b"),
            owner_id: Some("own_1"),
            ..Default::default()
        };
        assert_eq!(key_ids(store, &both, 1).await, expect(&|n| n % 6 == 0));
        let own_2 = KeyFilter {
            owner_id: Some("own_2"),
            ..Default::default()
        };
        assert!(key_ids(store, &own_2, 2).await.is_empty());

        let only_b = vec!["ks_b".to_owned()];
        let visible_b = KeyFilter {
            visible: Some(&only_b),
            ..Default::default()
        };
        assert_eq!(key_ids(store, &visible_b, 2).await, expect(&|n| n % 3 == 0));
        let a_and_b = vec![
            "ks_a".to_owned(),
            "ks_b".to_owned(),
            ROOT_KEYSPACE_ID.to_owned(),
        ];
        let visible_all = KeyFilter {
            visible: Some(&a_and_b),
            ..Default::default()
        };
        assert_eq!(key_ids(store, &visible_all, 5).await, expect(&|_| true));
        let visible_b_own_1 = KeyFilter {
            visible: Some(&only_b),
            owner_id: Some("own_1"),
            ..Default::default()
        };
        assert_eq!(
            key_ids(store, &visible_b_own_1, 2).await,
            expect(&|n| n % 6 == 0)
        );
        let narrowed = KeyFilter {
            visible: Some(&only_b),
            keyspace_id: Some("ks_a"),
            owner_id: None,
            ..KeyFilter::default()
        };
        assert!(
            key_ids(store, &narrowed, 2).await.is_empty(),
            "a filter never widens the visible set"
        );
        let nothing: Vec<String> = Vec::new();
        let visible_none = KeyFilter {
            visible: Some(&nothing),
            ..Default::default()
        };
        assert!(key_ids(store, &visible_none, 2).await.is_empty());
    }

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

    pub async fn usage_adds_up_and_last_use_only_moves_forward(store: &dyn Store) {
        add_keyspace(store, &keyspace("ks_a", "alpha")).await;
        add_key(store, &key(&kid(1), "ks_a", None)).await;
        add_key(store, &key(&kid(2), "ks_a", None)).await;
        let log = AuditLog::read(store).await;
        assert!(store.usage(&kid(1), 0).await.unwrap().is_empty());
        let count = |key: usize, minute: i64, outcome: &str, count: u64| UsageCount {
            key_id: kid(key),
            minute: unix(minute),
            outcome: outcome.into(),
            count,
        };
        let usage = |key: usize, since: i64| async move {
            let mut rows = store.usage(&kid(key), since).await.unwrap();
            assert!(
                rows.windows(2).all(|w| w[0].minute <= w[1].minute),
                "oldest first"
            );
            rows.sort_by(|a, b| (a.minute, &a.outcome).cmp(&(b.minute, &b.outcome)));
            rows
        };

        store
            .record_usage(&UsageBatch {
                counts: vec![
                    count(1, 0, "VALID", 3),
                    count(1, 60, "VALID", 1),
                    count(2, 0, "VALID", 7),
                    count(1, 0, "VALID", 1),
                ],
                last_used: vec![(kid(1), at(70)), (kid(1), at(40))],
            })
            .await
            .unwrap();
        let k = stored_key(store, &kid(1)).await;
        assert_eq!(k.last_used_at, Some(at(70)), "the newest use of a batch");
        assert_eq!(stored_key(store, &kid(2)).await.last_used_at, None);

        store
            .record_usage(&UsageBatch {
                counts: vec![
                    count(1, 0, "VALID", 2),
                    count(1, 0, "REVOKED", 1),
                    count(1, 120, "RATE_LIMITED", 4),
                ],
                last_used: vec![(kid(1), at(30)), (kid(99), at(30))],
            })
            .await
            .unwrap();
        store.record_usage(&UsageBatch::default()).await.unwrap();
        assert_eq!(
            usage(1, 0).await,
            vec![
                count(1, 0, "REVOKED", 1),
                count(1, 0, "VALID", 6),
                count(1, 60, "VALID", 1),
                count(1, 120, "RATE_LIMITED", 4),
            ]
        );
        assert_eq!(usage(2, 0).await, vec![count(2, 0, "VALID", 7)]);
        // since is inclusive, by the minute's start.
        assert_eq!(
            usage(1, unix(60)).await,
            vec![count(1, 60, "VALID", 1), count(1, 120, "RATE_LIMITED", 4)]
        );
        assert_eq!(
            usage(1, unix(61)).await,
            vec![count(1, 120, "RATE_LIMITED", 4)]
        );
        assert!(usage(1, unix(121)).await.is_empty());
        assert!(store.usage(&kid(99), 0).await.unwrap().is_empty());
        assert_eq!(
            stored_key(store, &kid(1)).await.last_used_at,
            Some(at(70)),
            "an older use never lowers last_used_at"
        );

        store
            .record_usage(&UsageBatch {
                counts: Vec::new(),
                last_used: vec![(kid(1), at(90)), (kid(2), at(10))],
            })
            .await
            .unwrap();
        assert_eq!(stored_key(store, &kid(1)).await.last_used_at, Some(at(90)));
        assert_eq!(stored_key(store, &kid(2)).await.last_used_at, Some(at(10)));
        assert_eq!(
            stored_key(store, &kid(1)).await,
            KeyRecord {
                last_used_at: Some(at(90)),
                ..key(&kid(1), "ks_a", None)
            },
            "usage changes nothing else"
        );
        log.expect_none(store, "recording usage").await;
    }

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

    /// Limits travel with keyspaces, owners and keys; quota counters move only by
    /// `record_quota_use` (relative, never below zero, a refill once per boundary) or an
    /// explicit `QuotaWrite::Set`, never by an update that keeps them.
    pub async fn limits_and_quota_counters(store: &dyn Store) {
        let rl = |name: &str, limit: u64| RateLimitDef {
            name: name.into(),
            limit,
            duration_ms: 60_000,
            burst: None,
        };
        let quota = |remaining: u64| Quota {
            remaining,
            refill: Some(keyhaven_core::quota::Refill {
                interval: keyhaven_core::quota::Interval::Daily,
                amount: 50,
            }),
            refilled_at: at(0),
        };
        let mut ks = keyspace("ks_a", "alpha");
        ks.ratelimits = vec![rl("requests", 100)];
        add_keyspace(store, &ks).await;
        let mut own = owner("own_1", "cus_1");
        own.limits = Limits {
            ratelimits: vec![rl("requests", 1_000)],
            quota: Some(quota(500)),
        };
        add_owner(store, &own).await;
        let mut k = key(&kid(1), "ks_a", Some("own_1"));
        k.limits = Limits {
            ratelimits: vec![rl("burst", 5)],
            quota: Some(quota(10)),
        };
        add_key(store, &k).await;

        let found = store.key_for_verify(&kid(1)).await.unwrap().unwrap();
        assert_eq!(found.keyspace_ratelimits, ks.ratelimits);
        assert_eq!(found.owner_limits, own.limits);
        assert_eq!(found.key.limits, k.limits);
        assert_eq!(
            store.keyspace("ks_a").await.unwrap().unwrap().ratelimits,
            ks.ratelimits
        );

        let key_target = QuotaTarget::Key(kid(1));
        let owner_target = QuotaTarget::Owner("own_1".into());
        store
            .record_quota_use(&[
                QuotaUse {
                    target: key_target.clone(),
                    used: 3,
                    refilled: None,
                },
                QuotaUse {
                    target: owner_target.clone(),
                    used: 7,
                    refilled: None,
                },
            ])
            .await
            .unwrap();
        let remaining = |k: KeyForVerify| {
            (
                k.key.limits.quota.unwrap().remaining,
                k.owner_limits.quota.unwrap().remaining,
            )
        };
        let now = || async { store.key_for_verify(&kid(1)).await.unwrap().unwrap() };
        assert_eq!(remaining(now().await), (7, 493));

        // An update that keeps the quota leaves the moving counter alone, even when the
        // record it writes carries an older value.
        let mut stale = k.clone();
        stale.name = Some("renamed".into());
        stale.limits.ratelimits = vec![];
        store
            .update_key(
                &stale,
                QuotaWrite::Keep,
                Change::audited(&event("u1", "key.update", &kid(1), Some("ks_a"), 5)),
            )
            .await
            .unwrap();
        let after = now().await;
        assert_eq!(after.key.limits.ratelimits, vec![]);
        assert_eq!(remaining(after), (7, 493));
        let mut stale_owner = own.clone();
        stale_owner.name = None;
        store
            .update_owner(
                &stale_owner,
                QuotaWrite::Keep,
                Change::audited(&event("u2", "owner.update", "own_1", None, 5)),
            )
            .await
            .unwrap();
        assert_eq!(remaining(now().await), (7, 493));

        // Never below zero.
        store
            .record_quota_use(&[QuotaUse {
                target: key_target.clone(),
                used: 100,
                refilled: None,
            }])
            .await
            .unwrap();
        assert_eq!(remaining(now().await).0, 0);

        // A refill sets the counter to the amount less the uses after it, once: a second
        // writer reporting the same refill only subtracts its uses.
        let refill = Some((at(86_400), 50));
        store
            .record_quota_use(&[QuotaUse {
                target: key_target.clone(),
                used: 2,
                refilled: refill,
            }])
            .await
            .unwrap();
        let k_now = now().await;
        assert_eq!(k_now.key.limits.quota.unwrap().refilled_at, at(86_400));
        assert_eq!(remaining(k_now).0, 48);
        store
            .record_quota_use(&[QuotaUse {
                target: key_target.clone(),
                used: 1,
                refilled: refill,
            }])
            .await
            .unwrap();
        assert_eq!(remaining(now().await).0, 47);

        // Set writes the quota wholesale (a top-up), and can remove it.
        let mut topped = stale.clone();
        topped.limits.quota = Some(quota(1_000));
        store
            .update_key(
                &topped,
                QuotaWrite::Set,
                Change::audited(&event("u3", "key.update", &kid(1), Some("ks_a"), 6)),
            )
            .await
            .unwrap();
        assert_eq!(now().await.key.limits.quota, Some(quota(1_000)));
        topped.limits.quota = None;
        store
            .update_key(
                &topped,
                QuotaWrite::Set,
                Change::audited(&event("u4", "key.update", &kid(1), Some("ks_a"), 7)),
            )
            .await
            .unwrap();
        assert_eq!(now().await.key.limits.quota, None);
        // Uses of a key without a quota change nothing.
        store
            .record_quota_use(&[QuotaUse {
                target: key_target,
                used: 1,
                refilled: refill,
            }])
            .await
            .unwrap();
        assert_eq!(now().await.key.limits.quota, None);
    }

    pub async fn usage_rolls_up_into_hours_and_days(store: &dyn Store) {
        use Granularity::{Day, Hour, Minute};
        // T0 is 10:00 UTC: hours start at offsets 0, 3600, …; T0's day at DAY0 and the
        // next day at DAY1 (offsets from T0, as for `unix`).
        const DAY0: i64 = -36_000;
        const DAY1: i64 = 50_400;
        const END: i64 = DAY1 + 86_400;
        let mut ks_a = keyspace("ks_a", "alpha");
        ks_a.alerts = AlertThresholds {
            spike_factor: Some(5),
            spike_min_per_minute: Some(100),
            failed_per_minute: Some(20),
        };
        add_keyspace(store, &ks_a).await;
        add_keyspace(store, &keyspace("ks_b", "beta")).await;
        add_owner(store, &owner("own_1", "ext_1")).await;
        // The owner's keys are 1 (in ks_a) and 2 (in ks_b); key 3 (in ks_a) has no owner.
        add_key(store, &key(&kid(1), "ks_a", Some("own_1"))).await;
        add_key(store, &key(&kid(2), "ks_b", Some("own_1"))).await;
        add_key(store, &key(&kid(3), "ks_a", None)).await;
        let log = AuditLog::read(store).await;
        let count = |key: usize, minute: i64, outcome: &str, count: u64| UsageCount {
            key_id: kid(key),
            minute: unix(minute),
            outcome: outcome.into(),
            count,
        };
        let row = usage_row;
        let total = usage_total;

        // Minutes on both sides of an hour (11:00) and of a day (midnight), in two
        // batches, the second adding to buckets the first wrote.
        store
            .record_usage(&UsageBatch {
                counts: vec![
                    count(1, 0, "VALID", 3),
                    count(1, 60, "VALID", 2),
                    count(1, 3540, "WRONG_SECRET", 1),
                    count(1, 3540, "VALID", 1),
                    count(2, 0, "VALID", 5),
                    count(3, 3600, "VALID", 4),
                ],
                last_used: Vec::new(),
            })
            .await
            .unwrap();
        store
            .record_usage(&UsageBatch {
                counts: vec![
                    count(1, 0, "VALID", 1),
                    count(1, 3600, "VALID", 10),
                    count(1, 50_340, "RATE_LIMITED", 2),
                    count(1, 50_340, "USAGE_EXCEEDED", 3),
                    count(1, 50_400, "VALID", 7),
                    count(2, 50_400, "REVOKED", 1),
                    count(3, 60, "EXPIRED", 2),
                    count(3, 60, "REVOKED", 1),
                ],
                last_used: Vec::new(),
            })
            .await
            .unwrap();

        let (k1, k2, k3, k99) = (kid(1), kid(2), kid(3), kid(99));
        let (key_1, owner_1) = (UsageTarget::Key(&k1), UsageTarget::Owner("own_1"));
        let (in_ks_a, in_ks_b) = (UsageTarget::Keyspace("ks_a"), UsageTarget::Keyspace("ks_b"));
        // One key, at each granularity; `from` is inclusive, `to` exclusive.
        assert_eq!(
            series(store, key_1, Minute, 60, 3600).await,
            [
                row(60, "VALID", 2),
                row(3540, "VALID", 1),
                row(3540, "WRONG_SECRET", 1),
            ]
        );
        assert_eq!(
            series(store, key_1, Hour, DAY0, END).await,
            [
                row(0, "VALID", 7),
                row(0, "WRONG_SECRET", 1),
                row(3600, "VALID", 10),
                row(46_800, "RATE_LIMITED", 2),
                row(46_800, "USAGE_EXCEEDED", 3),
                row(50_400, "VALID", 7),
            ]
        );
        assert_eq!(
            series(store, key_1, Day, DAY0, END).await,
            [
                row(DAY0, "RATE_LIMITED", 2),
                row(DAY0, "USAGE_EXCEEDED", 3),
                row(DAY0, "VALID", 17),
                row(DAY0, "WRONG_SECRET", 1),
                row(DAY1, "VALID", 7),
            ]
        );
        // An owner's keys (1 and 2), across keyspaces.
        assert_eq!(
            series(store, owner_1, Hour, 0, 50_400).await,
            [
                row(0, "VALID", 12),
                row(0, "WRONG_SECRET", 1),
                row(3600, "VALID", 10),
                row(46_800, "RATE_LIMITED", 2),
                row(46_800, "USAGE_EXCEEDED", 3),
            ]
        );
        assert_eq!(
            series(store, owner_1, Day, DAY0, END).await,
            [
                row(DAY0, "RATE_LIMITED", 2),
                row(DAY0, "USAGE_EXCEEDED", 3),
                row(DAY0, "VALID", 22),
                row(DAY0, "WRONG_SECRET", 1),
                row(DAY1, "REVOKED", 1),
                row(DAY1, "VALID", 7),
            ]
        );
        // A keyspace's keys (1 and 3), with or without an owner.
        assert_eq!(
            series(store, in_ks_a, Minute, 0, 3660).await,
            [
                row(0, "VALID", 4),
                row(60, "EXPIRED", 2),
                row(60, "REVOKED", 1),
                row(60, "VALID", 2),
                row(3540, "VALID", 1),
                row(3540, "WRONG_SECRET", 1),
                row(3600, "VALID", 14),
            ]
        );
        assert_eq!(
            series(store, in_ks_a, Hour, DAY0, END).await,
            [
                row(0, "EXPIRED", 2),
                row(0, "REVOKED", 1),
                row(0, "VALID", 7),
                row(0, "WRONG_SECRET", 1),
                row(3600, "VALID", 14),
                row(46_800, "RATE_LIMITED", 2),
                row(46_800, "USAGE_EXCEEDED", 3),
                row(50_400, "VALID", 7),
            ]
        );
        assert_eq!(
            series(store, in_ks_b, Day, DAY0, END).await,
            [row(DAY0, "VALID", 5), row(DAY1, "REVOKED", 1)]
        );
        for target in [
            UsageTarget::Key(&k99),
            UsageTarget::Owner("own_none"),
            UsageTarget::Keyspace("ks_none"),
        ] {
            assert!(series(store, target, Day, DAY0, END).await.is_empty());
        }

        // Totals per key: over a range, and over everything at each granularity (the
        // three tables agree).
        assert_eq!(
            totals(store, &[k1.clone(), k2.clone(), k99], Hour, 0, 50_400).await,
            [
                total(1, "RATE_LIMITED", 2),
                total(1, "USAGE_EXCEEDED", 3),
                total(1, "VALID", 17),
                total(1, "WRONG_SECRET", 1),
                total(2, "VALID", 5),
            ]
        );
        let everything = [
            total(1, "RATE_LIMITED", 2),
            total(1, "USAGE_EXCEEDED", 3),
            total(1, "VALID", 24),
            total(1, "WRONG_SECRET", 1),
            total(2, "REVOKED", 1),
            total(2, "VALID", 5),
            total(3, "EXPIRED", 2),
            total(3, "REVOKED", 1),
            total(3, "VALID", 4),
        ];
        let keys = [k3.clone(), k1.clone(), k2.clone()];
        for granularity in Granularity::ALL {
            assert_eq!(
                totals(store, &keys, granularity, DAY0, END).await,
                everything,
                "{granularity:?}"
            );
        }
        assert!(totals(store, &[], Day, DAY0, END).await.is_empty());

        // What the anomaly judge reads: minutes in (after, through], per key.
        let activity = |key: usize, minute: i64, [total, failed, dead, limited]: [u64; 4]| {
            let (keyspace_id, thresholds) = match key {
                2 => ("ks_b", AlertThresholds::default()),
                _ => ("ks_a", ks_a.alerts),
            };
            MinuteActivity {
                key_id: kid(key),
                keyspace_id: keyspace_id.into(),
                key_created_at: T0,
                thresholds,
                minute: unix(minute),
                total,
                failed,
                dead_key_uses: dead,
                limited,
            }
        };
        let minutes = |after: i64, through: i64| async move {
            let mut rows = store
                .minute_activity(unix(after), unix(through))
                .await
                .unwrap();
            assert!(
                rows.windows(2).all(|w| w[0].minute <= w[1].minute),
                "by minute"
            );
            rows.sort_by(|a, b| (a.minute, &a.key_id).cmp(&(b.minute, &b.key_id)));
            rows
        };
        assert_eq!(
            minutes(0, 3600).await,
            [
                activity(1, 60, [2, 0, 0, 0]),
                activity(3, 60, [3, 0, 3, 0]),
                activity(1, 3540, [2, 1, 0, 0]),
                activity(1, 3600, [10, 0, 0, 0]),
                activity(3, 3600, [4, 0, 0, 0]),
            ]
        );
        assert_eq!(
            minutes(50_280, 50_400).await,
            [
                activity(1, 50_340, [5, 0, 0, 5]),
                activity(1, 50_400, [7, 0, 0, 0]),
                activity(2, 50_400, [1, 0, 1, 0]),
            ]
        );
        assert!(minutes(3600, 50_280).await.is_empty());
        let sum = |key_id: &str, from: i64, to: i64| {
            let key_id = key_id.to_owned();
            async move {
                store
                    .usage_sum(&key_id, unix(from), unix(to))
                    .await
                    .unwrap()
            }
        };
        assert_eq!(sum(&k1, 0, 3600).await, 8);
        assert_eq!(sum(&k1, 0, 3660).await, 18);
        assert_eq!(sum(&k1, 60, 50_400).await, 19);
        assert_eq!(sum(&k2, DAY0, END).await, 6);
        assert_eq!(sum("Key_missing", DAY0, END).await, 0);

        // Purging one granularity leaves the others alone.
        assert_eq!(store.purge_usage(Minute, unix(3600)).await.unwrap(), 7);
        assert_eq!(store.purge_usage(Minute, unix(3600)).await.unwrap(), 0);
        assert_eq!(
            series(store, key_1, Minute, DAY0, END).await,
            [
                row(3600, "VALID", 10),
                row(50_340, "RATE_LIMITED", 2),
                row(50_340, "USAGE_EXCEEDED", 3),
                row(50_400, "VALID", 7),
            ]
        );
        assert_eq!(
            store.purge_usage(Hour, unix(0)).await.unwrap(),
            0,
            "a bucket starting at `before` stays"
        );
        assert_eq!(store.purge_usage(Day, unix(DAY1)).await.unwrap(), 8);
        assert_eq!(
            series(store, key_1, Day, DAY0, END).await,
            [row(DAY1, "VALID", 7)]
        );
        assert_eq!(totals(store, &keys, Hour, DAY0, END).await, everything);
        log.expect_none(store, "recording and purging usage").await;

        // A deleted key no longer counts for its owner.
        store
            .delete_key(
                &k2,
                Change::audited(&event("delete_2", "key.delete", &k2, Some("ks_b"), 5)),
            )
            .await
            .unwrap();
        assert_eq!(
            series(store, owner_1, Hour, DAY0, END).await,
            series(store, key_1, Hour, DAY0, END).await
        );
    }

    pub async fn alerts_start_one_event_per_episode(store: &dyn Store) {
        const QUIET: i64 = 300;
        const SPIKE: &str = "rate_spike";
        const FAILED: &str = "failed_verifications";
        add_keyspace(store, &keyspace("ks_a", "alpha")).await;
        add_keyspace(store, &keyspace("ks_b", "beta")).await;
        add_key(store, &key(&kid(1), "ks_a", None)).await;
        add_key(store, &key(&kid(2), "ks_b", None)).await;
        let log = AuditLog::read(store).await;
        let keyspace_of = |key: usize| if key == 1 { "ks_a" } else { "ks_b" };
        let alert = |key: usize, kind: &'static str, minute: i64| Alert {
            key_id: kid(key),
            keyspace_id: keyspace_of(key).into(),
            kind,
            event_type: "usage.anomaly",
            minute: unix(minute),
            data: obj(json!({"kind": kind, "minute": unix(minute)})),
        };
        // Judged once the minute is over.
        let record = |key: usize, kind: &'static str, minute: i64| {
            let alert = alert(key, kind, minute);
            async move {
                store
                    .record_alert(&alert, QUIET, at(minute + 60))
                    .await
                    .unwrap()
            }
        };

        assert!(
            record(1, SPIKE, 0).await,
            "the first alert starts an episode"
        );
        assert!(
            !record(1, SPIKE, 60).await,
            "the next minute goes on with it"
        );
        assert!(
            !record(1, SPIKE, 60).await,
            "and so does the same minute again"
        );
        assert!(record(1, FAILED, 60).await, "episodes are per kind");
        assert!(record(2, SPIKE, 60).await, "and per key");
        assert!(!record(1, SPIKE, 360).await, "a gap of `quiet` goes on");
        assert!(!record(1, FAILED, 120).await);
        assert!(
            record(1, SPIKE, 720).await,
            "a longer gap starts a new episode"
        );
        assert!(!record(1, SPIKE, 480).await, "a late, older minute goes on");
        assert!(
            !record(1, SPIKE, 1020).await,
            "and never moves the episode's last minute back"
        );
        assert!(record(1, FAILED, 480).await, "each kind has its own gaps");
        log.expect_none(store, "recording alerts").await;

        // Exactly the episodes' first alerts are stored, newest first.
        let stored = |key: usize, kind: &'static str, minute: i64| {
            let a = alert(key, kind, minute);
            Event {
                id: String::new(),
                kind: a.event_type.into(),
                key_id: Some(a.key_id),
                keyspace_id: Some(a.keyspace_id),
                payload: a.data,
                created_at: at(minute + 60),
            }
        };
        let without_ids = |events: Vec<Event>| {
            events
                .into_iter()
                .map(|e| Event {
                    id: String::new(),
                    ..e
                })
                .collect::<Vec<_>>()
        };
        let anomalies = events(store, &kind("usage.anomaly")).await;
        assert!(anomalies.iter().all(|e| e.id.starts_with("evt_")));
        assert_eq!(
            without_ids(anomalies),
            [
                stored(1, FAILED, 480),
                stored(1, SPIKE, 720),
                stored(2, SPIKE, 60),
                stored(1, FAILED, 60),
                stored(1, SPIKE, 0),
            ]
        );
        let (k1, k2) = (kid(1), kid(2));
        let of_key_1 = EventFilter {
            kind: Some("usage.anomaly"),
            key_id: Some(&k1),
            ..EventFilter::default()
        };
        assert_eq!(
            without_ids(events(store, &of_key_1).await),
            [
                stored(1, FAILED, 480),
                stored(1, SPIKE, 720),
                stored(1, FAILED, 60),
                stored(1, SPIKE, 0),
            ]
        );
        // Every type of key 2's events: its key's creation and its alert.
        let of_key_2 = EventFilter {
            key_id: Some(&k2),
            ..EventFilter::default()
        };
        let types = |events: Vec<Event>| events.into_iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(
            types(events(store, &of_key_2).await),
            ["usage.anomaly", "key.created"]
        );
        let of_ks_b = EventFilter {
            kind: Some("usage.anomaly"),
            keyspace_id: Some("ks_b"),
            ..EventFilter::default()
        };
        assert_eq!(
            without_ids(events(store, &of_ks_b).await),
            [stored(2, SPIKE, 60)]
        );
        assert_eq!(events(store, &kind("key.created")).await.len(), 2);
        assert!(events(store, &kind("ratelimit.exceeded")).await.is_empty());

        // Two nodes judging at once start one episode between them.
        const BURST: &str = "failed_burst";
        assert!(record(2, BURST, 0).await);
        let (one, other) = tokio::join!(record(2, BURST, 600), record(2, BURST, 660));
        assert!(one != other, "exactly one starts it ({one}, {other})");
        let anomalies_of_2 = EventFilter {
            kind: Some("usage.anomaly"),
            key_id: Some(&k2),
            ..EventFilter::default()
        };
        let kinds = events(store, &anomalies_of_2)
            .await
            .into_iter()
            .map(|e| e.payload["kind"].clone())
            .collect::<Vec<_>>();
        assert_eq!(kinds, [json!(BURST), json!(BURST), json!(SPIKE)]);
    }

    pub async fn webhook_outbox_delivers_each_event_once_per_endpoint(store: &dyn Store) {
        add_keyspace(store, &keyspace("ks_a", "alpha")).await;
        add_keyspace(store, &keyspace("ks_b", "beta")).await;
        // Stored before any endpoint exists: delivered to none.
        add_key(store, &key(&kid(1), "ks_a", None)).await;
        let mut log = AuditLog::read(store).await;

        // Every event; revocations in ks_a only; a disabled one.
        let all = webhook("wh_all", &["*"], None);
        let revoked_a = webhook("wh_revoked_a", &["key.revoked"], Some("ks_a"));
        let off = Webhook {
            enabled: false,
            ..webhook("wh_off", &["*"], None)
        };
        for hook in [&all, &revoked_a, &off] {
            let audit = event(
                &format!("create_{}", hook.id),
                "webhook.create",
                &hook.id,
                hook.keyspace_id.as_deref(),
                10,
            );
            store
                .create_webhook(hook, Change::audited(&audit))
                .await
                .unwrap();
            log.expect_one(store, &audit).await;
        }
        let stored = store.webhook("wh_all").await.unwrap().unwrap();
        assert_eq!(stored, all);
        assert_eq!(store.webhook("wh_missing").await.unwrap(), None);
        let shown = format!("{stored:?}");
        for secret in [
            format!("{:?}", stored.sealed_secret),
            String::from_utf8(stored.sealed_secret.clone()).unwrap(),
        ] {
            assert!(!shown.contains(&secret), "{shown} shows the sealed secret");
        }
        let hook_ids = |hooks: Vec<Webhook>| hooks.into_iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(
            hook_ids(all_pages(2, |page| store.list_webhooks(None, page)).await),
            ["wh_off", "wh_revoked_a", "wh_all"]
        );
        let only_a = vec!["ks_a".to_owned()];
        assert_eq!(
            hook_ids(all_pages(2, |page| store.list_webhooks(Some(&only_a), page)).await),
            ["wh_revoked_a"]
        );

        // Lifecycle events, each stored with its change: two creations, two revocations;
        // an update stores none.
        add_key(store, &key(&kid(2), "ks_a", None)).await;
        add_key(store, &key(&kid(3), "ks_b", None)).await;
        for (n, ks) in [(1, "ks_a"), (3, "ks_b")] {
            let audit = AuditEvent {
                changes: obj(json!({"reason": "leaked"})),
                ..event(&format!("revoke_{n}"), "key.revoke", &kid(n), Some(ks), 20)
            };
            store
                .revoke_key(&kid(n), at(20), Some("leaked"), Change::audited(&audit))
                .await
                .unwrap();
        }
        let renamed = KeyRecord {
            name: Some("renamed".into()),
            ..key(&kid(2), "ks_a", None)
        };
        store
            .update_key(
                &renamed,
                QuotaWrite::Keep,
                Change::audited(&event("update_2", "key.update", &kid(2), Some("ks_a"), 20)),
            )
            .await
            .unwrap();
        let stored_events = events(store, &EventFilter::default()).await;
        let summary = stored_events
            .iter()
            .map(|e| (e.kind.as_str(), e.key_id.clone(), e.keyspace_id.as_deref()))
            .collect::<Vec<_>>();
        assert_eq!(
            summary,
            [
                ("key.revoked", Some(kid(3)), Some("ks_b")),
                ("key.revoked", Some(kid(1)), Some("ks_a")),
                ("key.created", Some(kid(3)), Some("ks_b")),
                ("key.created", Some(kid(2)), Some("ks_a")),
                ("key.created", Some(kid(1)), Some("ks_a")),
            ]
        );
        let revoked_1 = &stored_events[1];
        assert_eq!(
            (&revoked_1.payload, revoked_1.created_at),
            (
                &obj(json!({
                    "key_id": kid(1),
                    "keyspace_id": "ks_a",
                    "actor": "rk_actor1",
                    "reason": "leaked",
                })),
                at(20)
            )
        );
        // An endpoint created after them gets none, though they are not fanned out yet.
        let late = webhook("wh_late", &["*"], None);
        let audit = event("create_wh_late", "webhook.create", "wh_late", None, 30);
        store
            .create_webhook(&late, Change::audited(&audit))
            .await
            .unwrap();

        // The fan-out: each event once, to each endpoint that wants it.
        let t = unix(100) * 1000;
        assert_eq!(
            store.fan_out_events(t, 2).await.unwrap(),
            2,
            "up to the limit"
        );
        assert_eq!(store.fan_out_events(t, 10).await.unwrap(), 3);
        assert_eq!(store.fan_out_events(t, 10).await.unwrap(), 0, "once");
        let deliveries = |webhook_id: &'static str, status: Option<DeliveryStatus>| async move {
            all_pages(3, |page| store.list_deliveries(webhook_id, status, page)).await
        };
        let event_ids =
            |list: &[Delivery]| list.iter().map(|d| d.event_id.clone()).collect::<Vec<_>>();
        let ids_of = |events: &[&Event]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        let pending = |hook: &str, event: &Event, id: &str| Delivery {
            id: id.into(),
            webhook_id: hook.into(),
            event_id: event.id.clone(),
            event_type: event.kind.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_ms: t,
            last_status: None,
            last_error: None,
            delivered_at_ms: None,
            created_at: at(100),
        };
        let to_all = deliveries("wh_all", None).await;
        let wanted: Vec<&Event> = stored_events[..4].iter().collect();
        assert_eq!(
            event_ids(&to_all),
            ids_of(&wanted),
            "all but the one stored before it"
        );
        for (delivery, event) in to_all.iter().zip(&wanted) {
            assert_eq!(delivery, &pending("wh_all", event, &delivery.id));
        }
        let to_revoked_a = deliveries("wh_revoked_a", None).await;
        assert_eq!(event_ids(&to_revoked_a), ids_of(&[revoked_1]));
        assert!(deliveries("wh_off", None).await.is_empty(), "disabled");
        assert!(
            deliveries("wh_late", None).await.is_empty(),
            "created later"
        );
        assert_eq!(
            store
                .delivery("wh_all", &to_all[0].id)
                .await
                .unwrap()
                .as_ref(),
            Some(&to_all[0])
        );
        assert_eq!(
            store.delivery("wh_revoked_a", &to_all[0].id).await.unwrap(),
            None,
            "another endpoint's delivery"
        );

        // Claims lease what they take.
        const LEASE: i64 = 30_000;
        let claim = |now_ms: i64, limit: u32| async move {
            store.claim_deliveries(now_ms, LEASE, limit).await.unwrap()
        };
        let sorted_ids = |due: &[DueDelivery]| {
            let mut ids = due.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
            ids.sort();
            ids
        };
        assert!(claim(t - 1, 10).await.is_empty(), "not due yet");
        let first_claim = claim(t, 3).await;
        assert_eq!(first_claim.len(), 3, "up to the limit");
        let second_claim = claim(t + 1000, 10).await;
        let mut every_id = to_all
            .iter()
            .chain(&to_revoked_a)
            .map(|d| d.id.clone())
            .collect::<Vec<_>>();
        every_id.sort();
        let both: Vec<DueDelivery> = first_claim.iter().chain(&second_claim).cloned().collect();
        assert_eq!(sorted_ids(&both), every_id, "the rest, none twice");
        let due = both
            .iter()
            .find(|d| d.webhook_id == "wh_revoked_a")
            .unwrap();
        assert_eq!(
            (
                due.id.as_str(),
                due.url.as_str(),
                &due.sealed_secret,
                &due.event,
                due.attempts,
                due.first_due_ms
            ),
            (
                to_revoked_a[0].id.as_str(),
                revoked_a.url.as_str(),
                &revoked_a.sealed_secret,
                revoked_1,
                0,
                t
            )
        );
        assert!(claim(t + LEASE - 1, 10).await.is_empty(), "all leased");
        // A lapsed lease frees them, to one of two workers claiming at once.
        let (one, other) = tokio::join!(claim(t + LEASE, 10), claim(t + LEASE, 10));
        let both: Vec<DueDelivery> = one.into_iter().chain(other).collect();
        assert_eq!(sorted_ids(&both), sorted_ids(&first_claim));

        // Attempts: a retry then a success, and a give-up.
        let (d1, d2) = (&to_all[0], &to_all[1]);
        let attempt =
            |d: &Delivery, n: u32, ms: i64, code: Option<u16>, error: Option<&str>| Attempt {
                delivery_id: d.id.clone(),
                attempt: n,
                attempted_ms: ms,
                status_code: code,
                error: error.map(str::to_owned),
                duration_ms: 120,
            };
        let t1 = t + LEASE;
        let retried = attempt(d1, 1, t1, Some(500), Some("HTTP 500"));
        store
            .record_attempt(&retried, AfterAttempt::RetryAt(t1 + 90_000))
            .await
            .unwrap();
        let waiting = Delivery {
            attempts: 1,
            next_attempt_ms: t1 + 90_000,
            last_status: Some(500),
            last_error: Some("HTTP 500".into()),
            ..d1.clone()
        };
        assert_eq!(
            store.delivery("wh_all", &d1.id).await.unwrap(),
            Some(waiting.clone())
        );
        let refused = attempt(d2, 1, t1, None, Some("connection refused"));
        store
            .record_attempt(&refused, AfterAttempt::GiveUp)
            .await
            .unwrap();
        let failed = Delivery {
            status: DeliveryStatus::Failed,
            attempts: 1,
            last_error: Some("connection refused".into()),
            ..d2.clone()
        };
        assert_eq!(
            store.delivery("wh_all", &d2.id).await.unwrap(),
            Some(failed.clone())
        );
        let mut others = vec![
            to_all[2].id.clone(),
            to_all[3].id.clone(),
            to_revoked_a[0].id.clone(),
        ];
        others.sort();
        assert_eq!(
            sorted_ids(&claim(t1 + 89_999, 10).await),
            others,
            "neither the retry before it is due, nor the failed one"
        );
        let retry = claim(t1 + 90_000, 10).await;
        let [retry] = retry.as_slice() else {
            panic!("only the retry is due: {retry:?}")
        };
        assert_eq!(
            (retry.id.as_str(), retry.attempts, retry.first_due_ms),
            (d1.id.as_str(), 1, t)
        );
        let done = attempt(d1, 2, t1 + 90_000, Some(204), None);
        store
            .record_attempt(&done, AfterAttempt::Delivered)
            .await
            .unwrap();
        let delivered = Delivery {
            status: DeliveryStatus::Delivered,
            attempts: 2,
            last_status: Some(204),
            last_error: None,
            delivered_at_ms: Some(t1 + 90_000),
            ..waiting
        };
        assert_eq!(
            store.delivery("wh_all", &d1.id).await.unwrap(),
            Some(delivered.clone())
        );
        // A worker whose lease ran out reports late: logged, but it stays delivered.
        let late_attempt = attempt(d1, 2, t1 + 95_000, None, Some("timeout"));
        store
            .record_attempt(&late_attempt, AfterAttempt::RetryAt(t1 + 200_000))
            .await
            .unwrap();
        assert_eq!(
            store.delivery("wh_all", &d1.id).await.unwrap(),
            Some(delivered.clone())
        );
        assert_eq!(
            store.delivery_attempts(&d1.id).await.unwrap(),
            [retried, done, late_attempt]
        );
        assert_eq!(store.delivery_attempts(&d2.id).await.unwrap(), [refused]);
        assert!(
            store
                .delivery_attempts(&to_all[2].id)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            sorted_ids(&claim(t1 + 1_000_000, 10).await),
            others,
            "delivered and failed ones are never claimed"
        );

        // Listings by status, newest first, across pages.
        assert_eq!(
            deliveries("wh_all", Some(DeliveryStatus::Delivered)).await,
            [delivered]
        );
        assert_eq!(
            deliveries("wh_all", Some(DeliveryStatus::Failed)).await,
            [failed]
        );
        let still_pending = all_pages(1, |page| {
            store.list_deliveries("wh_all", Some(DeliveryStatus::Pending), page)
        })
        .await;
        assert_eq!(still_pending, to_all[2..]);

        // A re-send puts a failed delivery back, due now, with a fresh retry period.
        log = AuditLog::read(store).await;
        let t2 = t + 2_000_000;
        let audit = event("resend", "webhook.resend", "wh_all", None, 200);
        store
            .resend_delivery("wh_all", &d2.id, t2, Change::audited(&audit))
            .await
            .unwrap();
        log.expect_one(store, &audit).await;
        let resent = store.delivery("wh_all", &d2.id).await.unwrap().unwrap();
        assert_eq!(
            (resent.status, resent.next_attempt_ms),
            (DeliveryStatus::Pending, t2)
        );
        let due = claim(t2, 10).await;
        let again = due.iter().find(|d| d.id == d2.id).unwrap();
        assert_eq!((again.attempts, again.first_due_ms), (1, t2));
        let audit = event("resend_2", "webhook.resend", "wh_revoked_a", None, 200);
        not_found(
            store
                .resend_delivery("wh_revoked_a", &d2.id, t2, Change::audited(&audit))
                .await,
        );
        log.expect_none(store, "a re-send via the wrong endpoint")
            .await;

        // Deleting an endpoint deletes its deliveries and their log, nothing else.
        let audit = event("delete_wh_all", "webhook.delete", "wh_all", None, 300);
        store
            .delete_webhook("wh_all", Change::audited(&audit))
            .await
            .unwrap();
        log.expect_one(store, &audit).await;
        assert_eq!(store.webhook("wh_all").await.unwrap(), None);
        assert!(deliveries("wh_all", None).await.is_empty());
        assert_eq!(store.delivery("wh_all", &d1.id).await.unwrap(), None);
        assert!(store.delivery_attempts(&d1.id).await.unwrap().is_empty());
        assert!(store.delivery_attempts(&d2.id).await.unwrap().is_empty());
        assert_eq!(deliveries("wh_revoked_a", None).await, to_revoked_a);
        assert_eq!(
            sorted_ids(&claim(t2 + LEASE, 10).await),
            [to_revoked_a[0].id.clone()]
        );
        let audit = event("delete_again", "webhook.delete", "wh_all", None, 300);
        not_found(
            store
                .delete_webhook("wh_all", Change::audited(&audit))
                .await,
        );
        log.expect_none(store, "deleting a missing endpoint").await;

        // Enabling an endpoint (now for creations only): it gets the events stored from
        // then on, not those that passed while it was off.
        let on = Webhook {
            url: "https://hooks.example.com/on".into(),
            description: None,
            event_types: vec!["key.created".into()],
            enabled: true,
            updated_at: at(400),
            ..off.clone()
        };
        let audit = event("update_wh_off", "webhook.update", "wh_off", None, 400);
        store
            .update_webhook(&on, Change::audited(&audit))
            .await
            .unwrap();
        log.expect_one(store, &audit).await;
        assert_eq!(store.webhook("wh_off").await.unwrap(), Some(on));
        let missing = webhook("wh_missing", &["*"], None);
        let audit = event("update_missing", "webhook.update", "wh_missing", None, 400);
        not_found(
            store
                .update_webhook(&missing, Change::audited(&audit))
                .await,
        );
        log.expect_none(store, "updating a missing endpoint").await;
        add_key(store, &key(&kid(4), "ks_b", None)).await;
        let audit = event("revoke_2", "key.revoke", &kid(2), Some("ks_a"), 500);
        store
            .revoke_key(&kid(2), at(500), None, Change::audited(&audit))
            .await
            .unwrap();
        assert_eq!(store.fan_out_events(t2, 10).await.unwrap(), 2);
        let newest = events(store, &EventFilter::default()).await;
        let (revoked_2, created_4) = (&newest[0], &newest[1]);
        assert_eq!(
            (revoked_2.kind.as_str(), created_4.kind.as_str()),
            ("key.revoked", "key.created")
        );
        assert_eq!(
            event_ids(&deliveries("wh_off", None).await),
            ids_of(&[created_4])
        );
        assert_eq!(
            event_ids(&deliveries("wh_late", None).await),
            ids_of(&[revoked_2, created_4])
        );
        assert_eq!(
            event_ids(&deliveries("wh_revoked_a", None).await),
            ids_of(&[revoked_2, revoked_1])
        );
    }
}

/// Expands to one `#[tokio::test]` per check in [`checks`], each on a store of its own
/// from `$open` (an async expression yielding `(store, guard)`, where `store` derefs to a
/// `dyn Store` and `guard` keeps its backing alive until the check is done).
macro_rules! conformance_tests {
    ($engine:ident, $open:expr) => {
        conformance_tests!(@each $engine, $open;
            keyspace_crud,
            root_keyspace_is_invisible,
            prefixes_are_unique,
            ids_are_unique,
            keyspace_list_scopes_and_pages,
            owners_crud_and_external_ids,
            keys_round_trip_and_join_for_verify,
            update_key_round_trips_every_mutable_field,
            revoke_and_delete,
            rotation_is_atomic_and_happens_once,
            expiring_keys_and_their_events,
            key_lists_filter_and_paginate,
            every_mutation_writes_exactly_one_audit_event,
            audit_filters_and_pages,
            idempotent_responses_share_the_transaction,
            usage_adds_up_and_last_use_only_moves_forward,
            imports_skip_taken_lookups,
            pepper_versions_in_use,
            limits_and_quota_counters,
            usage_rolls_up_into_hours_and_days,
            alerts_start_one_event_per_episode,
            webhook_outbox_delivers_each_event_once_per_endpoint,
        );
    };
    (@each $engine:ident, $open:expr; $($check:ident),+ $(,)?) => {
        mod $engine {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let Some((store, guard)) = $open.await else {
                        return; // the engine's server is not available here (never under CI)
                    };
                    checks::$check(&*store).await;
                    drop(store);
                    drop(guard);
                }
            )+
        }
    };
}

/// A fresh SQLite store in a temporary directory (deleted when the guard drops).
async fn open_sqlite() -> Option<(Box<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("keyhaven.db"))
        .await
        .unwrap();
    Some((Box::new(store), dir))
}

/// A PostgreSQL store on a fresh database of the test server, or `None` where there is
/// no test server (never under CI). The databases go with the throwaway cluster; the
/// guard is the database's URL.
async fn open_postgres() -> Option<(Box<dyn Store>, String)> {
    let admin = keyhaven_store::postgres::testing::admin_url()?;
    let url = keyhaven_store::postgres::testing::fresh_database(&admin)
        .await
        .unwrap();
    let store = PgStore::open(&url, &PgOptions::default()).await.unwrap();
    Some((Box::new(store), url))
}

conformance_tests!(sqlite, open_sqlite());
conformance_tests!(postgres, open_postgres());
