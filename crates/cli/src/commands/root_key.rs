//! `keyhaven root-key create`: a new root key, printed once on stdout (the key alone on
//! the last line). Works while a server runs on the same data directory.

use std::io::Write;
use std::process::ExitCode;

use keyhaven_service::root_keys::{self, CLI_ACTOR, RootKeyError};
use secrecy::ExposeSecret;

use crate::setup::{self, Deployment, Opened};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a root key and print it once.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
#[command(
    mut_arg("config", |a| a.help("TOML configuration file")),
    mut_arg("data_dir", |a| a.help("The server's data directory [default: ./keyhaven-data]")),
    mut_arg("database_url", |a| a.help("Database URL [default: sqlite in the data directory]"))
)]
pub struct CreateArgs {
    #[command(flatten)]
    pub deployment: Deployment,
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
    let config = args.deployment.config()?;
    setup::with_store(&config, async |Opened { store, peppers, .. }| {
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
