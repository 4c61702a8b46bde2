//! The embedded engine: one SQLite file in WAL mode with `synchronous=FULL`, so every
//! acknowledged commit has reached the disk and survives a `kill -9` or power loss.
//!
//! Writes go through a single connection and start with `BEGIN IMMEDIATE`: SQLite allows
//! one writer at a time anyway, and taking the write lock up front means a transaction
//! that reads before it writes can never fail to upgrade (`SQLITE_BUSY_SNAPSHOT`) when
//! another process (`keyhaven root-key create`) wrote in between. Reads use a pool of
//! their own and never wait for writes.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::error::StoreError;
use crate::group::{GroupCommit, Waiting};
use crate::model::{AuditEvent, Change, IdempotentResponse, Invalidation, KeyRecord};
use crate::store::Store as _;

// Deliberately compiled once per engine (see the top of engine/mod.rs): the queries
// have one definition, the types are each engine's own.
#[allow(clippy::duplicate_mod)]
#[path = "engine/mod.rs"]
mod engine;

/// Whether this engine has a change feed (see `Store::listen`).
const HAS_CHANGE_FEED: bool = false;

type Db = Sqlite;
type Engine = SqliteStore;

/// File name of the database inside the data directory.
pub const DATABASE_FILE_NAME: &str = "keyhaven.db";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Key creations, committed in groups (see `crate::group`).
    creations: GroupCommit<KeyCreation>,
}

/// A key creation waiting for its group: the key and its change, owned.
#[derive(Debug)]
struct KeyCreation {
    key: KeyRecord,
    audit: AuditEvent,
    idempotency: Option<IdempotentResponse>,
}

/// What a process opens the database for, which sets the writer's page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A server: a long-lived process whose writer sees key changes and usage flushes.
    /// Its page cache is part of the server's resident memory for as long as it runs.
    Serve,
    /// A command that writes in bulk (`keyhaven import`): the indexes it inserts into at
    /// random places (key ids, import lookups) stay cached. SQLite's 2 MB default makes
    /// large imports disk-bound long before they are CPU-bound.
    Bulk,
}

