#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The store conformance suite: what every engine behind `Store` must do.
//!
//! Each check (a `pub async fn` in one of the topic modules below: keyspaces, keys,
//! webhooks, …) takes `&dyn Store` only, starts from a fresh, empty store and never calls
//! anything engine-specific, so a new engine runs the very same suite by
//! adding one line: `conformance_tests!(engine_name, constructor());`, where the
//! constructor is an async expression yielding `Some((store, guard))` (`None` skips, for an
//! engine whose server is not available; never under CI) (the guard keeps whatever
//! backs the store, a temporary directory or database, alive for the test).
//!
//! One test binary (`conformance`): `main.rs` lists the checks, `support.rs` holds the
//! fixtures they share, and each other file one topic's checks.

use keyhaven_store::{PgOptions, PgStore, SqliteStore, Store};

mod alerts;
mod audit;
mod idempotency;
mod imports;
mod ip_allowlists;
mod key_lists;
mod keys;
mod keyspaces;
mod leaks;
mod limits;
mod overrides;
mod owners;
mod plans;
mod roles;
mod support;
mod usage;
mod web;
mod webhooks;

/// Expands to one `#[tokio::test]` per check listed (as `topic::check`), each on a store
/// of its own from `$open` (an async expression yielding `(store, guard)`, where `store` derefs to a
/// `dyn Store` and `guard` keeps its backing alive until the check is done).
macro_rules! conformance_tests {
    ($engine:ident, $open:expr) => {
        conformance_tests!(@each $engine, $open;
            keyspaces::keyspace_crud,
            keyspaces::root_keyspace_is_invisible,
            keyspaces::prefixes_are_unique,
            keyspaces::ids_are_unique,
            keyspaces::keyspace_list_scopes_and_pages,
            owners::owners_crud_and_external_ids,
            keys::keys_round_trip_and_join_for_verify,
            keys::update_key_round_trips_every_mutable_field,
            keys::revoke_and_delete,
            keys::rotation_is_atomic_and_happens_once,
            keys::batch_creation_is_all_or_nothing,
            key_lists::expiring_keys_and_their_events,
            key_lists::key_lists_filter_and_paginate,
            audit::every_mutation_writes_exactly_one_audit_event,
            audit::audit_filters_and_pages,
            idempotency::idempotent_responses_share_the_transaction,
            idempotency::concurrent_creations_are_answered_each_for_itself,
            usage::usage_adds_up_and_last_use_only_moves_forward,
            usage::usage_rolls_up_into_hours_and_days,
            usage::a_large_usage_batch_lands_whole,
            imports::imports_skip_taken_lookups,
            imports::pepper_versions_in_use,
            limits::limits_and_quota_counters,
            alerts::alerts_start_one_event_per_episode,
            webhooks::webhook_outbox_delivers_each_event_once_per_endpoint,
            web::operators_and_their_sessions,
            web::portal_links_are_single_use,
            web::failed_sign_ins_are_counted_per_bucket,
            web::key_lists_search_and_filter_by_state,
            web::keyspace_branding_round_trips,
            leaks::leaks_act_once_with_their_events,
            leaks::keyspace_leak_policy_round_trips,
            ip_allowlists::ip_allowlists_round_trip_and_reach_verification,
            roles::roles_resolve_into_a_keys_permissions,
            plans::plans_apply_to_their_keys_when_read,
            overrides::ratelimit_overrides_are_set_listed_and_deleted,
        );
    };
    (@each $engine:ident, $open:expr; $($topic:ident :: $check:ident),+ $(,)?) => {
        mod $engine {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let Some((store, guard)) = $open.await else {
                        return; // the engine's server is not available here (never under CI)
                    };
                    crate::$topic::$check(&*store).await;
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

/// SQLite's group commit only: a queued creation whose caller went away is never written
/// (on PostgreSQL a creation runs on the caller's own future and connection, and what a
/// dropped one has sent may still commit).
#[tokio::test]
async fn sqlite_drops_a_queued_creation_nobody_waits_for() {
    let (store, _dir) = open_sqlite().await.unwrap();
    idempotency::a_creation_nobody_waits_for_is_not_written(store.as_ref()).await;
}

conformance_tests!(sqlite, open_sqlite());
conformance_tests!(postgres, open_postgres());
