//! `keyhaven operator …`: the people who sign in to the dashboard. The password is read
//! from standard input (one line) or, at a terminal, prompted for twice without echo;
//! it is never an argument (arguments show in `ps` and shell history).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use keyhaven_service::operators;
use keyhaven_service::{Actor, ServiceError};
use keyhaven_store::OperatorRole;
use secrecy::{ExposeSecret as _, SecretString};

use crate::setup::{self, Deployment, Opened};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an operator who can sign in at /dashboard/login.
    Create(CreateArgs),
    /// List operators (email, role, created).
    List(DeploymentArgs),
    /// Delete an operator; their sessions end at once.
    Delete(EmailArgs),
    /// Set a new password for an operator; their sessions end at once.
    ResetPassword(EmailArgs),
}

#[derive(Debug, clap::Args)]
pub struct DeploymentArgs {
    #[command(flatten)]
    pub deployment: Deployment,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub deployment: Deployment,
    /// The operator's email address (their sign-in name).
    #[arg(long)]
    pub email: String,
    /// `admin` (may change everything) or `viewer` (may read everything, change nothing).
    #[arg(long, default_value = "admin", value_parser = ["admin", "viewer"])]
    pub role: String,
}

#[derive(Debug, clap::Args)]
pub struct EmailArgs {
    #[command(flatten)]
    pub deployment: Deployment,
    /// The operator's email address.
    #[arg(long)]
    pub email: String,
}

/// The password: prompted twice at a terminal, else the first line of standard input.
fn read_password() -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = SecretString::from(rpassword::prompt_password(
            "Password (at least 12 characters): ",
        )?);
        let again = SecretString::from(rpassword::prompt_password("Password again: ")?);
        if first.expose_secret() != again.expose_secret() {
            anyhow::bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned());
    if password.expose_secret().is_empty() {
        anyhow::bail!(
            "no password on standard input (pipe one line, or run at a terminal to be prompted)"
        );
    }
    Ok(password)
}

/// An operation's error as the command's message.
fn explain(e: ServiceError, email: &str) -> anyhow::Error {
    match e {
        ServiceError::NotFound => anyhow::anyhow!("no operator has the email address {email}"),
        ServiceError::Invalid { detail, .. } | ServiceError::Conflict { detail, .. } => {
            anyhow::anyhow!("{detail}")
        }
        ServiceError::Unexpected(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

pub fn run(command: &Command) -> anyhow::Result<ExitCode> {
    let actor = Actor::local(keyhaven_service::root_keys::CLI_ACTOR);
    let now = keyhaven_service::clock::now();
    match command {
        Command::Create(args) => {
            let role = OperatorRole::parse(&args.role).unwrap_or(OperatorRole::Viewer);
            let password = read_password()?;
            let config = args.deployment.config()?;
            setup::with_store(&config, async |Opened { store, .. }| {
                let op =
                    operators::create(store.as_ref(), &actor, &args.email, role, password, now)
                        .await
                        .map_err(|e| explain(e, &args.email))?;
                println!(
                    "Created operator {} ({}). They can sign in at /dashboard/login.",
                    op.email,
                    op.role.as_str()
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::List(args) => {
            let config = args.deployment.config()?;
            setup::with_store(&config, async |Opened { store, .. }| {
                let list = operators::list(store.as_ref())
                    .await
                    .map_err(|e| explain(e, ""))?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{:<40} {:<7} created", "email", "role")?;
                for op in list {
                    writeln!(
                        out,
                        "{:<40} {:<7} {}",
                        op.email,
                        op.role.as_str(),
                        keyhaven_service::validate::rfc3339(op.created_at)
                    )?;
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Delete(args) => {
            let config = args.deployment.config()?;
            setup::with_store(&config, async |Opened { store, .. }| {
                operators::delete(store.as_ref(), &actor, &args.email, now)
                    .await
                    .map_err(|e| explain(e, &args.email))?;
                println!(
                    "Deleted operator {}; their sessions have ended.",
                    args.email.trim().to_lowercase()
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::ResetPassword(args) => {
            let password = read_password()?;
            let config = args.deployment.config()?;
            setup::with_store(&config, async |Opened { store, .. }| {
                operators::reset_password(store.as_ref(), &actor, &args.email, password, now)
                    .await
                    .map_err(|e| explain(e, &args.email))?;
                println!(
                    "Set a new password for {}; their sessions have ended.",
                    args.email.trim().to_lowercase()
                );
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}
