//! `keyhaven root-key create`: a new root key, printed once on stdout (the key alone on
//! the last line). Works while a server runs on the same data directory.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use keyhaven_service::bootstrap;
use keyhaven_service::root_keys::{self, CLI_ACTOR, RootKeyError};
use secrecy::ExposeSecret;

use super::serve::{flag_layer, load_config};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a root key and print it once.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// TOML configuration file.
    #[arg(long, env = "KEYHAVEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The server's data directory [default: ./keyhaven-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Database URL [default: sqlite in the data directory]
    #[arg(long)]
    pub database_url: Option<String>,
    /// Comma-separated scopes, e.g. `keys:verify` or `keys:*,audit:read` [default: *]
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub scopes: Vec<String>,
    /// Limit the key to this keyspace id (repeat or comma-separate for several).
    #[arg(long = "keyspace", value_delimiter = ',')]
    pub keyspaces: Vec<String>,
    /// A name to recognise the key by.
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(command: &Command) -> anyhow::Result<ExitCode> {
    let Command::Create(args) = command;
    let flags = flag_layer(
        args.data_dir.as_ref(),
        None,
        args.database_url.as_ref(),
        None,
    );
    let config = load_config(args.config.as_ref(), &flags)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        bootstrap::ensure_data_dir(&config.data_dir)?;
        let store = bootstrap::open_store(&config).await?;
        let (peppers, _) = bootstrap::load_peppers(&config.data_dir, store.as_ref()).await?;
        let keyspaces = (!args.keyspaces.is_empty()).then(|| args.keyspaces.clone());
        let key = match root_keys::create(
            store.as_ref(),
            &peppers,
            args.scopes.clone(),
            keyspaces.clone(),
            args.name.clone(),
            CLI_ACTOR,
        )
        .await
        {
            Ok(key) => key,
            Err(RootKeyError::Invalid(msg)) => anyhow::bail!("{msg}"),
            Err(RootKeyError::Unexpected(e)) => return Err(e),
        };
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Created root key {} with scopes {}{}. It is shown once:",
            key.key_id(),
            args.scopes.join(","),
            keyspaces
                .map(|k| format!(", limited to keyspaces {}", k.join(",")))
                .unwrap_or_default()
        )?;
        writeln!(out, "{}", key.key().expose_secret())?;
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    })
}
