//! Opening what a server (or a CLI command acting on its data) needs: the data
//! directory, the pepper and the store.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use keyhaven_core::PepperSet;
use keyhaven_store::pepper_file::{self, PepperSource};
use keyhaven_store::{PgOptions, PgStore, SqliteStore, Store};

use crate::config::Config;

/// Creates the data directory (mode 0700) if it is missing.
pub fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

/// The pepper from `KEYHAVEN_PEPPER` or `<data dir>/pepper` (created on first start).
pub fn load_peppers(data_dir: &Path) -> anyhow::Result<(PepperSet, PepperSource)> {
    let env = std::env::var(pepper_file::PEPPER_ENV).ok();
    let env = zeroize::Zeroizing::new(env);
    pepper_file::load_or_create(data_dir, env.as_deref()).context("loading the pepper")
}

/// The master keys for recoverable keys, from `KEYHAVEN_MASTER_KEY` or
/// `<data dir>/master.key` (created on first start).
pub fn load_master_keys(data_dir: &Path) -> anyhow::Result<PepperSet> {
    let env = zeroize::Zeroizing::new(std::env::var(pepper_file::MASTER_KEY_ENV).ok());
    let (set, _) = pepper_file::load_or_create_master(data_dir, env.as_deref())
        .context("loading the master key")?;
    Ok(set)
}

/// Refuses to go on when a stored key was hashed with a pepper version that is not
/// configured: such keys could never verify, and falling back would be worse.
pub async fn require_peppers(store: &dyn Store, peppers: &PepperSet) -> anyhow::Result<()> {
    let stored = store.pepper_versions().await?;
    let versions = stored
        .iter()
        .map(|&v| keyhaven_core::PepperVersion::new(v).context("stored pepper version 0"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    peppers
        .require(versions)
        .context("the database holds keys hashed with a pepper version that is not configured")?;
    Ok(())
}

/// The store named by the configuration: `database_url` if set, else the SQLite file in
/// the data directory. Migrations are applied on open.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match config.database_url.as_deref() {
        None => Ok(Arc::new(SqliteStore::open(&config.database_path()).await?)),
        Some(url) if url.starts_with("sqlite:") => Ok(Arc::new(SqliteStore::open_url(url).await?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let options = PgOptions {
                max_connections: config.database_max_connections,
                allow_unsafe_durability: config.allow_unsafe_durability,
            };
            Ok(Arc::new(PgStore::open(url, &options).await?))
        }
        Some(url) => {
            let scheme = url.split(':').next().unwrap_or_default();
            bail!("unsupported database URL scheme `{scheme}:` (use sqlite: or postgres://)")
        }
    }
}
