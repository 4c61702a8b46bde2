//! `keyhaven signing-key rotate|status|retire`: the Ed25519 keys signed tokens are
//! signed with (`<data dir>/signing-keys`). Rotate adds a version, which signs new
//! tokens after a restart; older versions stay in the JWKS and keep verifying the tokens
//! they signed. Retire removes a version once its last token has expired (a day after it
//! stopped signing at most), or at once with `--now` when it is compromised.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use keyhaven_core::PepperVersion;
use keyhaven_service::bootstrap;
use keyhaven_store::TOKEN_MAX_TTL_CEILING;
use keyhaven_store::pepper_file::{self, SIGNING_KEYS_ENV, SIGNING_KEYS_FILE_NAME};

use crate::setup::{self, Deployment};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a signing key version (it signs new tokens once servers restart).
    Rotate(Deployment),
    /// Show each signing key version, its key id and when it started signing.
    Status(Deployment),
    /// Remove a version that signs no more; its tokens stop verifying.
    Retire {
        #[command(flatten)]
        target: Deployment,
        /// The version to remove.
        #[arg(value_name = "VERSION")]
        signing_key_version: u32,
        /// Retire now even if tokens it signed may still be unexpired (a compromised key).
        #[arg(long)]
        now: bool,
    },
}

fn refuse_env() -> anyhow::Result<()> {
    setup::refuse_env(SIGNING_KEYS_ENV, "the signing keys come")
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
            if !config.data_dir.join(SIGNING_KEYS_FILE_NAME).exists() {
                bail!(
                    "no signing keys file in {}; start the server once first",
                    config.data_dir.display()
                );
            }
            let version = pepper_file::rotate_signing_keys(&config.data_dir)?;
            writeln!(
                out,
                "Added signing key version {version}. Restart every server (all nodes need \
                 this same file); new tokens are then signed with it, and tokens signed \
                 before keep verifying until they expire."
            )?;
        }
        Command::Status(_) => setup::block_on(async {
            let store = bootstrap::open_store(&config).await?;
            let keys = bootstrap::read_signing_keys(&config.data_dir)?;
            let started = bootstrap::signing_key_times(store.as_ref()).await?;
            writeln!(out, "signing keys from {}", keys.source())?;
            writeln!(out, "{:>8}  {:<44}  first used", "version", "kid")?;
            for key in keys.verifying().iter() {
                let when = started.iter().find(|(v, _)| *v == key.version).map_or_else(
                    || "-".to_owned(),
                    |(_, at)| keyhaven_service::validate::rfc3339(*at),
                );
                let note = if key.version == keys.signer_version() {
                    "  (signs)"
                } else {
                    ""
                };
                writeln!(out, "{:>8}  {:<44}  {when}{note}", key.version, key.kid)?;
            }
            anyhow::Ok(())
        })?,
        Command::Retire {
            signing_key_version: version,
            now,
            ..
        } => setup::block_on(async {
            refuse_env()?;
            let v = PepperVersion::new(*version).context("signing key versions start at 1")?;
            let store = bootstrap::open_store(&config).await?;
            if !*now {
                // It stopped signing when the next version was first used.
                let started = bootstrap::signing_key_times(store.as_ref()).await?;
                let successor = started
                    .iter()
                    .filter(|(s, _)| s > version)
                    .map(|(_, at)| *at)
                    .min();
                let safe_at = successor.map(|at| {
                    keyhaven_store::from_unix(at.unix_timestamp() + TOKEN_MAX_TTL_CEILING)
                });
                match safe_at {
                    Some(at) if at <= keyhaven_service::clock::now() => {}
                    Some(at) => bail!(
                        "tokens signed with version {version} may be valid until {}; retire it \
                         then, or now with --now (they stop verifying at once)",
                        keyhaven_service::validate::rfc3339(at)
                    ),
                    None => bail!(
                        "version {version} may still be signing (no later version has been used \
                         by a server); rotate and restart first, or retire with --now"
                    ),
                }
            }
            pepper_file::retire_signing_key(&config.data_dir, v)?;
            writeln!(
                out,
                "Retired signing key version {version}. Restart servers to drop it from the JWKS."
            )?;
            anyhow::Ok(())
        })?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
