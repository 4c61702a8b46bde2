//! `keyhaven inspect KEY`: shows what a key is made of and whether it is well formed,
//! without any database. Never prints the secret. Exit status 0 only for a well-formed
//! key. Pass `-` to read the key from standard input, which keeps it out of shell
//! history and the process list; `--json` prints one JSON object for scripts.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use anyhow::Context;
use keyhaven_core::format::{self, CHECKSUM_LEN};
use keyhaven_core::{ParseError, parse};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::EXIT_INVALID;

/// Show a key's prefix and key id and check its checksum (the secret is never shown).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key, or `-` to read it from standard input.
    pub key: String,
    /// Print one JSON object (`well_formed`, `prefix`, `key_id`, `secret_length`,
    /// `checksum`, `display`, `error`) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let key = read_key(&args.key)?;
    let report = report(key.expose_secret());
    let text = if args.json {
        let mut json = serde_json::to_string(&report)?;
        json.push('\n');
        json
    } else {
        report.text()
    };
    let mut out = io::stdout().lock();
    super::ignore_broken_pipe(out.write_all(text.as_bytes()))?;
    Ok(if report.well_formed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}

/// The key from the argument, or from the first line of standard input for `-`.
pub(crate) fn read_key(arg: &str) -> anyhow::Result<SecretString> {
    if arg != "-" {
        return Ok(SecretString::from(arg.to_owned()));
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the key from standard input")?;
    Ok(SecretString::from(
        line.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

/// What `inspect` found: the public parts only (never the secret).
#[derive(Debug, Serialize)]
struct Report {
    well_formed: bool,
    prefix: Option<String>,
    key_id: Option<String>,
    secret_length: Option<usize>,
    /// `valid`, `invalid`, or null when the key is malformed before its checksum.
    checksum: Option<&'static str>,
    display: Option<String>,
    error: Option<Problem>,
}

#[derive(Debug, Serialize)]
struct Problem {
    /// The check that failed: length, character, separator, prefix or checksum.
    check: &'static str,
    message: String,
}

impl Report {
    fn text(&self) -> String {
        let (Some(prefix), Some(key_id), Some(len)) =
            (&self.prefix, &self.key_id, self.secret_length)
        else {
            return match &self.error {
                Some(p) => format!("malformed key ({} check failed): {}\n", p.check, p.message),
                None => "malformed key\n".to_owned(),
            };
        };
        let head = format!(
            "prefix:   {prefix}\nkey id:   {key_id}\nsecret:   {len} characters (not shown)\n"
        );
        match &self.display {
            Some(display) => format!("{head}checksum: valid\ndisplay:  {display}\n"),
            None => format!(
                "{head}checksum: INVALID: the last {CHECKSUM_LEN} characters do not match; the key was mistyped or is not a real key\n"
            ),
        }
    }
}

fn report(key: &str) -> Report {
    let problem = |e: &ParseError| Problem {
        check: e.check(),
        message: e.to_string(),
    };
    match parse(key) {
        Ok(parsed) => Report {
            well_formed: true,
            prefix: Some(parsed.prefix().to_owned()),
            key_id: Some(parsed.key_id().to_owned()),
            secret_length: Some(parsed.secret().len()),
            checksum: Some("valid"),
            display: Some(parsed.display_form()),
            error: None,
        },
        // The structure is right, so the parts can still be shown to help find the typo.
        Err(e @ ParseError::Checksum) => match format::split(key) {
            Ok(parts) => Report {
                well_formed: false,
                prefix: Some(parts.prefix().to_owned()),
                key_id: Some(parts.key_id().to_owned()),
                secret_length: Some(parts.secret().len()),
                checksum: Some("invalid"),
                display: None,
                error: Some(problem(&e)),
            },
            Err(split) => malformed(problem(&split)),
        },
        Err(e) => malformed(problem(&e)),
    }
}

fn malformed(problem: Problem) -> Report {
    Report {
        well_formed: false,
        prefix: None,
        key_id: None,
        secret_length: None,
        checksum: None,
        display: None,
        error: Some(problem),
    }
}
