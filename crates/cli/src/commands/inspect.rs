//! `keyhaven inspect KEY`: shows what a key is made of and whether it is well formed,
//! without any database. Never prints the secret. Exit status 0 only for a well-formed
//! key. Pass `-` to read the key from standard input, which keeps it out of shell
//! history and the process list.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use anyhow::Context;
use keyhaven_core::format::{self, CHECKSUM_LEN};
use keyhaven_core::{ParseError, parse};
use secrecy::{ExposeSecret, SecretString};

use crate::EXIT_INVALID;

/// Show a key's prefix and key id and check its checksum (the secret is never shown).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key, or `-` to read it from standard input.
    pub key: String,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let key = if args.key == "-" {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the key from standard input")?;
        SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        SecretString::from(args.key.clone())
    };
    let report = report(key.expose_secret());
    let mut out = io::stdout().lock();
    super::ignore_broken_pipe(out.write_all(report.text.as_bytes()))?;
    Ok(if report.well_formed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}

struct Report {
    text: String,
    well_formed: bool,
}

fn report(key: &str) -> Report {
    match parse(key) {
        Ok(parsed) => Report {
            text: format!(
                "prefix:   {}\nkey id:   {}\nsecret:   {} characters (not shown)\nchecksum: valid\ndisplay:  {}\n",
                parsed.prefix(),
                parsed.key_id(),
                parsed.secret().len(),
                parsed.display_form()
            ),
            well_formed: true,
        },
        Err(ParseError::Checksum) => {
            // The structure is right, so the parts can still be shown to help find the typo.
            let text = match format::split(key) {
                Ok(parts) => format!(
                    "prefix:   {}\nkey id:   {}\nsecret:   {} characters (not shown)\nchecksum: INVALID: the last {CHECKSUM_LEN} characters do not match; the key was mistyped or is not a real key\n",
                    parts.prefix(),
                    parts.key_id(),
                    parts.secret().len()
                ),
                Err(e) => format!("malformed key: {e}\n"),
            };
            Report {
                text,
                well_formed: false,
            }
        }
        Err(e) => Report {
            text: format!("malformed key ({} check failed): {e}\n", e.check()),
            well_formed: false,
        },
    }
}
