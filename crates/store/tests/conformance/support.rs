//! Fixtures and assertions the checks share.

use keyhaven_core::{PepperVersion, Verifier};
use keyhaven_store::*;
use serde_json::{Map, Value, json};
use time::macros::datetime;

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

pub fn event(id: &str, action: &str, target: &str, keyspace: Option<&str>, t: i64) -> AuditEvent {
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
        branding: Branding::default(),
        leak_policy: LeakPolicy::Revoke,
        ip_allowlist: None,
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
        ip_allowlist: None,
        grants: Grants::default(),
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
        ip_allowlist: None,
        grants: Grants::default(),
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
