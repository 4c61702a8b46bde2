//! The SQL both engines run: `impl Store` written once, each resource's queries in a
//! file of its own.
//!
//! This directory is compiled twice, as `sqlite::engine` and `postgres::engine` (each
//! parent includes `engine/mod.rs` with `#[path]`). Through `super::` it finds its
//! engine's `Db` (the sqlx database), `Engine` (the store type, with `begin()`, `reads()`
//! and `writes()`), `dialect` (the few SQL spellings the engines disagree on) and
//! `notify` (cross-node cache invalidation, a no-op on SQLite); the files below find the
//! same four here, as `super::Db` and so on. Everything else is the same text for both:
//! placeholders are `$N`, which SQLite and PostgreSQL both accept, so a query has one
//! definition; where the engines truly differ, the difference is a `dialect` item.
//!
//! A trait is implemented in one block, so `impl Store` below only hands each method to
//! the function of the same name in its resource's file:
//! - `rows`: mapping rows to model types and back, and constraint errors to conflicts;
//! - `audit`: the audit event and idempotent response every mutation commits with, and
//!   their listings;
//! - `keyspaces`, `owners`, `keys`: the three resources, created, read, listed, changed;
//! - `imports`: keys imported from another system, and their upgrade to peppered lookups;
//! - `peppers`: pepper versions in use, rehashing, and secret check values;
//! - `events`: the lifecycle event log and expiry warnings;
//! - `leaks`: keys reported as leaked, and the signed batches already seen;
//! - `activity`: usage counts and their roll-ups, quota use, and anomaly alerts;
//! - `webhooks`: endpoints, the outbox and the delivery log.

use anyhow::Context as _;
use async_trait::async_trait;
use keyhaven_core::Verifier;

use super::{Db, Engine, dialect, notify};
use crate::activity::{
    Alert, AlertFloor, EventFilter, Granularity, KeyUsageTotal, MinuteActivity, UsageRow,
    UsageTarget,
};
use crate::error::{Doing as _, StoreError};
use crate::leak::{LeakWrite, SeenBatch};
use crate::model::{
    AuditEvent, AuditFilter, Change, CreditOp, CreditsChange, Event, ExpiringKey,
    IdempotentResponse, Import, Invalidation, KeyFilter, KeyForVerify, KeyRecord, Keyspace,
    KeyspaceScope, Owner, Page, PageRequest, Plan, QuotaTarget, QuotaUse, QuotaWrite,
    RatelimitOverride, Role, Timestamp, UsageBatch, UsageCount,
};
use crate::store::{ChangeFeed, Store};
use crate::web::{Operator, SessionKind, WebSession};
use crate::webhook::{AfterAttempt, Attempt, Delivery, DeliveryStatus, DueDelivery, Webhook};

mod activity;
pub(super) mod audit;
mod credits;
mod events;
mod imports;
pub(super) mod keys;
mod keyspaces;
mod leaks;
mod overrides;
mod owners;
mod peppers;
mod plans;
mod roles;
mod rows;
mod web;
mod webhooks;

/// `impl Store for Engine`: the methods in `inline` as written, and each other method
/// handed to the function of the same name in its resource's file (which takes the store
/// first), naming what it was doing on an unexpected error. An entry reads
/// `file::method(arguments) -> output, "what it does";` and stands for
/// `async fn method(&self, arguments) -> Result<output, StoreError>`.
macro_rules! impl_store {
    (
        inline { $($inline:tt)* }
        $($file:ident::$method:ident($($arg:ident: $ty:ty),* $(,)?) -> $out:ty, $doing:literal;)*
    ) => {
        #[async_trait]
        impl Store for Engine {
            $($inline)*

            $(
                async fn $method(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
                    $file::$method(self, $($arg),*).await.doing($doing)
                }
            )*
        }
    };
}

