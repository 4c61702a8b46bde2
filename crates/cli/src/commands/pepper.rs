//! `keyhaven pepper rotate|status|retire`: changing the server-side secret without
//! breaking any key. Rotate adds a version (new keys use it after a restart); keys under
//! older versions keep verifying and are re-hashed to the newest on their next successful
//! verify; a version can be retired once no key uses it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use keyhaven_core::PepperVersion;
use keyhaven_service::bootstrap;
use keyhaven_store::pepper_file::{self, PEPPER_ENV};

use crate::setup::{self, Deployment};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a new pepper version to the pepper file; restart servers to use it.
    Rotate(Deployment),
    /// Show each pepper version and how many keys still use it.
    Status(Deployment),
    /// Remove a pepper version that no key uses any more.
    Retire {
        #[command(flatten)]
        target: Deployment,
        /// The version to remove.
        #[arg(value_name = "VERSION")]
        pepper_version: u32,
    },
}

fn refuse_env() -> anyhow::Result<()> {
    setup::refuse_env(PEPPER_ENV, "the pepper comes")
}

pub fn run(command: &Command) -> anyhow::Result<ExitCode> {
    let target = match command {
        Command::Rotate(t) | Command::Status(t) | Command::Retire { target: t, .. } => t,
    };
    let config = target.config()?;
    let mut out = std::io::stdout().lock();
    match command {
        Command::Rotate(_) => {
            refuse_env()?;
            if !config.data_dir.join(pepper_file::PEPPER_FILE_NAME).exists() {
                bail!(
                    "no pepper file in {}; start the server once first",
                    config.data_dir.display()
                );
            }
            let version = pepper_file::rotate(&config.data_dir)?;
            writeln!(
                out,
                "Added pepper version {version}. Restart every server (all nodes need this \
                 same file); new keys then use version {version}, and older keys move to it \
                 when next verified. `keyhaven pepper status` shows what remains."
            )?;
        }
        Command::Status(_) => setup::block_on(async {
            let (peppers, source) = bootstrap::read_peppers(&config.data_dir)?;
            let store = bootstrap::open_store(&config).await?;
            let counts = store.pepper_version_counts().await?;
            writeln!(out, "pepper from {source}")?;
            writeln!(
                out,
                "{:>8}  {:>10}  {:>10}",
                "version", "configured", "keys"
            )?;
            let mut versions: Vec<u32> = peppers.versions().map(PepperVersion::get).collect();
            versions.extend(counts.iter().map(|(v, _)| *v));
            versions.sort_unstable();
            versions.dedup();
            let newest = peppers.newest().version().get();
            for v in versions {
                let configured = PepperVersion::new(v).and_then(|v| peppers.get(v)).is_some();
                let keys = counts.iter().find(|(c, _)| *c == v).map_or(0, |(_, n)| *n);
                let note = if v == newest { "  (newest)" } else { "" };
                writeln!(
                    out,
                    "{v:>8}  {:>10}  {keys:>10}{note}",
                    if configured { "yes" } else { "MISSING" }
                )?;
            }
            anyhow::Ok(())
        })?,
        Command::Retire {
            pepper_version: version,
            ..
        } => setup::block_on(async {
            refuse_env()?;
            let v = PepperVersion::new(*version).context("pepper versions start at 1")?;
            let store = bootstrap::open_store(&config).await?;
            let remaining = store
                .pepper_version_counts()
                .await?
                .into_iter()
                .find(|(c, _)| *c == *version)
                .map_or(0, |(_, n)| n);
            if remaining > 0 {
                bail!(
                    "{remaining} key(s) still use pepper version {version}; they move to the \
                     newest version when next verified (or revoke them), then retire it"
                );
            }
            pepper_file::retire(&config.data_dir, v)?;
            writeln!(
                out,
                "Retired pepper version {version}. Restart servers to drop it."
            )?;
            anyhow::Ok(())
        })?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
