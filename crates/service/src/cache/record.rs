//! [`VerifyRecord`]: what the verify path keeps of a key in memory, laid out so that a
//! million cached keys fit in a few hundred bytes each.
//!
//! The store reads a key for verification as a [`KeyForVerify`]: the whole stored key,
//! its keyspace's and owner's policy, its resolved scopes and permissions (about 1 KB
//! inline and a dozen allocations). The cache keeps instead:
//! - the per-key facts inline: key id, verifier, state, creation and effective expiry;
//! - its keyspace's and its owner's policy as [`Arc`]s shared by every key of that
//!   keyspace or owner, and its scopes and permissions shared by every key that holds
//!   the same ones ([`Parts`] interns them);
//! - name and meta, and the rarer settings (its own limits and allowlist, rotation,
//!   import, plan limits, a root key's keyspaces), boxed only when the key has them.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use keyhaven_core::format::KEY_ID_LEN;
use keyhaven_core::{IpAllowlist, Verifier};
use keyhaven_store::{
    Import, KeyForVerify, Limits, Quota, RateLimitDef, Rotation, Timestamp, from_unix, to_unix,
};
use serde_json::{Map, Value};

/// A key as verification needs it (see the module documentation). A clone shares the
/// keyspace, owner and grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRecord {
    /// The key id, when it has the native length (else in `rare`).
    id: [u8; KEY_ID_LEN],
    enabled: bool,
    revoked: bool,
    verifier: Verifier,
    /// Unix seconds, as the store keeps them (8 bytes where a `Timestamp` takes 16: the
    /// record then fits a 128-byte allocation with its `Arc` counts).
    created_at: i64,
    /// The earlier of its own expiry and its keyspace's or plan's maximum age, in Unix
    /// seconds; [`NEVER`] without one.
    expires_at: i64,
    keyspace: Arc<KeyspacePart>,
    owner: Option<Arc<OwnerPart>>,
    held: Arc<Held>,
    about: Option<Box<About>>,
    rare: Option<Box<Rare>>,
}

/// What every key of one keyspace shares.
#[derive(Debug, PartialEq, Eq)]
struct KeyspacePart {
    id: Box<str>,
    prefix: Box<str>,
    name: Box<str>,
    ratelimits: Vec<RateLimitDef>,
    ip_allowlist: Option<IpAllowlist>,
}

/// What every key of one owner shares: its shared rate limits (its plan's included).
/// Not its quota: the counter read with each key moves with every flush, so it stays
/// with the record (in `rare`) and the part stays equal across reads.
#[derive(Debug, PartialEq, Eq)]
struct OwnerPart {
    id: Box<str>,
    external_id: Option<Box<str>>,
    ratelimits: Vec<RateLimitDef>,
    ip_allowlist: Option<IpAllowlist>,
}

