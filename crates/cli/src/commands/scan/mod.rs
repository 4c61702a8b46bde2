//! `keyhaven scan [PATH…] [--git]`: finds Keyhaven keys in files on disk (`files.rs`)
//! or in every blob of a repository's history (`git.rs`), prints where they are in text,
//! JSON or SARIF (`output.rs`), and with `--report` sends them to a server to be revoked
//! (`report.rs`). Finding is `keyhaven_core::scan`: the key's shape and its checksum, so
//! look-alikes are not reported. A key's secret is never printed, only its display form.

mod files;
mod git;
mod output;
mod report;

use std::collections::HashSet;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use keyhaven_core::{Prefix, find_keys};
use secrecy::SecretString;

/// Exit status when keys were found.
const EXIT_FOUND: u8 = 1;
/// Exit status for bad input (a missing path, no repository, an unreadable root key
/// file) and for a failed report; the same as clap's usage errors.
const EXIT_ERROR: u8 = 2;

/// How much of a file is looked at to decide that it is binary (as git does).
const BINARY_SNIFF_LEN: usize = 8000;

/// The long help of `keyhaven scan`, after the arguments.
pub const AFTER_LONG_HELP: &str = "\
What is scanned:
  Without --git, the files under each PATH (default: the current directory), walked as
  git would see them: .gitignore, .ignore and .git/info/exclude are respected, .git
  directories are skipped, hidden files such as .env are scanned, symbolic links are
  not followed. With --git, every blob of the repository at PATH (default: the one
  containing the current directory) in every commit reachable from any branch, tag or
  other ref, so keys that exist only in history or in deleted files are found; each
  distinct tree and blob is read once, and a key is reported at the first (oldest)
  commit and path it was met in.
  Files and blobs larger than --max-file-size, and binary ones (a NUL byte in their
  first 8000 bytes, as git decides), are skipped; the summary says how many.

What is found:
  Keys in the Keyhaven format, <prefix>_<key id>_<secret><checksum>, whose checksum
  holds: strings of the same shape with a wrong checksum are not reported. Only the
  display form (prefix, key id and the last four characters) is ever printed, never
  the secret. With --report the whole keys are sent, over the connection to URL only.

Exit status:
  0  no key found
  1  at least one key found (also when --report succeeded)
  2  bad input (a missing path, not a git repository with --git, an unreadable root
     key file, a bad URL), a usage error, or a server that refused the report";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One finding a line (`path:line:column: display form`), a summary on stderr.
    Text,
    /// A JSON array of findings: path, line, column, commit (with --git), key_id,
    /// prefix, display.
    Json,
    /// SARIF 2.1.0, for code scanning dashboards (GitHub, GitLab).
    Sarif,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and directories to scan [default: .]; with --git, the repository.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Scan every blob in the repository's history instead of the files on disk.
    #[arg(long)]
    pub git: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Report only keys with this prefix (repeat the flag, or separate with commas).
    #[arg(long = "prefix", value_name = "PREFIX", value_delimiter = ',',
          value_parser = |s: &str| Prefix::new(s))]
    pub prefixes: Vec<Prefix>,
    /// Skip files and blobs larger than this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_file_size: u64,
    /// Send the keys found to the Keyhaven server at URL (`POST URL/v1/leaks/report`),
    /// which revokes or flags those it issued.
    #[arg(long, value_name = "URL", requires = "root_key_file")]
    pub report: Option<String>,
    /// File holding the root key that authenticates --report; it needs the scope
    /// `leaks:write` (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE", requires = "report")]
    pub root_key_file: Option<PathBuf>,
}

/// Where a key was found. `line` and `column` count from 1; the column counts
/// characters (Unicode code points), not bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    /// The commit (full hex id) the key was first met in, with --git.
    pub commit: Option<String>,
    pub path: String,
    pub line: u64,
    pub column: u64,
}

impl Place {
    /// `path:line` or `commit:path:line`: what a report names as the leak's location.
    fn location(&self) -> String {
        match &self.commit {
            Some(commit) => format!("{commit}:{}:{}", self.path, self.line),
            None => format!("{}:{}", self.path, self.line),
        }
    }
}

/// One key found at one place.
#[derive(Debug)]
pub struct Finding {
    pub place: Place,
    pub key_id: String,
    pub prefix: String,
    /// `prefix_keyid_…last4`: all that is ever printed of the key.
    pub display: String,
    /// The whole key, kept only to be reported; wiped when dropped, never printed.
    key: SecretString,
}

/// What was looked at, for the summary.
#[derive(Debug, Default)]
pub struct Stats {
    pub files: u64,
    pub bytes: u64,
    pub binary: u64,
    pub too_large: u64,
    pub unreadable: u64,
    pub commits: u64,
    pub trees: u64,
}

/// The findings and counters of one run, and the rules every source shares.
#[derive(Debug)]
pub struct Scan {
    prefixes: Vec<Prefix>,
    max_size: u64,
    findings: Vec<Finding>,
    places: HashSet<Place>,
    stats: Stats,
    progress: ProgressBar,
}