impl Workload {
    /// The writer's `cache_size` pragma (negative: KiB).
    fn writer_cache(self) -> &'static str {
        match self {
            Self::Serve => "-16384",
            Self::Bulk => "-65536",
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` for a server and applies
    /// migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_for(path, Workload::Serve).await
    }

    /// [`SqliteStore::open`] for `workload`.
    pub async fn open_for(path: &Path, workload: Workload) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::with_options(options, workload).await
    }

    /// Opens a database from a `sqlite:` URL (as in `KEYHAVEN_DATABASE_URL`), with the
    /// same durability settings as [`SqliteStore::open`].
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        Self::open_url_for(url, Workload::Serve).await
    }

    /// [`SqliteStore::open_url`] for `workload`.
    pub async fn open_url_for(url: &str, workload: Workload) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| "invalid sqlite database URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::with_options(options, workload).await
    }

    async fn with_options(
        options: SqliteConnectOptions,
        workload: Workload,
    ) -> Result<Self, StoreError> {
        owner_only(options.get_filename())?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", workload.writer_cache()),
            )
            .await
            .context("opening the database")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .context("opening the database for reading")?;
        let creations = GroupCommit::start({
            let writer = writer.clone();
            move |group| create_keys_together(writer.clone(), group)
        });
        let store = Self {
            writer,
            reader,
            creations,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Closes both pools, checkpointing the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Creates a key in a group commit with the other creations waiting.
    async fn create_key_in_group(
        &self,
        key: &KeyRecord,
        change: Change<'_>,
    ) -> Option<Result<(), StoreError>> {
        let creation = KeyCreation {
            key: key.clone(),
            audit: change.audit.clone(),
            idempotency: change.idempotency.cloned(),
        };
        Some(self.creations.write(creation).await)
    }

    pub(crate) fn reads(&self) -> &SqlitePool {
        &self.reader
    }

    fn writes(&self) -> &SqlitePool {
        &self.writer
    }

    /// No change feed: one process serves a SQLite file and invalidates its own cache.
    async fn listen_feed(&self) -> Result<Option<Box<dyn crate::ChangeFeed>>, StoreError> {
        Ok(None)
    }

    async fn publish_invalidation(&self, _what: &Invalidation) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Writes a group of key creations in one transaction, commits once, then answers each.
/// First all together, in a few multi-row statements; if that fails (a conflict, such as
/// a taken idempotency key, is rare), again one by one, each in a savepoint, so the
/// conflict undoes only its own creation.
async fn create_keys_together(writer: SqlitePool, mut group: Vec<Waiting<KeyCreation>>) {
    // A creation whose caller has gone (a client that hung up) was never acknowledged and
    // never will be: written, it would be a working key nobody received. One with an
    // idempotency record is written still, for the caller's retry to find.
    group.retain(|w| !w.answer.is_closed() || w.write.idempotency.is_some());
    if group.is_empty() {
        return;
    }
    match write_all_at_once(&writer, &group).await {
        Ok(events) => {
            for waiting in &group {
                crate::counters::audit_written(&waiting.write.audit.action);
            }
            for kind in events {
                crate::counters::events_written(kind, 1);
            }
            for waiting in group {
                let _ = waiting.answer.send(Ok(()));
            }
        }
        Err(StoreError::Conflict(_)) => create_keys_one_by_one(writer, group).await,
        Err(e) => {
            // Not one creation's doing (I/O, a full disk): the group fails alike.
            fail_all(group, &e);
        }
    }
}

/// The group's keys, audit events (with their lifecycle events) and stored answers in
/// multi-row statements, committed; the lifecycle event types written.
async fn write_all_at_once(
    writer: &SqlitePool,
    group: &[Waiting<KeyCreation>],
) -> Result<Vec<&'static str>, StoreError> {
    let keys: Vec<KeyRecord> = group.iter().map(|w| w.write.key.clone()).collect();
    let audits: Vec<&AuditEvent> = group.iter().map(|w| &w.write.audit).collect();
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    if engine::keys::insert_keys(&mut tx, &keys).await?.len() != keys.len() {
        return Err(StoreError::Conflict(crate::Conflict::DuplicateId));
    }
    // No cache invalidation to publish: one process owns a SQLite file (see `notify`).
    let events = engine::audit::write_audits(&mut tx, &audits).await?;
    for idempotency in group.iter().filter_map(|w| w.write.idempotency.as_ref()) {
        engine::audit::write_idempotency(&mut tx, idempotency).await?;
    }
    tx.commit().await?;
    Ok(events)
}

/// Answers every creation of `group` with `e` (nothing of it was committed).
fn fail_all(group: Vec<Waiting<KeyCreation>>, e: &StoreError) {
    let cause = format!("{e:#}");
    for waiting in group {
        let _ = waiting.answer.send(Err(anyhow::anyhow!("{cause}").into()));
    }
}

/// [`create_keys_together`]'s second try: each creation in a savepoint of its own.
async fn create_keys_one_by_one(writer: SqlitePool, group: Vec<Waiting<KeyCreation>>) {
    let mut written = Vec::with_capacity(group.len());
    let committed: Result<(), StoreError> = async {
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        for waiting in &group {
            let creation = &waiting.write;
            let change = Change {
                audit: &creation.audit,
                idempotency: creation.idempotency.as_ref(),
            };
            sqlx::query("SAVEPOINT key_creation")
                .execute(&mut *tx)
                .await?;
            let result = engine::keys::write_key_creation(&mut tx, &creation.key, change).await;
            if result.is_err() {
                sqlx::query("ROLLBACK TO key_creation")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("RELEASE key_creation")
                .execute(&mut *tx)
                .await?;
            written.push(result);
        }
        tx.commit().await?;
        Ok::<(), sqlx::Error>(())
    }
    .await
    .context("committing a group of key creations")
    .map_err(StoreError::from);
    match committed {
        Ok(()) => {
            for (waiting, result) in group.into_iter().zip(written) {
                let answer = result.map(|event| {
                    engine::audit::count_written(&waiting.write.audit, event);
                });
                let _ = waiting.answer.send(answer);
            }
        }
        Err(e) => {
            // Nothing was committed: every creation of the group fails alike.
            fail_all(group, &e);
        }
    }
}

/// One process owns a SQLite file: its server invalidates its own cache after each
/// mutation, so there is nobody to tell.
async fn notify(
    _tx: &mut Transaction<'static, Sqlite>,
    _what: Invalidation,
) -> Result<(), StoreError> {
    Ok(())
}

/// SQLite's spelling of what the engines disagree on (see `postgres::dialect`).
mod dialect {
    /// Two-argument maximum and minimum.
    pub const GREATEST: &str = "MAX";
    pub const LEAST: &str = "MIN";
    /// Row locks: none needed, every write transaction holds the database's write lock
    /// from `BEGIN IMMEDIATE`.
    pub const FOR_UPDATE: &str = "";
    /// See the PostgreSQL engine's: with one writer at a time there is nothing to order.
    pub const LOCK_KEYS_IN_ORDER: Option<&str> = None;

    /// `(…)` listing the strings of the JSON array bound at `param`, for `IN`.
    pub fn json_list(param: &str) -> String {
        format!("(SELECT value FROM json_each({param}))")
    }

    /// A fresh event id (`evt_` and 20 hex digits).
    pub const NEW_EVENT_ID: &str = "'evt_' || lower(hex(randomblob(10)))";

    /// A fresh random id: `prefix`, `_` and 20 hex digits.
    pub fn random_id(prefix: &str) -> String {
        format!("'{prefix}_' || lower(hex(randomblob(10)))")
    }

    /// Row locks for a worker's claim: none needed (see `FOR_UPDATE`).
    pub const FOR_UPDATE_SKIP_LOCKED: &str = "";

    /// A JSON object (as text) from alternating name and value expressions.
    pub fn json_object(args: &str) -> String {
        format!("json_object({args})")
    }

    /// RFC 3339 text (UTC, whole seconds) of Unix seconds.
    pub fn rfc3339(unix: &str) -> String {
        format!("strftime('%Y-%m-%dT%H:%M:%SZ', {unix}, 'unixepoch')")
    }
}

/// Creates the database file readable by its owner only, or narrows an existing one
/// (and its `-wal` and `-shm` files) to that. SQLite gives the `-wal` and `-shm` files it
/// creates the database file's mode, so all three stay 0600. A file this process may
/// not change (another owner, a read-only mount) is left as it is, with a warning.
fn owner_only(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path.as_os_str();
    let in_memory = name.is_empty()
        || name == ":memory:"
        || path.to_str().is_some_and(|p| p.starts_with("file:"));
    if in_memory {
        return Ok(());
    }
    if !path.exists() {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating the database file {}", path.display()))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        if let Ok(meta) = std::fs::metadata(file)
            && meta.permissions().mode() & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(
                file = %file.display(),
                error = %e,
                "the database file is readable by others and cannot be made private"
            );
        }
    }
    Ok(())
}
