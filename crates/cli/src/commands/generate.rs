//! `keyhaven generate --prefix P [--count N] [--json]`: prints new keys, one a line.
//! Nothing is stored: this is for trying the format, seeding tests, or issuing keys
//! from a system that stores verifiers itself.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use keyhaven_core::{Prefix, generate};
use secrecy::ExposeSecret;

/// Most keys one call may print, so a typo in --count cannot fill a disk.
pub const MAX_COUNT: u64 = 10_000_000;

/// Print new keys, one a line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Key prefix: 1-20 characters, a lowercase letter then [a-z0-9_].
    #[arg(long, value_parser = |s: &str| Prefix::new(s))]
    pub prefix: Prefix,
    /// How many keys to print.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    pub count: u64,
    /// Print JSON Lines with the key id and display form beside each key.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct JsonKey<'a> {
    key: &'a str,
    key_id: &'a str,
    prefix: &'a str,
    display: &'a str,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let prefix = &args.prefix;
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout);
    let written = (|| -> anyhow::Result<()> {
        for _ in 0..args.count {
            let key = generate(prefix)?;
            if args.json {
                let display = key.display_form();
                let line = JsonKey {
                    key: key.key().expose_secret(),
                    key_id: key.key_id().as_str(),
                    prefix: prefix.as_str(),
                    display: &display,
                };
                // Into io::Error, so a closed pipe is recognised below in JSON mode too.
                serde_json::to_writer(&mut out, &line).map_err(io::Error::from)?;
                out.write_all(b"\n")?;
            } else {
                out.write_all(key.key().expose_secret().as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        Ok(())
    })();
    match written {
        Err(e) if super::is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}
