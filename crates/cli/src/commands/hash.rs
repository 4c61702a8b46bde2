//! `keyhaven hash --pepper-file F KEY`: prints the verifier the store keeps for a key
//! (`HMAC-SHA256(pepper[v], key_id ":" secret)` and `v`), for an operator checking an
//! import or a database row by hand. Never prints the secret or the pepper: the verifier
//! cannot be used as a key, and without the pepper it confirms no guess.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use keyhaven_core::{PepperSet, PepperVersion, parse};
use secrecy::ExposeSecret;
use serde_json::json;

/// Print the stored verifier of a key (never the secret or the pepper).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key, or `-` to read it from standard input (keeps it out of the process list).
    pub key: String,
    /// The pepper file (`keyhaven serve`'s `<data dir>/pepper`, or a file holding the
    /// value of KEYHAVEN_PEPPER).
    #[arg(long, value_name = "FILE")]
    pub pepper_file: PathBuf,
    /// The pepper version to hash with (default: the newest, which new keys use).
    #[arg(long, value_name = "N")]
    pub pepper_version: Option<u32>,
    /// Print one JSON object (`key_id`, `pepper_version`, `verifier`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(&args.pepper_file).with_context(|| {
            format!("cannot read the pepper file {}", args.pepper_file.display())
        })?);
    let peppers = PepperSet::parse(&text)
        .with_context(|| format!("invalid pepper file {}", args.pepper_file.display()))?;
    let pepper = match args.pepper_version {
        None => peppers.newest(),
        Some(v) => PepperVersion::new(v)
            .and_then(|v| peppers.get(v))
            .with_context(|| {
                format!(
                    "the pepper file has no version {v} (it has {})",
                    peppers
                        .versions()
                        .map(|v| v.get().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?,
    };
    let key = super::inspect::read_key(&args.key)?;
    let parsed = parse(key.expose_secret()).map_err(|e| {
        anyhow::anyhow!(
            "not a well-formed Keyhaven key ({} check failed): {e}",
            e.check()
        )
    })?;
    let verifier = hex::encode(pepper.mac(parsed.key_id(), parsed.secret()));
    let version = pepper.version().get();
    let text = if args.json {
        format!(
            "{}\n",
            json!({"key_id": parsed.key_id(), "pepper_version": version, "verifier": verifier})
        )
    } else {
        format!(
            "key id:          {}\npepper version:  {version}\nverifier:        {verifier}\n",
            parsed.key_id()
        )
    };
    super::ignore_broken_pipe(io::stdout().lock().write_all(text.as_bytes()))?;
    Ok(ExitCode::SUCCESS)
}
