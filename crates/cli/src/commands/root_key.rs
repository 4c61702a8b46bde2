//! `keyhaven root-key create|list|revoke|rotate`: the admin API's keys from the command
//! line (local access: every scope). A new key is printed once on stdout, alone on the
//! last line. Works while a server runs on the same data directory; a revoked key is
//! refused by that server within `cache_ttl_ms` (at once through the API).

use std::io::Write;
use std::process::ExitCode;

use keyhaven_service::config::Config;
use keyhaven_service::keys::KeyState;
use keyhaven_service::root_keys::{self, CLI_ACTOR, RootKeyError, RotateRootKey};
use keyhaven_service::validate::rfc3339;
use keyhaven_service::{Actor, Service, ServiceError};
use keyhaven_store::PageRequest;
use secrecy::ExposeSecret;

use crate::setup::{self, Deployment, Opened};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a root key and print it once.
    Create(CreateArgs),
    /// List root keys (never their secrets): id, name, scopes, state, last use.
    List(ListArgs),
    /// Revoke a root key.
    Revoke(RevokeArgs),
    /// Replace a root key by a new one (printed once); the old one works for the grace period.
    Rotate(RotateArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub deployment: Deployment,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub deployment: Deployment,
    /// The root key's id (the part after `kh_root_`).
    pub key_id: String,
    /// Why (kept in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub deployment: Deployment,
    /// The root key's id (the part after `kh_root_`).
    pub key_id: String,
    /// How long the old key keeps working, in seconds.
    #[arg(long, default_value_t = 0)]
    pub grace_seconds: u64,
}

#[derive(Debug, clap::Args)]
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
    let args = match command {
        Command::Create(args) => args,
        Command::List(args) => return list(args),
        Command::Revoke(args) => return revoke(args),
        Command::Rotate(args) => return rotate(args),
    };
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

/// The application over the opened store, for the operations that take one (local
/// access: no server is started).
fn service(opened: Opened, config: &Config) -> anyhow::Result<Service> {
    Service::new(opened.store, opened.peppers, config.clone())
}

fn explain(e: ServiceError) -> anyhow::Error {
    match e {
        ServiceError::NotFound => anyhow::anyhow!("no root key has that id"),
        ServiceError::Invalid { detail, .. } | ServiceError::Conflict { detail, .. } => {
            anyhow::anyhow!("{detail}")
        }
        ServiceError::Unexpected(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let config = args.deployment.config()?;
    setup::with_store(&config, async |opened| {
        let service = service(opened, &config)?;
        let actor = Actor::local(CLI_ACTOR);
        let now = service.clock.now();
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{:<14} {:<9} {:<20} {:<22} scopes",
            "key id", "state", "last used", "name"
        )?;
        let mut after = None;
        loop {
            let page = root_keys::list(&service, &actor, PageRequest { limit: 500, after })
                .await
                .map_err(explain)?;
            for k in &page.items {
                writeln!(
                    out,
                    "{:<14} {:<9} {:<20} {:<22} {}{}",
                    k.key_id,
                    KeyState::of(k, None, now).as_str(),
                    k.last_used_at.map_or_else(|| "never".to_owned(), rfc3339),
                    k.name.as_deref().unwrap_or("-"),
                    k.scopes.join(","),
                    k.allowed_keyspaces
                        .as_ref()
                        .map(|ks| format!(" (only {})", ks.join(",")))
                        .unwrap_or_default()
                )?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn revoke(args: &RevokeArgs) -> anyhow::Result<ExitCode> {
    let config = args.deployment.config()?;
    setup::with_store(&config, async |opened| {
        let service = service(opened, &config)?;
        root_keys::revoke(
            &service,
            &Actor::local(CLI_ACTOR),
            &args.key_id,
            args.reason.clone(),
        )
        .await
        .map_err(explain)?;
        println!("Revoked root key {}.", args.key_id);
        Ok(ExitCode::SUCCESS)
    })
}

fn rotate(args: &RotateArgs) -> anyhow::Result<ExitCode> {
    let config = args.deployment.config()?;
    setup::with_store(&config, async |opened| {
        let service = service(opened, &config)?;
        let input = RotateRootKey {
            grace_period_seconds: Some(args.grace_seconds),
        };
        let (key, record) =
            root_keys::rotate(&service, &Actor::local(CLI_ACTOR), &args.key_id, input)
                .await
                .map_err(explain)?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Rotated root key {} to {}; the old key works for {} more seconds. The new key is shown once:",
            args.key_id, record.key_id, args.grace_seconds
        )?;
        writeln!(out, "{}", key.key().expose_secret())?;
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    })
}