/// Resolved scopes and permissions (each sorted as the store gives them).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Held {
    scopes: Box<[String]>,
    permissions: Box<[String]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct About {
    name: Option<Box<str>>,
    meta: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rare {
    /// A key id of another length than the native one.
    long_id: Option<Box<str>>,
    limits: Limits,
    /// Its owner's quota counter as read with this key.
    owner_quota: Option<Quota>,
    ip_allowlist: Option<IpAllowlist>,
    import: Option<Import>,
    rotation: Option<Rotation>,
    revoked_at: Option<Timestamp>,
    allowed_keyspaces: Option<Vec<String>>,
    plan_ratelimits: Vec<RateLimitDef>,
}

/// `expires_at` of a record that does not expire (no timestamp comes near it: the
/// latest a `Timestamp` can hold is the year 9999).
const NEVER: i64 = i64::MAX;

static NO_LIMITS: Limits = Limits {
    ratelimits: Vec::new(),
    quota: None,
};
static NO_META: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

impl VerifyRecord {
    /// The record for `k`, sharing nothing with other records (for a one-off read; the
    /// cache builds them through [`Parts::record`]).
    pub fn of(k: KeyForVerify) -> Self {
        Self::build(k, None)
    }

    fn build(k: KeyForVerify, parts: Option<&Parts>) -> Self {
        let expires_at = k.effective_expiry();
        let KeyForVerify {
            key,
            keyspace_prefix,
            keyspace_name,
            max_key_age: _,
            owner_external_id,
            keyspace_ratelimits,
            owner_limits,
            owner_ip_allowlist,
            keyspace_ip_allowlist,
            permissions,
            scopes,
            plan_ratelimits,
        } = k;
        let keyspace = KeyspacePart {
            id: key.keyspace_id.into(),
            prefix: keyspace_prefix.into(),
            name: keyspace_name.into(),
            ratelimits: keyspace_ratelimits,
            ip_allowlist: keyspace_ip_allowlist,
        };
        let Limits {
            ratelimits: owner_ratelimits,
            quota: owner_quota,
        } = owner_limits;
        let has_owner = key.owner_id.is_some();
        let owner = key.owner_id.map(|id| OwnerPart {
            id: id.into(),
            external_id: owner_external_id.map(Into::into),
            ratelimits: owner_ratelimits,
            ip_allowlist: owner_ip_allowlist,
        });
        let held = Held {
            scopes: scopes.into(),
            permissions: permissions.into(),
        };
        let about = (key.name.is_some() || !key.meta.is_empty()).then(|| {
            Box::new(About {
                name: key.name.map(Into::into),
                meta: key.meta,
            })
        });
        let mut id = [0u8; KEY_ID_LEN];
        let long_id = match key.key_id.as_bytes().try_into() {
            Ok(native) => {
                id = native;
                None
            }
            Err(_) => Some(key.key_id.into_boxed_str()),
        };
        let rare = Rare {
            long_id,
            limits: key.limits,
            owner_quota: owner_quota.filter(|_| has_owner),
            ip_allowlist: key.ip_allowlist,
            import: key.import,
            rotation: key.rotation,
            revoked_at: key.revoked_at,
            allowed_keyspaces: key.allowed_keyspaces,
            plan_ratelimits,
        };
        let (keyspace, owner, held) = match parts {
            Some(parts) => (
                parts.keyspaces.intern(keyspace),
                owner.map(|o| parts.owners.intern(o)),
                parts.held.intern(held),
            ),
            None => (Arc::new(keyspace), owner.map(Arc::new), Arc::new(held)),
        };
        Self {
            id,
            enabled: key.enabled,
            revoked: key.revoked_at.is_some(),
            verifier: key.verifier,
            created_at: to_unix(key.created_at),
            expires_at: expires_at.map_or(NEVER, to_unix),
            keyspace,
            owner,
            held,
            about,
            rare: (rare != Rare::default()).then(|| Box::new(rare)),
        }
    }

    pub fn key_id(&self) -> &str {
        match self.rare.as_ref().and_then(|r| r.long_id.as_deref()) {
            Some(id) => id,
            // Built from a `str`, so always UTF-8.
            None => std::str::from_utf8(&self.id).unwrap_or_default(),
        }
    }

    pub fn keyspace_id(&self) -> &str {
        &self.keyspace.id
    }

    pub fn keyspace_prefix(&self) -> &str {
        &self.keyspace.prefix
    }

    pub fn keyspace_name(&self) -> &str {
        &self.keyspace.name
    }

    pub fn owner_id(&self) -> Option<&str> {
        self.owner.as_ref().map(|o| &*o.id)
    }

    pub fn owner_external_id(&self) -> Option<&str> {
        self.owner.as_ref().and_then(|o| o.external_id.as_deref())
    }

    pub fn name(&self) -> Option<&str> {
        self.about.as_ref().and_then(|a| a.name.as_deref())
    }

    pub fn meta(&self) -> &Map<String, Value> {
        self.about.as_ref().map_or(&NO_META, |a| &a.meta)
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revoked(&self) -> bool {
        self.revoked
    }

    pub fn revoked_at(&self) -> Option<Timestamp> {
        self.rare.as_ref().and_then(|r| r.revoked_at)
    }

    pub fn created_at(&self) -> Timestamp {
        from_unix(self.created_at)
    }

    /// When it stops verifying by itself: its own expiry, or sooner by its keyspace's
    /// or plan's maximum age.
    pub fn effective_expiry(&self) -> Option<Timestamp> {
        (self.expires_at != NEVER).then(|| from_unix(self.expires_at))
    }

    pub fn rotation(&self) -> Option<&Rotation> {
        self.rare.as_ref().and_then(|r| r.rotation.as_ref())
    }

    pub fn import(&self) -> Option<&Import> {
        self.rare.as_ref().and_then(|r| r.import.as_ref())
    }

    /// Every scope the key holds (its own, then its plans').
    pub fn scopes(&self) -> &[String] {
        &self.held.scopes
    }

    /// Every permission the key holds, sorted.
    pub fn permissions(&self) -> &[String] {
        &self.held.permissions
    }

    /// The key's own rate limits and quota.
    pub fn own_limits(&self) -> &Limits {
        self.rare.as_ref().map_or(&NO_LIMITS, |r| &r.limits)
    }

    /// Its owner's shared rate limits (none without an owner).
    pub fn owner_ratelimits(&self) -> &[RateLimitDef] {
        self.owner.as_ref().map_or(&[], |o| &o.ratelimits)
    }

    /// Its owner's quota counter, as read with this key (none without an owner).
    pub fn owner_quota(&self) -> Option<&Quota> {
        self.rare.as_ref().and_then(|r| r.owner_quota.as_ref())
    }

    pub fn keyspace_ratelimits(&self) -> &[RateLimitDef] {
        &self.keyspace.ratelimits
    }

    /// Its plan's rate limits that the key does not set itself.
    pub fn plan_ratelimits(&self) -> &[RateLimitDef] {
        self.rare.as_ref().map_or(&[], |r| &r.plan_ratelimits)
    }

    /// The allowlists of the key, its owner and its keyspace.
    pub fn ip_allowlists(&self) -> [Option<&IpAllowlist>; 3] {
        [
            self.rare.as_ref().and_then(|r| r.ip_allowlist.as_ref()),
            self.owner.as_ref().and_then(|o| o.ip_allowlist.as_ref()),
            self.keyspace.ip_allowlist.as_ref(),
        ]
    }

    /// Root keys only: the keyspaces it may act on; `None` means all.
    pub fn allowed_keyspaces(&self) -> Option<&[String]> {
        self.rare
            .as_ref()
            .and_then(|r| r.allowed_keyspaces.as_deref())
    }
}

impl From<KeyForVerify> for VerifyRecord {
    fn from(k: KeyForVerify) -> Self {
        Self::of(k)
    }
}

/// The shared parts of cached records, one copy of each (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Parts {
    keyspaces: Pool<KeyspacePart>,
    owners: Pool<OwnerPart>,
    held: Pool<Held>,
}

impl Parts {
    pub(super) fn record(&self, k: KeyForVerify) -> VerifyRecord {
        VerifyRecord::build(k, Some(self))
    }
}

/// Equal values handed out as one `Arc`. Values no record holds any more are dropped
/// when the pool has doubled since it last looked.
#[derive(Debug)]
struct Pool<T> {
    inner: Mutex<PoolInner<T>>,
}

#[derive(Debug)]
struct PoolInner<T> {
    set: HashSet<Arc<T>>,
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 1024;

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(PoolInner {
                set: HashSet::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }
}

impl<T: Hash + Eq> Pool<T> {
    fn intern(&self, value: T) -> Arc<T> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = inner.set.get(&value) {
            return Arc::clone(shared);
        }
        if inner.set.len() >= inner.sweep_at {
            inner.set.retain(|v| Arc::strong_count(v) > 1);
            inner.sweep_at = (inner.set.len() * 2).max(FIRST_SWEEP);
        }
        let shared = Arc::new(value);
        inner.set.insert(Arc::clone(&shared));
        shared
    }
}

// Hashed by id only: equal parts have equal ids, and a changed part (same id, other
// settings) is a different value.
impl Hash for KeyspacePart {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl Hash for OwnerPart {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use keyhaven_core::PepperVersion;
    use keyhaven_store::{KeyRecord, Quota, RateLimitDef};
    use time::OffsetDateTime;

    use super::*;

    fn stored(key_id: &str, keyspace_id: &str, owner_id: Option<&str>) -> KeyForVerify {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let key = KeyRecord {
            key_id: key_id.into(),
            keyspace_id: keyspace_id.into(),
            owner_id: owner_id.map(Into::into),
            name: None,
            last4: "abcd".into(),
            verifier: Verifier::from_parts(PepperVersion::new(1).unwrap(), [7; 32]),
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
            grants: Default::default(),
            last_used_at: None,
            created_at: now,
            updated_at: now,
        };
        KeyForVerify {
            scopes: vec!["read".into(), "write".into()],
            key,
            keyspace_prefix: "acme_live".into(),
            keyspace_name: "Live".into(),
            max_key_age: None,
            owner_external_id: owner_id.map(|o| format!("ext-{o}")),
            keyspace_ratelimits: vec![limit("ks", 100)],
            owner_limits: Limits {
                ratelimits: vec![limit("owner", 10)],
                quota: None,
            },
            owner_ip_allowlist: None,
            keyspace_ip_allowlist: None,
            permissions: vec!["docs.read".into()],
            plan_ratelimits: Vec::new(),
        }
    }

    fn limit(name: &str, limit: u64) -> RateLimitDef {
        RateLimitDef {
            name: name.into(),
            limit,
            duration_ms: 1000,
            burst: None,
        }
    }

    #[test]
    fn a_plain_key_is_one_small_allocation_plus_shared_parts() {
        // The inline size is what a million cached keys cost each: with the `Arc`'s two
        // counts it must fit the allocator's 128-byte class (the next one is 160).
        assert!(std::mem::size_of::<VerifyRecord>() <= 112);
        let record = VerifyRecord::of(stored("aaaaaaaaaaaa", "ks_1", None));
        assert!(record.about.is_none() && record.rare.is_none());
    }

    #[test]
    fn the_record_says_what_the_stored_key_says() {
        let mut k = stored("aaaaaaaaaaaa", "ks_1", Some("own_1"));
        let expires = k.key.created_at + time::Duration::days(30);
        k.max_key_age = Some(7 * 86_400);
        k.key.expires_at = Some(expires);
        k.key.name = Some("ci".into());
        k.key.meta.insert("team".into(), Value::from("core"));
        k.key.limits.quota = Some(Quota {
            remaining: 5,
            refill: None,
            refilled_at: k.key.created_at,
            from_plan: false,
        });
        let record = VerifyRecord::of(k.clone());
        assert_eq!(record.key_id(), "aaaaaaaaaaaa");
        assert_eq!(record.keyspace_id(), "ks_1");
        assert_eq!(record.keyspace_prefix(), "acme_live");
        assert_eq!(record.keyspace_name(), "Live");
        assert_eq!(record.owner_id(), Some("own_1"));
        assert_eq!(record.owner_external_id(), Some("ext-own_1"));
        assert_eq!(record.name(), Some("ci"));
        assert_eq!(record.meta(), &k.key.meta);
        assert_eq!(record.scopes(), ["read", "write"]);
        assert_eq!(record.permissions(), ["docs.read"]);
        // The keyspace's maximum age (7 days) comes before the key's own 30 days.
        assert_eq!(record.effective_expiry(), k.effective_expiry());
        assert_ne!(record.effective_expiry(), Some(expires));
        assert_eq!(record.own_limits(), &k.key.limits);
        assert_eq!(
            record.owner_ratelimits(),
            k.owner_limits.ratelimits.as_slice()
        );
        assert_eq!(record.owner_quota(), None);
        assert_eq!(
            record.keyspace_ratelimits(),
            k.keyspace_ratelimits.as_slice()
        );
        assert_eq!(record.verifier(), &k.key.verifier);
        assert!(record.enabled() && !record.revoked() && record.revoked_at().is_none());
    }

    #[test]
    fn an_owners_quota_counter_stays_with_each_key_and_the_owner_is_still_shared() {
        let parts = Parts::default();
        let with_counter = |key_id: &str, remaining| {
            let mut k = stored(key_id, "ks_1", Some("own_1"));
            k.owner_limits.quota = Some(Quota {
                remaining,
                refill: None,
                refilled_at: k.key.created_at,
                from_plan: false,
            });
            k
        };
        // Read after two different flushes of the owner's counter.
        let a = parts.record(with_counter("aaaaaaaaaaaa", 10));
        let b = parts.record(with_counter("bbbbbbbbbbbb", 7));
        assert!(Arc::ptr_eq(
            a.owner.as_ref().unwrap(),
            b.owner.as_ref().unwrap()
        ));
        assert_eq!(a.owner_quota().map(|q| q.remaining), Some(10));
        assert_eq!(b.owner_quota().map(|q| q.remaining), Some(7));
        assert_eq!(a.owner_ratelimits()[0].name, "owner");
    }

    #[test]
    fn a_key_id_of_another_length_is_kept_whole() {
        let record = VerifyRecord::of(stored("an_older_longer_id", "ks_1", None));
        assert_eq!(record.key_id(), "an_older_longer_id");
    }

    #[test]
    fn keys_of_one_keyspace_and_owner_share_their_parts_until_one_changes() {
        let parts = Parts::default();
        let a = parts.record(stored("aaaaaaaaaaaa", "ks_1", Some("own_1")));
        let b = parts.record(stored("bbbbbbbbbbbb", "ks_1", Some("own_1")));
        assert!(Arc::ptr_eq(&a.keyspace, &b.keyspace));
        assert!(Arc::ptr_eq(
            a.owner.as_ref().unwrap(),
            b.owner.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(&a.held, &b.held));
        // The keyspace's limits changed: a record read since sees the new ones, the
        // older one keeps what it was read with.
        let mut changed = stored("cccccccccccc", "ks_1", Some("own_1"));
        changed.keyspace_ratelimits = vec![limit("ks", 5)];
        let c = parts.record(changed);
        assert!(!Arc::ptr_eq(&a.keyspace, &c.keyspace));
        assert_eq!(c.keyspace_ratelimits()[0].limit, 5);
        assert_eq!(a.keyspace_ratelimits()[0].limit, 100);
    }

    #[test]
    fn parts_no_record_holds_are_let_go() {
        let parts = Parts::default();
        for i in 0..(FIRST_SWEEP * 3) {
            drop(parts.record(stored("aaaaaaaaaaaa", &format!("ks_{i}"), None)));
        }
        let held = parts.keyspaces.inner.lock().unwrap().set.len();
        assert!(held <= FIRST_SWEEP, "{held} keyspaces still held");
    }
}
