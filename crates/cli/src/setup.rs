//! What the commands that work on a deployment share: the flags that find it, the
//! configuration built from them, a runtime, and the opened store with its pepper. Each
//! command then does only its own part.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use keyhaven_core::PepperSet;
use keyhaven_service::bootstrap;
use keyhaven_service::config::Config;
use keyhaven_store::pepper_file::PepperSource;
use keyhaven_store::{Store, Workload};

/// The flags that name a deployment (`--config`, `--data-dir`, `--database-url`),
/// flattened into each command that opens one, with the same help everywhere (a command
/// that needs other words sets them with `mut_arg`).
#[derive(Debug, clap::Args)]
pub struct Deployment {
    #[arg(long, env = "KEYHAVEN_CONFIG", help = "TOML configuration file")]
    pub config: Option<PathBuf>,
    #[arg(long, help = "The server's data directory [default: ./keyhaven-data]")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, help = "Database URL [default: sqlite in the data directory]")]
    pub database_url: Option<String>,
}

impl Deployment {
    /// The configuration these flags name.
    pub fn config(&self) -> anyhow::Result<Config> {
        load_config(
            self.config.as_deref(),
            self.data_dir.as_deref(),
            &[("database_url", self.database_url.as_ref())],
        )
    }
}

/// The configuration, layered: defaults, the TOML `file`, `KEYHAVEN_*` variables, then the
/// options given as flags (`data_dir`, and each `(option, value)` given). Unknown
/// `KEYHAVEN_*` variables are warned about by [`warn_unknown_env`].
pub fn load_config(
    file: Option<&Path>,
    data_dir: Option<&Path>,
    flags: &[(&str, Option<&String>)],
) -> anyhow::Result<Config> {
    let mut layer = serde_json::Map::new();
    if let Some(dir) = data_dir {
        layer.insert("data_dir".into(), dir.display().to_string().into());
    }
    for &(name, value) in flags {
        if let Some(value) = value {
            layer.insert(name.into(), value.clone().into());
        }
    }
    let config = Config::load(file, &layer)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {}", Config::describe_error(&e)))?;
    Ok(config)
}

/// Warns about each `KEYHAVEN_*` variable that names no option (a typo must not pass
/// silently). Call it once logging is set up.
pub fn warn_unknown_env() {
    for name in Config::unknown_env(std::env::vars()) {
        tracing::warn!(variable = %name, "unknown KEYHAVEN_* environment variable ignored");
    }
}

/// A deployment's store, opened, with the pepper checked against it.
#[derive(Debug)]
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub peppers: PepperSet,
    pub source: PepperSource,
}

/// Opens the configured store for a one-shot command (`migrate`, which may rewrite
/// imported keys in bulk): creates the data directory if missing, applies pending
/// migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    open_store_for(config, Workload::Bulk).await
}

async fn open_store_for(config: &Config, workload: Workload) -> anyhow::Result<Arc<dyn Store>> {
    bootstrap::ensure_data_dir(&config.data_dir)?;
    bootstrap::open_store_for(config, workload).await
}

/// [`open_store`] for a server, then the pepper (created with a new database, refused if
/// it is not the one the database was used with).
pub async fn open(config: &Config) -> anyhow::Result<Opened> {
    open_for(config, Workload::Serve).await
}

async fn open_for(config: &Config, workload: Workload) -> anyhow::Result<Opened> {
    let store = open_store_for(config, workload).await?;
    let (peppers, source) = bootstrap::load_peppers(&config.data_dir, store.as_ref()).await?;
    Ok(Opened {
        store,
        peppers,
        source,
    })
}

/// Runs `work` on the opened deployment, on a runtime of one thread (a command's few
/// database calls run in sequence). A command may write in bulk (`import`), and lives
/// only as long as its work: SQLite gets the larger page cache.
pub fn with_store<T>(
    config: &Config,
    work: impl AsyncFnOnce(Opened) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    block_on(async { work(open_for(config, Workload::Bulk).await?).await })
}

/// Runs `work` to completion on a runtime of one thread.
pub fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work)
}

/// A runtime with a thread per core, for the commands that serve or copy in bulk.
pub fn multi_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Refuses to edit a versioned secret file (`subject` and the verb, as in "the pepper
/// comes") while the variable `env` replaces it: the change would do nothing.
pub fn refuse_env(env: &str, subject: &str) -> anyhow::Result<()> {
    if std::env::var_os(env).is_some() {
        anyhow::bail!(
            "{subject} from {env}; change that variable instead \
             (add a line `<next version>:<64 hex digits>` on every node)"
        );
    }
    Ok(())
}