impl_store! {
    inline {
        async fn migrate(&self) -> Result<(), StoreError> {
            super::MIGRATOR
                .run(self.writes())
                .await
                .context("applying database migrations")?;
            Ok(())
        }

        async fn ping(&self) -> Result<(), StoreError> {
            sqlx::query("SELECT 1")
                .execute(self.reads())
                .await
                .context("checking the database connection")?;
            Ok(())
        }

        async fn check_writable(&self) -> Result<(), StoreError> {
            let mut tx = self.begin().await?;
            sqlx::query(
                "UPDATE keyspaces SET updated_at = updated_at WHERE id = 'ks_root'",
            )
            .execute(&mut *tx)
            .await
            .context("writing to the database")?;
            tx.rollback().await.context("rolling back the write check")?;
            Ok(())
        }

        async fn listen(&self) -> Result<Option<Box<dyn ChangeFeed>>, StoreError> {
            self.listen_feed().await
        }

        fn has_change_feed(&self) -> bool {
            super::HAS_CHANGE_FEED
        }

        async fn publish(&self, what: &Invalidation) -> Result<(), StoreError> {
            self.publish_invalidation(what)
                .await
                .doing("publishing a cache invalidation")
        }
    }

    keyspaces::create_keyspace(ks: &Keyspace, change: Change<'_>) -> (), "creating a keyspace";
    keyspaces::keyspace(id: &str) -> Option<Keyspace>, "reading a keyspace";
    keyspaces::list_keyspaces(visible: KeyspaceScope<'_>, page: PageRequest) -> Page<Keyspace>,
        "listing keyspaces";
    keyspaces::update_keyspace(ks: &Keyspace, change: Change<'_>) -> (), "updating a keyspace";
    keyspaces::delete_keyspace(id: &str, change: Change<'_>) -> (), "deleting a keyspace";
    owners::create_owner(owner: &Owner, change: Change<'_>) -> (), "creating an owner";
    owners::owner(id: &str) -> Option<Owner>, "reading an owner";
    roles::create_role(role: &Role, change: Change<'_>) -> (), "creating a role";
    roles::role(keyspace_id: &str, name: &str) -> Option<Role>, "reading a role";
    roles::list_roles(keyspace_id: &str) -> Vec<Role>, "listing roles";
    roles::update_role(role: &Role, change: Change<'_>) -> (), "updating a role";
    roles::delete_role(keyspace_id: &str, name: &str, change: Change<'_>) -> (),
        "deleting a role";
    plans::create_plan(plan: &Plan, change: Change<'_>) -> (), "creating a plan";
    plans::plan(name: &str) -> Option<Plan>, "reading a plan";
    plans::list_plans() -> Vec<Plan>, "listing plans";
    plans::update_plan(plan: &Plan, seed_quota: bool, change: Change<'_>) -> (),
        "updating a plan";
    plans::delete_plan(name: &str, change: Change<'_>) -> (), "deleting a plan";
    overrides::set_ratelimit_override(o: &RatelimitOverride, change: Change<'_>) -> (),
        "setting a rate limit override";
    overrides::ratelimit_overrides(namespace: &str) -> Vec<RatelimitOverride>,
        "reading rate limit overrides";
    overrides::delete_ratelimit_override(namespace: &str, identifier: &str, change: Change<'_>)
        -> (), "deleting a rate limit override";
    credits::change_credits(
        target: &QuotaTarget,
        op: CreditOp,
        max: u64,
        now: Timestamp,
        audit: &AuditEvent,
        answer: &(dyn Fn(u64) -> Result<Option<IdempotentResponse>, StoreError> + Send + Sync),
    ) -> CreditsChange, "changing credits";
    owners::owner_by_external_id(external_id: &str) -> Option<Owner>,
        "reading an owner by external id";
    owners::list_owners(page: PageRequest) -> Page<Owner>, "listing owners";
    owners::update_owner(owner: &Owner, quota: QuotaWrite, change: Change<'_>) -> (),
        "updating an owner";
    owners::delete_owner(id: &str, change: Change<'_>) -> (), "deleting an owner";
    keys::create_key(key: &KeyRecord, change: Change<'_>) -> (), "creating a key";
    keys::create_keys(
        keys: &[KeyRecord],
        audits: &[AuditEvent],
        idempotency: Option<&IdempotentResponse>,
    ) -> (), "creating keys";
    keys::key_for_verify(key_id: &str) -> Option<KeyForVerify>, "reading a key for verification";
    keys::keys_for_verify(key_ids: &[String]) -> Vec<KeyForVerify>,
        "reading keys for a leak report";
    keys::list_keys(filter: &KeyFilter<'_>, page: PageRequest) -> Page<KeyRecord>, "listing keys";
    keys::update_key(key: &KeyRecord, quota: QuotaWrite, change: Change<'_>) -> (),
        "updating a key";
    keys::revoke_key(key_id: &str, at: Timestamp, reason: Option<&str>, change: Change<'_>) -> (),
        "revoking a key";
    keys::rotate_key(
        key_id: &str,
        successor: &KeyRecord,
        grace_until: Timestamp,
        change: Change<'_>,
    ) -> (), "rotating a key";
    keys::delete_key(key_id: &str, change: Change<'_>) -> (), "deleting a key";
    imports::import_keys(keys: &[KeyRecord], audit: &AuditEvent) -> Vec<bool>, "importing keys";
    imports::has_imported_keys() -> bool, "checking whether imported keys are stored";
    imports::key_id_by_import_lookup(lookup: &str) -> Option<String>,
        "finding an imported key by its lookup";
    imports::complete_import(key_id: &str, to: &Verifier) -> bool,
        "moving an imported key to its native verifier";
    keys::count_root_keys() -> u64, "counting root keys";
    keys::holds_keys() -> bool, "checking whether keys are stored";
    keys::holds_sealed_keys() -> bool, "checking whether recoverable keys are stored";
    peppers::secret_checks(name: &str) -> Vec<(u32, Vec<u8>)>, "reading secret check values";
    peppers::secret_check_times(name: &str) -> Vec<(u32, Timestamp)>,
        "reading when secret versions were first used";
    peppers::record_secret_check(name: &str, version: u32, check: &[u8], now: Timestamp) -> (),
        "recording a secret check value";
    imports::legacy_imports() -> Vec<(String, Import)>, "finding imported keys to upgrade";
    imports::finish_import_upgrade(
        upgraded: &[(String, String, Import)],
        version: u32,
        pending_done: bool,
    ) -> (), "storing upgraded imports";
    peppers::pepper_versions() -> Vec<u32>, "listing the pepper versions in use";
    peppers::pepper_version_counts() -> Vec<(u32, u64)>, "counting keys per pepper version";
    peppers::rehash_key(key_id: &str, from: u32, to: &Verifier) -> bool, "rehashing a key";
    events::expiring_keys(
        visible: KeyspaceScope<'_>,
        keyspace_id: Option<&str>,
        now: Timestamp,
        limit: u32,
    ) -> Vec<ExpiringKey>, "listing expiring keys";
    events::record_expiring_events(now: Timestamp) -> u64, "recording key.expiring events";
    events::list_events(filter: &EventFilter<'_>, page: PageRequest) -> Page<Event>,
        "listing events";
    audit::append_audit(event: &AuditEvent) -> (), "appending an audit event";
    audit::list_audit_events(filter: &AuditFilter<'_>, page: PageRequest) -> Page<AuditEvent>,
        "listing audit events";
    audit::idempotent_response(actor: &str, idempotency_key: &str) -> Option<IdempotentResponse>,
        "reading an idempotent response";
    audit::purge_idempotency(before: Timestamp) -> u64, "purging idempotent responses";
    leaks::record_leaks(leaks: &[LeakWrite], batch: Option<SeenBatch<'_>>) -> Vec<bool>,
        "recording leaked keys";
    leaks::leak_batch_seen(digest: &[u8; 32]) -> bool, "checking for a replayed leak batch";
    leaks::purge_leak_batches(before: Timestamp) -> u64, "purging leak batch digests";
    activity::record_usage(batch: &UsageBatch) -> (), "recording usage";
    activity::record_quota_use(uses: &[QuotaUse]) -> (), "recording quota use";
    activity::usage(key_id: &str, since: i64) -> Vec<UsageCount>, "reading usage";
    activity::usage_series(
        target: UsageTarget<'_>,
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Vec<UsageRow>, "reading a usage series";
    activity::usage_totals(
        key_ids: &[String],
        granularity: Granularity,
        from: i64,
        to: i64,
    ) -> Vec<KeyUsageTotal>, "reading usage totals";
    activity::purge_usage(granularity: Granularity, before: i64) -> u64, "purging usage";
    activity::minute_activity(after: i64, through: i64, floor: AlertFloor) -> Vec<MinuteActivity>,
        "reading minute activity";
    activity::usage_sum(key_id: &str, from: i64, to: i64) -> u64, "summing usage";
    activity::record_alert(alert: &Alert, quiet: i64, now: Timestamp) -> bool, "recording an alert";
    webhooks::create_webhook(hook: &Webhook, change: Change<'_>) -> (), "creating a webhook";
    webhooks::webhook(id: &str) -> Option<Webhook>, "reading a webhook";
    webhooks::list_webhooks(visible: KeyspaceScope<'_>, page: PageRequest) -> Page<Webhook>,
        "listing webhooks";
    webhooks::update_webhook(hook: &Webhook, change: Change<'_>) -> (), "updating a webhook";
    webhooks::delete_webhook(id: &str, change: Change<'_>) -> (), "deleting a webhook";
    webhooks::fan_out_events(now_ms: i64, limit: u32) -> u64, "fanning out events to webhooks";
    webhooks::claim_deliveries(now_ms: i64, lease_ms: i64, limit: u32) -> Vec<DueDelivery>,
        "claiming webhook deliveries";
    webhooks::record_attempt(attempt: &Attempt, next: AfterAttempt) -> (),
        "recording a delivery attempt";
    webhooks::list_deliveries(
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Page<Delivery>, "listing webhook deliveries";
    webhooks::delivery(webhook_id: &str, delivery_id: &str) -> Option<Delivery>,
        "reading a webhook delivery";
    webhooks::delivery_attempts(delivery_id: &str) -> Vec<Attempt>, "listing delivery attempts";
    webhooks::resend_delivery(
        webhook_id: &str,
        delivery_id: &str,
        now_ms: i64,
        change: Change<'_>,
    ) -> (), "resending a webhook delivery";
    web::create_operator(operator: &Operator, change: Change<'_>) -> (), "creating an operator";
    web::operator(id: &str) -> Option<Operator>, "reading an operator";
    web::operator_by_email(email: &str) -> Option<Operator>, "reading an operator by email";
    web::list_operators() -> Vec<Operator>, "listing operators";
    web::set_operator_password(
        id: &str,
        password_hash: &str,
        at: Timestamp,
        change: Change<'_>,
    ) -> (), "setting an operator's password";
    web::delete_operator(id: &str, change: Change<'_>) -> (), "deleting an operator";
    web::create_session(session: &WebSession, change: Change<'_>) -> (), "starting a session";
    web::session(token_hash: &[u8; 32], kind: SessionKind) -> Option<WebSession>,
        "reading a session";
    web::touch_session(token_hash: &[u8; 32], at: Timestamp) -> (), "noting a session's activity";
    web::end_session(token_hash: &[u8; 32], change: Change<'_>) -> (), "ending a session";
    web::take_session(token_hash: &[u8; 32], kind: SessionKind) -> Option<WebSession>,
        "taking a single-use link";
    web::record_login_failure(attempt: &str, buckets: &[String], at: Timestamp) -> (),
        "recording a sign-in attempt";
    web::forget_login_attempt(attempt: &str) -> (), "forgetting a sign-in attempt";
    web::login_failures(bucket: &str, since: Timestamp) -> u64, "counting failed sign-ins";
    web::clear_login_failures(bucket: &str) -> (), "clearing failed sign-ins";
    web::purge_web(now: Timestamp, failures_before: Timestamp) -> u64,
        "purging expired sessions";
}
