//! The PostgreSQL engine, for several Keyhaven nodes on one database.
//!
//! The queries are the SQLite engine's (`engine/`, compiled once per engine); what is
//! PostgreSQL's own lives here: the pool, the durability check, row locks for
//! check-then-write transactions (`dialect::FOR_UPDATE`), and cross-node cache
//! invalidation. Every mutation that changes how a key verifies sends an
//! [`Invalidation`] with `pg_notify` inside its own transaction, so PostgreSQL delivers it
//! to every listening node exactly when the change commits; [`PgStore::listen`]'s feed is
//! what the server's cache follows.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::error::StoreError;
use crate::model::{Change, Invalidation, KeyRecord};
use crate::store::{ChangeFeed, Store as _};

// Deliberately compiled once per engine (see the top of engine/mod.rs): the queries
// have one definition, the types are each engine's own.
#[allow(clippy::duplicate_mod)]
#[path = "engine/mod.rs"]
mod engine;

/// Whether this engine has a change feed (see `Store::listen`).
const HAS_CHANGE_FEED: bool = true;

/// How long opening waits for the server to answer a first connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

type Db = Postgres;
type Engine = PgStore;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The `LISTEN`/`NOTIFY` channel that carries [`Invalidation`]s.
pub const CHANNEL: &str = "keyhaven_cache";