impl Scan {
    fn new(args: &Args) -> Self {
        let progress = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            prefixes: args.prefixes.clone(),
            max_size: args.max_file_size.saturating_mul(1024 * 1024),
            findings: Vec::new(),
            places: HashSet::new(),
            stats: Stats::default(),
            progress,
        }
    }

    /// Scans the content of one file or blob at `path` (in `commit`, with --git).
    fn content(&mut self, commit: Option<&str>, path: &str, bytes: &[u8]) {
        let sniff = bytes.get(..BINARY_SNIFF_LEN).unwrap_or(bytes);
        if sniff.contains(&0) {
            self.stats.binary += 1;
            return;
        }
        self.stats.files += 1;
        self.stats.bytes += bytes.len() as u64;
        let mut lines = LineCounter::default();
        for found in find_keys(bytes) {
            let key = found.key;
            if !self.prefixes.is_empty()
                && !self.prefixes.iter().any(|p| p.as_str() == key.prefix())
            {
                continue;
            }
            let (line, column) = lines.advance(bytes, found.range.start);
            let place = Place {
                commit: commit.map(str::to_owned),
                path: path.to_owned(),
                line,
                column,
            };
            if !self.places.insert(place.clone()) {
                continue;
            }
            let whole = bytes
                .get(found.range)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default();
            self.findings.push(Finding {
                place,
                key_id: key.key_id().to_owned(),
                prefix: key.prefix().to_owned(),
                display: key.display_form(),
                key: SecretString::from(whole.to_owned()),
            });
        }
        if self.stats.files.is_multiple_of(256) {
            self.show_progress();
        }
    }

    fn show_progress(&self) {
        let s = &self.stats;
        let what = if s.commits > 0 {
            format!("{} commits, {} blobs", s.commits, s.files)
        } else {
            format!("{} files", s.files)
        };
        self.progress.set_message(format!(
            "{what}, {:.1} MB, {} keys",
            s.bytes as f64 / 1e6,
            self.findings.len()
        ));
    }
}

/// Line and column of successive offsets into one text, counted incrementally so a
/// file with many keys is still read once.
#[derive(Default)]
struct LineCounter {
    /// Offset up to which newlines have been counted.
    counted: usize,
    /// Newlines seen before `counted`.
    newlines: u64,
    /// Offset of the first byte of the line `counted` is on.
    line_start: usize,
}

impl LineCounter {
    /// (line, column) of `offset`, which must not be less than the previous one.
    fn advance(&mut self, text: &[u8], offset: usize) -> (u64, u64) {
        let span = text.get(self.counted..offset).unwrap_or_default();
        for (i, &b) in span.iter().enumerate() {
            if b == b'\n' {
                self.newlines += 1;
                self.line_start = self.counted + i + 1;
            }
        }
        self.counted = offset.max(self.counted);
        let before = text.get(self.line_start..offset).unwrap_or_default();
        // Characters, not bytes: UTF-8 continuation bytes do not start a character.
        let column = before.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64 + 1;
        (self.newlines + 1, column)
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match scan(args) {
        Ok(found) if found => Ok(ExitCode::from(EXIT_FOUND)),
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

/// Runs the scan; `Ok(true)` when a key was found.
fn scan(args: &Args) -> anyhow::Result<bool> {
    // Everything the user gave is checked before the (possibly long) scan starts.
    let reporter = match (&args.report, &args.root_key_file) {
        (Some(url), Some(file)) => Some(report::Reporter::new(url, file)?),
        _ => None,
    };
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    for path in &paths {
        if std::fs::symlink_metadata(path).is_err() {
            anyhow::bail!("{}: no such file or directory", path.display());
        }
    }
    let mut scan = Scan::new(args);
    let started = std::time::Instant::now();
    if args.git {
        git::scan_history(&paths, &mut scan)?;
    } else {
        files::scan_files(&paths, &mut scan)?;
    }
    scan.progress.finish_and_clear();
    super::ignore_broken_pipe(output::write(args.format, &scan.findings))?;
    output::summary(args.git, &scan.findings, &scan.stats, started.elapsed());
    if let Some(reporter) = reporter {
        reporter.send(&scan.findings)?;
    }
    Ok(!scan.findings.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_from_one_and_columns_count_characters() {
        let text = "ab\ncdé_x\n\nzz".as_bytes();
        let mut lines = LineCounter::default();
        assert_eq!(lines.advance(text, 0), (1, 1));
        assert_eq!(lines.advance(text, 1), (1, 2));
        assert_eq!(lines.advance(text, 3), (2, 1));
        // 'é' is two bytes but one character.
        let underscore = text.iter().position(|&b| b == b'_').unwrap();
        assert_eq!(lines.advance(text, underscore), (2, 4));
        let last = text.len() - 1;
        assert_eq!(lines.advance(text, last), (4, 2));
    }
}
