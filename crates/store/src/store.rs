use std::fmt;

use async_trait::async_trait;
use keyhaven_core::Verifier;

use crate::activity::*;
use crate::error::StoreError;
use crate::leak::*;
use crate::model::*;
use crate::web::*;
use crate::webhook::*;

/// Everything the server keeps, behind one trait so SQLite and PostgreSQL engines are
/// interchangeable (`Arc<dyn Store>`).
///
/// Mutations take a [`Change`]: the audit event, and optionally the idempotent response,
/// to write in the same transaction. Reads never see secrets because none are stored.
/// Whole-record updates (`update_*`) take the record as the caller wants it stored and
/// fail with `NotFound` if it vanished; callers read, apply a patch and write back inside
/// [`Store::update_key`]'s single transaction by passing a closure-free patched record
/// whose `updated_at` they set.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Applies pending migrations. Engines also do this when opened.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Succeeds when the store answers a trivial query (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Succeeds when the store accepts a write: a no-op update in a transaction that is
    /// rolled back (for `/readyz`; a read-only database or replica fails it).
    async fn check_writable(&self) -> Result<(), StoreError>;

    // Keyspaces. The reserved root keyspace is never returned by these.
    async fn create_keyspace(&self, ks: &Keyspace, change: Change<'_>) -> Result<(), StoreError>;
    async fn keyspace(&self, id: &str) -> Result<Option<Keyspace>, StoreError>;
    async fn list_keyspaces(
        &self,
        visible: KeyspaceScope<'_>,
        page: PageRequest,
    ) -> Result<Page<Keyspace>, StoreError>;
    async fn update_keyspace(&self, ks: &Keyspace, change: Change<'_>) -> Result<(), StoreError>;
    /// Fails with [`Conflict::KeyspaceNotEmpty`](crate::Conflict) while keys remain.
    async fn delete_keyspace(&self, id: &str, change: Change<'_>) -> Result<(), StoreError>;

    // Owners: deployment-wide, `external_id` unique.
    async fn create_owner(&self, owner: &Owner, change: Change<'_>) -> Result<(), StoreError>;
    async fn owner(&self, id: &str) -> Result<Option<Owner>, StoreError>;
    async fn owner_by_external_id(&self, external_id: &str) -> Result<Option<Owner>, StoreError>;
    async fn list_owners(&self, page: PageRequest) -> Result<Page<Owner>, StoreError>;
    /// Writes the owner's fields and rate limits, and its quota only with
    /// [`QuotaWrite::Set`] (counters move on every verify; see [`Store::record_quota_use`]).
    async fn update_owner(
        &self,
        owner: &Owner,
        quota: QuotaWrite,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// Fails with [`Conflict::RoleTaken`](crate::Conflict) when the keyspace has a role
    /// of that name. Role changes empty the keyspace's keys from every verify cache.
    async fn create_role(&self, role: &Role, change: Change<'_>) -> Result<(), StoreError>;
    async fn role(&self, keyspace_id: &str, name: &str) -> Result<Option<Role>, StoreError>;
    /// A keyspace's roles by name.
    async fn list_roles(&self, keyspace_id: &str) -> Result<Vec<Role>, StoreError>;
    /// Writes the role's description and permissions; `NotFound` if it is gone.
    async fn update_role(&self, role: &Role, change: Change<'_>) -> Result<(), StoreError>;
    async fn delete_role(
        &self,
        keyspace_id: &str,
        name: &str,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// Fails with [`Conflict::PlanTaken`](crate::Conflict) when a plan of that name
    /// exists. Plan changes empty every verify cache.
    async fn create_plan(&self, plan: &Plan, change: Change<'_>) -> Result<(), StoreError>;
    async fn plan(&self, name: &str) -> Result<Option<Plan>, StoreError>;
    /// Every plan by name.
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError>;
    /// Writes the plan. With `seed_quota` (the plan's quota was set), keys and owners on
    /// the plan without a quota counter get one, starting from the plan's `remaining`.
    /// `NotFound` if the plan is gone.
    async fn update_plan(
        &self,
        plan: &Plan,
        seed_quota: bool,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// Fails with [`Conflict::PlanInUse`](crate::Conflict) while a key or an owner is
    /// on the plan.
    async fn delete_plan(&self, name: &str, change: Change<'_>) -> Result<(), StoreError>;
    /// Sets the override of `o.identifier` in `o.namespace` (replacing one there).
    async fn set_ratelimit_override(
        &self,
        o: &RatelimitOverride,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// A namespace's overrides, by identifier.
    async fn ratelimit_overrides(
        &self,
        namespace: &str,
    ) -> Result<Vec<RatelimitOverride>, StoreError>;
    /// `NotFound` if there is no such override.
    async fn delete_ratelimit_override(
        &self,
        namespace: &str,
        identifier: &str,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// Applies a credits change to `target`'s quota counter in one transaction holding
    /// the row: `audit` is written with `remaining: {from, to}` added, and the answer
    /// `answer(remaining after)` renders is stored beside it for idempotent replays.
    /// Fails with [`Conflict::NoQuota`](crate::Conflict), `InsufficientCredits` (a
    /// decrement past zero) or `CreditsOverflow` (past `max`), changing nothing; with
    /// `NotFound` when the target is gone.
    async fn change_credits(
        &self,
        target: &QuotaTarget,
        op: CreditOp,
        max: u64,
        now: Timestamp,
        audit: &AuditEvent,
        answer: &(dyn Fn(u64) -> Result<Option<IdempotentResponse>, StoreError> + Send + Sync),
    ) -> Result<CreditsChange, StoreError>;
    /// Fails with [`Conflict::OwnerHasKeys`](crate::Conflict) while keys reference it.
    async fn delete_owner(&self, id: &str, change: Change<'_>) -> Result<(), StoreError>;

    // Keys (root keys included: they live in the reserved keyspace).
    async fn create_key(&self, key: &KeyRecord, change: Change<'_>) -> Result<(), StoreError>;
    /// Creates `keys`, each with its audit event (`audits[i]` for `keys[i]`), and the
    /// request's stored answer, all in one transaction: every key, or none.
    async fn create_keys(
        &self,
        keys: &[KeyRecord],
        audits: &[AuditEvent],
        idempotency: Option<&IdempotentResponse>,
    ) -> Result<(), StoreError>;
    /// The key with its keyspace and owner, in one read: the verify path's only query.
    async fn key_for_verify(&self, key_id: &str) -> Result<Option<KeyForVerify>, StoreError>;
    /// [`Store::key_for_verify`] for many key ids at once (a leak report): the keys that
    /// exist, in no particular order.
    async fn keys_for_verify(&self, key_ids: &[String]) -> Result<Vec<KeyForVerify>, StoreError>;
    async fn list_keys(
        &self,
        filter: &KeyFilter<'_>,
        page: PageRequest,
    ) -> Result<Page<KeyRecord>, StoreError>;
    /// Writes the patchable fields of `key` (name, owner, scopes, meta, enabled, expiry,
    /// rate limits, updated_at), and its quota only with [`QuotaWrite::Set`]. Never
    /// revocation: that is `revoke_key` only, so a PATCH racing a revoke can never bring
    /// the key back.
    async fn update_key(
        &self,
        key: &KeyRecord,
        quota: QuotaWrite,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// Sets `revoked_at` and `revoked_reason` unless already revoked
    /// ([`Conflict::AlreadyRevoked`](crate::Conflict)).
    async fn revoke_key(
        &self,
        key_id: &str,
        at: Timestamp,
        reason: Option<&str>,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// Creates `successor` and marks `key_id` as rotated to it until `grace_until`, in one
    /// transaction. Fails with `AlreadyRotated` or `AlreadyRevoked` (so of concurrent
    /// rotations of one key exactly one succeeds) and `NotFound`.
    async fn rotate_key(
        &self,
        key_id: &str,
        successor: &KeyRecord,
        grace_until: Timestamp,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    async fn delete_key(&self, key_id: &str, change: Change<'_>) -> Result<(), StoreError>;
    /// Inserts imported keys (each with `import` set), skipping any whose lookup is
    /// already stored, in one transaction. When at least one was inserted, `audit` is
    /// written with `imported` (count) and `key_ids` added to its changes. Returns, per
    /// key, whether it was inserted.
    async fn import_keys(
        &self,
        keys: &[KeyRecord],
        audit: &AuditEvent,
    ) -> Result<Vec<bool>, StoreError>;
    /// Whether any imported key is stored.
    async fn has_imported_keys(&self) -> Result<bool, StoreError>;
    /// The key id stored under an import lookup.
    async fn key_id_by_import_lookup(&self, lookup: &str) -> Result<Option<String>, StoreError>;
    /// Moves an imported key to the native verifier `to` and forgets its old digest, if
    /// that was not done already. Returns whether it did. Not audited (as `rehash_key`).
    async fn complete_import(&self, key_id: &str, to: &Verifier) -> Result<bool, StoreError>;
    async fn count_root_keys(&self) -> Result<u64, StoreError>;
    /// Whether any key is stored (root keys included): the pepper is then in use.
    async fn holds_keys(&self) -> Result<bool, StoreError>;
    /// Whether any key holds a sealed plaintext: the master key is then in use.
    async fn holds_sealed_keys(&self) -> Result<bool, StoreError>;
    /// The check values of the secret `name` (`pepper`, `master_key`), by version.
    async fn secret_checks(&self, name: &str) -> Result<Vec<(u32, Vec<u8>)>, StoreError>;
    /// When each version of the secret `name` had its check value stored: when a server
    /// first started with it.
    async fn secret_check_times(&self, name: &str) -> Result<Vec<(u32, Timestamp)>, StoreError>;
    /// Stores the check value of a secret version, unless one is stored already.
    async fn record_secret_check(
        &self,
        name: &str,
        version: u32,
        check: &[u8],
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Imported keys whose lookup still has the old, unpeppered shape, as
    /// `(key_id, import)`: keys already on the native verifier (their lookup alone is
    /// old), and, only while the migration's `peppered-imports` mark is present, keys
    /// still on their old system's plain digest.
    async fn legacy_imports(&self) -> Result<Vec<(String, Import)>, StoreError>;
    /// Stores each key's peppered import in place of the old one, given as
    /// `(key_id, old lookup, new import)`: a key still on its digest moves to pepper
    /// `version`. A row whose lookup is no longer the old one (another process upgraded
    /// it first) is left alone, so nothing is peppered twice. With `pending_done` the
    /// migration's mark is cleared in the same transaction.
    async fn finish_import_upgrade(
        &self,
        upgraded: &[(String, String, Import)],
        version: u32,
        pending_done: bool,
    ) -> Result<(), StoreError>;
    /// Every pepper version some stored verifier uses (a server refuses to start
    /// without all of them).
    async fn pepper_versions(&self) -> Result<Vec<u32>, StoreError>;
    /// How many keys (root keys included) use each pepper version, ascending.
    async fn pepper_version_counts(&self) -> Result<Vec<(u32, u64)>, StoreError>;
    /// Replaces a key's verifier with `to` if it still uses pepper version `from` (so a
    /// concurrent re-hash or change is never overwritten). Returns whether it did.
    /// Not audited: it changes how a secret is stored, not what the key is or may do.
    async fn rehash_key(&self, key_id: &str, from: u32, to: &Verifier) -> Result<bool, StoreError>;

    // Lifecycle.
    /// Live keys (not revoked, not rotated) whose effective expiry is after `now` and
    /// within their keyspace's warning window, soonest first.
    async fn expiring_keys(
        &self,
        visible: KeyspaceScope<'_>,
        keyspace_id: Option<&str>,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<ExpiringKey>, StoreError>;
    /// Stores one `key.expiring` event per expiring key and expiry (idempotent); returns
    /// how many were new.
    async fn record_expiring_events(&self, now: Timestamp) -> Result<u64, StoreError>;
    /// The event log, newest first.
    async fn list_events(
        &self,
        filter: &EventFilter<'_>,
        page: PageRequest,
    ) -> Result<Page<Event>, StoreError>;

    // Audit.
    /// Writes an audit event for something that changes nothing else (revealing a key).
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    async fn list_audit_events(
        &self,
        filter: &AuditFilter<'_>,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError>;

    // Idempotency.
    /// Records leaked keys in one transaction: for each key not reported before, its
    /// action (revoke unless already revoked, or disable) and its audit event. A key
    /// reported before writes nothing unless this leak's action is `Revoked` or
    /// `Disabled` (the caller found it working again). Returns, per leak, whether it
    /// was recorded now (of a key named twice, only its first leak).
    /// `batch`, when given, is remembered for [`Store::leak_batch_seen`].
    async fn record_leaks(
        &self,
        leaks: &[LeakWrite],
        batch: Option<SeenBatch<'_>>,
    ) -> Result<Vec<bool>, StoreError>;
    /// Whether a signed batch with this digest was recorded before.
    async fn leak_batch_seen(&self, digest: &[u8; 32]) -> Result<bool, StoreError>;
    async fn purge_leak_batches(&self, before: Timestamp) -> Result<u64, StoreError>;
    async fn idempotent_response(
        &self,
        actor: &str,
        idempotency_key: &str,
    ) -> Result<Option<IdempotentResponse>, StoreError>;
    /// Deletes stored responses created before `before`; returns how many.
    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64, StoreError>;

    // Usage.
    /// Adds the counts and raises `last_used_at`, in one transaction.
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError>;
    /// Subtracts quota uses (after applying a refill where one happened), in one
    /// transaction. Counters never go below zero. Not audited: uses are not changes.
    async fn record_quota_use(&self, uses: &[QuotaUse]) -> Result<(), StoreError>;
    /// Stored counts for one key since `since` (inclusive), oldest first.
    async fn usage(&self, key_id: &str, since: i64) -> Result<Vec<UsageCount>, StoreError>;
    /// Counts per bucket and outcome of `target`'s keys, buckets in `[from, to)` (Unix
    /// seconds, aligned by the caller), oldest first.
    async fn usage_series(
        &self,
        target: UsageTarget<'_>,
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageRow>, StoreError>;
    /// Counts per key and outcome over buckets in `[from, to)`.
    async fn usage_totals(
        &self,
        key_ids: &[String],
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Result<Vec<KeyUsageTotal>, StoreError>;
    /// Deletes buckets of `granularity` that start before `before`; returns how many rows.
    async fn purge_usage(&self, granularity: Granularity, before: i64) -> Result<u64, StoreError>;

    // Anomaly alerts.
    /// Activity in minutes `(after, through]`, by minute, of every key with stored usage
    /// that could alert: at or above `floor` (or its keyspace's own thresholds), or with
    /// a dead-key use or a limited answer.
    async fn minute_activity(
        &self,
        after: i64,
        through: i64,
        floor: AlertFloor,
    ) -> Result<Vec<MinuteActivity>, StoreError>;
    /// A key's verifications in minutes `[from, to)`.
    async fn usage_sum(&self, key_id: &str, from: i64, to: i64) -> Result<u64, StoreError>;
    /// Notes `alert`. When the key's last alert of the same kind was seen more than
    /// `quiet` seconds before `alert.minute`, a new episode starts and its event is stored
    /// (returns true); otherwise the episode goes on, with no new event.
    async fn record_alert(
        &self,
        alert: &Alert,
        quiet: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    // Webhooks.
    /// Creates the endpoint; it receives events stored from now on.
    async fn create_webhook(&self, hook: &Webhook, change: Change<'_>) -> Result<(), StoreError>;
    async fn webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError>;
    /// Endpoints, newest first; with `visible`, only those of these keyspaces.
    async fn list_webhooks(
        &self,
        visible: KeyspaceScope<'_>,
        page: PageRequest,
    ) -> Result<Page<Webhook>, StoreError>;
    async fn update_webhook(&self, hook: &Webhook, change: Change<'_>) -> Result<(), StoreError>;
    /// Deletes the endpoint with its deliveries and their log.
    async fn delete_webhook(&self, id: &str, change: Change<'_>) -> Result<(), StoreError>;
    /// Turns up to `limit` newly stored events into deliveries for the endpoints that
    /// want them (enabled then), due at `now_ms`. Returns how many events were read; safe
    /// to run on several nodes at once.
    async fn fan_out_events(&self, now_ms: i64, limit: u32) -> Result<u64, StoreError>;
    /// Claims up to `limit` due deliveries for `lease_ms`: no other worker takes them
    /// until the lease runs out (a worker that dies mid-delivery is thus replaced).
    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Logs an attempt and moves its delivery on (delivered, retry at, or failed).
    async fn record_attempt(&self, attempt: &Attempt, next: AfterAttempt)
    -> Result<(), StoreError>;
    /// An endpoint's deliveries, newest first.
    async fn list_deliveries(
        &self,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<Delivery>, StoreError>;
    async fn delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<Option<Delivery>, StoreError>;
    /// A delivery's attempts, oldest first.
    async fn delivery_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, StoreError>;
    /// Puts a delivery back in the queue, due at `now_ms`, with a fresh retry period.
    async fn resend_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
        now_ms: i64,
        change: Change<'_>,
    ) -> Result<(), StoreError>;

    // The dashboard's operators and the browser sessions of the dashboard and portal.
    /// Fails with [`Conflict::EmailTaken`](crate::Conflict) when the email is in use.
    async fn create_operator(
        &self,
        operator: &Operator,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    async fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError>;
    async fn operator_by_email(&self, email: &str) -> Result<Option<Operator>, StoreError>;
    /// Every operator, by email.
    async fn list_operators(&self) -> Result<Vec<Operator>, StoreError>;
    /// Stores a new password hash and ends the operator's sessions.
    async fn set_operator_password(
        &self,
        id: &str,
        password_hash: &str,
        at: Timestamp,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// Deletes the operator and ends its sessions.
    async fn delete_operator(&self, id: &str, change: Change<'_>) -> Result<(), StoreError>;
    async fn create_session(
        &self,
        session: &WebSession,
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// The session of `kind` stored under `token_hash`, expired or not (the caller
    /// decides).
    async fn session(
        &self,
        token_hash: &[u8; 32],
        kind: SessionKind,
    ) -> Result<Option<WebSession>, StoreError>;
    async fn touch_session(&self, token_hash: &[u8; 32], at: Timestamp) -> Result<(), StoreError>;
    /// Deletes the session (if it is still there) with the audit event of its end.
    async fn end_session(
        &self,
        token_hash: &[u8; 32],
        change: Change<'_>,
    ) -> Result<(), StoreError>;
    /// Deletes and returns the session of `kind` under `token_hash`: of several
    /// concurrent takers exactly one gets it (single-use portal links).
    async fn take_session(
        &self,
        token_hash: &[u8; 32],
        kind: SessionKind,
    ) -> Result<Option<WebSession>, StoreError>;
    /// Notes sign-in attempt `attempt` in each bucket. An attempt is noted before its
    /// password is checked (so parallel guesses all count) and forgotten if it succeeds.
    async fn record_login_failure(
        &self,
        attempt: &str,
        buckets: &[String],
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Removes attempt `attempt` from every bucket.
    async fn forget_login_attempt(&self, attempt: &str) -> Result<(), StoreError>;
    /// Failed sign-ins noted in `bucket` at or after `since`.
    async fn login_failures(&self, bucket: &str, since: Timestamp) -> Result<u64, StoreError>;
    async fn clear_login_failures(&self, bucket: &str) -> Result<(), StoreError>;
    /// Deletes sessions and links past their absolute expiry, and failed sign-ins noted
    /// before `failures_before`; returns how many rows.
    async fn purge_web(
        &self,
        now: Timestamp,
        failures_before: Timestamp,
    ) -> Result<u64, StoreError>;

    // Several nodes on one database.
    /// A feed of every [`Invalidation`] committed from now on, by any node (this one
    /// included), or `None` when the engine has no such channel: SQLite has one process
    /// serving it, which invalidates its own cache.
    async fn listen(&self) -> Result<Option<Box<dyn ChangeFeed>>, StoreError>;
    /// Whether [`Store::listen`] gives a feed: several nodes may then share the database,
    /// and a node's cache must follow the feed.
    fn has_change_feed(&self) -> bool;
    /// Sends `what` to every feed (nodes send themselves [`Invalidation::Ping`]); does
    /// nothing where there is no feed.
    async fn publish(&self, what: &Invalidation) -> Result<(), StoreError>;
}

/// See [`Store::listen`].
#[async_trait]
pub trait ChangeFeed: Send + fmt::Debug {
    /// The next invalidation, in commit order. `Ok(None)` means the connection was lost
    /// and has been re-established: whatever was sent in between is lost, so a cache
    /// must drop everything it holds.
    async fn next(&mut self) -> Result<Option<Invalidation>, StoreError>;
}