/// How a PostgreSQL store is opened.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections in the pool (the change feed holds one more while it listens).
    pub max_connections: u32,
    /// Run even when the server would lose acknowledged commits in a crash (`fsync` or
    /// `synchronous_commit` off). For throwaway databases only.
    pub allow_unsafe_durability: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            allow_unsafe_durability: false,
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// The URL holds a password, so only the shape is shown.
impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`), refuses a server that would
    /// lose acknowledged commits (unless allowed), and applies migrations.
    pub async fn open(url: &str, options: &PgOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .context("invalid postgres database URL")?
            .application_name("keyhaven");
        // One direct connection first, briefly: it fails fast and with its real cause
        // (refused, unknown host, authentication), where the pool would wait and say only
        // that it timed out.
        let whence = format!("{}:{}", connect.get_host(), connect.get_port());
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&connect),
        )
        .await
        {
            Ok(Ok(probe)) => {
                let _ = sqlx::Connection::close(probe).await;
            }
            Ok(Err(e)) => {
                return Err(
                    anyhow::anyhow!("cannot connect to PostgreSQL at {whence}: {e}").into(),
                );
            }
            Err(_) => {
                return Err(anyhow::anyhow!(
                    "cannot connect to PostgreSQL at {whence}: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )
                .into());
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await
            .context("connecting to PostgreSQL")?;
        let store = Self { pool };
        if !options.allow_unsafe_durability {
            store.require_durability().await?;
        }
        store.migrate().await?;
        Ok(store)
    }

    /// Fails when `fsync` or `synchronous_commit` is off: either way a commit the server
    /// acknowledged can vanish in a crash, and Keyhaven answers "created" or "revoked"
    /// only for what is durable.
    pub async fn require_durability(&self) -> Result<(), StoreError> {
        let fsync: String = sqlx::query_scalar("SELECT current_setting('fsync')")
            .fetch_one(&self.pool)
            .await?;
        let sync_commit: String =
            sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
                .fetch_one(&self.pool)
                .await?;
        let mut off = Vec::new();
        if fsync != "on" {
            off.push(format!("fsync = {fsync}"));
        }
        if sync_commit == "off" {
            off.push(format!("synchronous_commit = {sync_commit}"));
        }
        if off.is_empty() {
            return Ok(());
        }
        Err(anyhow::anyhow!(
            "refusing to run on a PostgreSQL server with {}: acknowledged writes could be \
             lost in a crash. Turn it on, or set allow_unsafe_durability = true \
             (KEYHAVEN_ALLOW_UNSAFE_DURABILITY=true) for a throwaway database",
            off.join(" and ")
        )
        .into())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// No group commit: concurrent creations commit on connections of their own, and the
    /// server's WAL flush already serves several commits at once.
    async fn create_key_in_group(
        &self,
        _key: &KeyRecord,
        _change: Change<'_>,
    ) -> Option<Result<(), StoreError>> {
        None
    }

    fn reads(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn writes(&self) -> &PgPool {
        &self.pool
    }

    async fn listen_feed(&self) -> Result<Option<Box<dyn ChangeFeed>>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .context("opening the change feed")?;
        // A lost connection is re-established, LISTEN included, *before* `try_recv`
        // reports it: the cache is dropped after that, never before (the sqlx default,
        // pinned here because the staleness bound depends on it).
        listener.eager_reconnect(true);
        listener
            .listen(CHANNEL)
            .await
            .context("listening for changes")?;
        Ok(Some(Box::new(PgFeed { listener })))
    }

    async fn publish_invalidation(&self, what: &Invalidation) -> Result<(), StoreError> {
        send(&self.pool, what).await
    }
}

/// Tells every node, when (and only if) `tx` commits.
async fn notify(
    tx: &mut Transaction<'static, Postgres>,
    what: Invalidation,
) -> Result<(), StoreError> {
    send(&mut **tx, &what).await
}

async fn send<'e>(
    to: impl sqlx::Executor<'e, Database = Postgres>,
    what: &Invalidation,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(what.encode())
        .execute(to)
        .await?;
    Ok(())
}

struct PgFeed {
    listener: PgListener,
}

impl fmt::Debug for PgFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgFeed").finish_non_exhaustive()
    }
}

#[async_trait]
impl ChangeFeed for PgFeed {
    async fn next(&mut self) -> Result<Option<Invalidation>, StoreError> {
        loop {
            match self.listener.try_recv().await {
                Ok(Some(n)) => match Invalidation::decode(n.payload()) {
                    Some(what) => return Ok(Some(what)),
                    None => tracing::warn!("ignoring an unknown notification on {CHANNEL}"),
                },
                Ok(None) => return Ok(None),
                Err(e) => return Err(anyhow::Error::new(e).context("change feed").into()),
            }
        }
    }
}

/// PostgreSQL's spelling of what the engines disagree on (see `sqlite::dialect`).
mod dialect {
    pub const GREATEST: &str = "GREATEST";
    pub const LEAST: &str = "LEAST";
    /// Check-then-write transactions lock the row they checked: under READ COMMITTED,
    /// two concurrent rotations (or a revoke and a rotation) must not both pass.
    pub const FOR_UPDATE: &str = " FOR UPDATE";
    /// The tail of a `SELECT … FROM keys` that locks the keys it reads in byte order of
    /// their ids, the order every other writer of several keys locks them in (they sort
    /// in Rust). An `UPDATE keys … FROM (list)` alone locks rows in the order its plan
    /// meets them, which two nodes may not share: a deadlock.
    pub const LOCK_KEYS_IN_ORDER: Option<&str> =
        Some(" ORDER BY key_id COLLATE \"C\" FOR NO KEY UPDATE");

    /// `(…)` listing the strings of the JSON array bound at `param`, for `IN`.
    pub fn json_list(param: &str) -> String {
        format!("(SELECT jsonb_array_elements_text({param}::jsonb))")
    }

    /// A fresh event id (`evt_` and 20 hex digits, from a random UUID).
    pub const NEW_EVENT_ID: &str =
        "'evt_' || encode(substring(uuid_send(gen_random_uuid()) from 1 for 10), 'hex')";

    /// A fresh random id: `prefix`, `_` and 20 hex digits.
    pub fn random_id(prefix: &str) -> String {
        format!(
            "'{prefix}_' || encode(substring(uuid_send(gen_random_uuid()) from 1 for 10), 'hex')"
        )
    }

    /// A worker's claim skips rows another node's worker holds.
    pub const FOR_UPDATE_SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

    /// A JSON object (as text) from alternating name and value expressions.
    pub fn json_object(args: &str) -> String {
        format!("json_build_object({args})::text")
    }

    /// RFC 3339 text (UTC, whole seconds) of Unix seconds.
    pub fn rfc3339(unix: &str) -> String {
        format!(
            "to_char(to_timestamp({unix}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        )
    }
}

/// For this workspace's tests: a fresh database on the throwaway PostgreSQL server that
/// `.ci/run` starts (`KEYHAVEN_TEST_POSTGRES_URL`, an admin URL). Behind the `testing`
/// feature, so no build of the product carries it.
#[cfg(feature = "testing")]
pub mod testing {
    use std::sync::atomic::{AtomicU32, Ordering};

    use sqlx::Connection as _;

    /// The variable naming the test server.
    pub const URL_ENV: &str = "KEYHAVEN_TEST_POSTGRES_URL";

    /// The test server's admin URL; `None` (after saying so) when it is not set, in which
    /// case the caller skips. Under `CI=true` a missing server fails instead.
    pub fn admin_url() -> Option<String> {
        match std::env::var(URL_ENV) {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var("CI").as_deref() == Ok("true") => {
                // A skipped engine must not pass CI quietly.
                #[allow(clippy::panic)]
                {
                    panic!("{URL_ENV} is not set under CI: PostgreSQL tests cannot be skipped")
                }
            }
            _ => {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!(
                        "skipped: {URL_ENV} is not set (scripts/test-postgres.sh starts one)"
                    );
                }
                None
            }
        }
    }

    /// Creates an empty database and returns its URL.
    pub async fn fresh_database(admin_url: &str) -> anyhow::Result<String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "kh_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let (base, _) = admin_url
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("admin URL has no database name"))?;
        Ok(format!("{base}/{name}"))
    }
}
