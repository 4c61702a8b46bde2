//! `keyhaven import FILE`: bulk import of existing keys straight into the database, in
//! batches of one transaction (and one audit event) each. JSON Lines (one
//! `ImportItem` object a line, see `docs/openapi.json`) or CSV with a header row naming
//! the same fields (`scopes` separated by spaces). Re-running a file skips what is
//! already imported, so an interrupted import is resumed by running it again. Bad lines
//! are reported with their line number and reason; the rest are imported.
//!
//! A running server notices the first imported keys within `usage_flush_interval`;
//! prefer `POST /v1/keys/import` for small imports into a live server.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use keyhaven_service::actor::{Actor, CLI_ACTOR};
use keyhaven_service::clock;
use keyhaven_service::import::{self, CsvRow, ImportItem};
use keyhaven_service::keys::{Admission, Written, write_batch};
use keyhaven_store::{KeyRecord, Store};

use crate::setup::{self, Deployment, Opened};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON Lines (`.jsonl`, `.json`) or CSV (`.csv`) file of keys to import.
    pub file: PathBuf,
    #[command(flatten)]
    pub deployment: Deployment,
    /// Keys per transaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub batch: u32,
    /// Write rejected lines (line number and reason) here instead of stderr.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct Tally {
    imported: u64,
    skipped: u64,
    rejected: u64,
}

struct Importer<'a> {
    store: &'a dyn Store,
    peppers: &'a keyhaven_core::PepperSet,
    actor: Actor,
    admission: Admission,
    batch: Vec<KeyRecord>,
    batch_size: usize,
    tally: Tally,
    report: Box<dyn Write + 'a>,
}

impl Importer<'_> {
    async fn item(&mut self, line: usize, built: Built) -> anyhow::Result<()> {
        let built = match built {
            Ok(record) => (self.admission)
                .check(self.store, &record.keyspace_id, record.owner_id.as_deref())
                .await?
                .map(|()| record),
            Err(e) => Err(e),
        };
        match built {
            Ok(record) => {
                self.batch.push(record);
                if self.batch.len() >= self.batch_size {
                    self.flush().await?;
                }
            }
            Err(reason) => {
                self.tally.rejected += 1;
                writeln!(self.report, "line {line}: {reason}")?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // One transaction (and audit event) per keyspace in the batch.
        let batch = std::mem::take(&mut self.batch);
        let written =
            write_batch(self.store, self.peppers, &self.actor, batch, clock::now()).await?;
        for w in written {
            match w {
                Written::Imported(_) => self.tally.imported += 1,
                Written::Skipped => self.tally.skipped += 1,
            }
        }
        Ok(())
    }
}

/// The columns a CSV file may name in its header row, the required ones first.
const CSV_REQUIRED: [&str; 3] = ["keyspace_id", "format", "hash"];
const CSV_OPTIONAL: [&str; 7] = [
    "prefix",
    "short_token",
    "owner_id",
    "name",
    "scopes",
    "expires_at",
    "enabled",
];

/// Refuses a CSV file whose first line is not a header naming known columns, before
/// anything is written: without a header every row would be read as one, or be rejected
/// for a reason that does not say what is wrong. Never echoes a cell that is not a
/// column name (a headerless file's first line holds a digest).
fn check_csv_header(path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = csv::Reader::from_reader(BufReader::new(file));
    let header = reader
        .headers()
        .map_err(|e| anyhow::anyhow!("{}: cannot read the header row: {e}", path.display()))?
        .clone();
    let columns = format!(
        "the first line must be a header row naming the columns: {} (required), {} (optional); \
         see README, \"Importing existing keys\"",
        CSV_REQUIRED.join(","),
        CSV_OPTIONAL.join(",")
    );
    let missing: Vec<&str> = CSV_REQUIRED
        .iter()
        .copied()
        .filter(|c| !header.iter().any(|h| h == *c))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{}: no header row (the column{} {} {} missing): {columns}",
            path.display(),
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        );
    }
    for name in &header {
        if !CSV_REQUIRED.contains(&name) && !CSV_OPTIONAL.contains(&name) {
            let shown = if name.len() <= 40
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ')
            {
                format!("{name:?}")
            } else {
                "a column".to_owned()
            };
            anyhow::bail!(
                "{}: {shown} is not a known column; {columns}",
                path.display()
            );
        }
    }
    Ok(())
}

type Built = Result<KeyRecord, String>;

/// Reads `file` and sends built records in chunks; stops early if the receiver is gone.
fn parse_file(
    file: std::fs::File,
    csv: bool,
    peppers: &keyhaven_core::PepperSet,
    progress: &ProgressBar,
    tx: &std::sync::mpsc::SyncSender<Vec<(usize, Built)>>,
) -> anyhow::Result<()> {
    const CHUNK: usize = 1000;
    let build = |item: ImportItem| import::build(&item, peppers, clock::now());
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut chunk = Vec::with_capacity(CHUNK);
    let send = |chunk: &mut Vec<(usize, Built)>| -> bool {
        tx.send(std::mem::replace(chunk, Vec::with_capacity(CHUNK)))
            .is_ok()
    };
    if csv {
        let mut rows = csv::Reader::from_reader(reader);
        for (i, row) in rows.deserialize::<CsvRow>().enumerate() {
            let built = row
                .map_err(|e| format!("invalid CSV: {e}"))
                .and_then(|r| build(ImportItem::from(r)));
            chunk.push((i + 2, built));
            if chunk.len() == CHUNK && !send(&mut chunk) {
                return Ok(());
            }
        }
    } else {
        for (i, line) in reader.lines().enumerate() {
            let line = line.context("reading the file")?;
            progress.inc(line.len() as u64 + 1);
            if line.trim().is_empty() {
                continue;
            }
            let built = serde_json::from_str::<ImportItem>(&line)
                .map_err(|e| {
                    format!(
                        "invalid JSON: {}",
                        keyhaven_service::validate::redact(&e.to_string())
                    )
                })
                .and_then(build);
            chunk.push((i + 1, built));
            if chunk.len() == CHUNK && !send(&mut chunk) {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        send(&mut chunk);
    }
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = args.deployment.config()?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let csv = args
        .file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if csv {
        check_csv_header(&args.file)?;
    }
    setup::with_store(&config, async |Opened { store, peppers, .. }| {
        let report: Box<dyn Write> = match &args.report {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            )),
            None => Box::new(std::io::stderr()),
        };
        let progress = ProgressBar::new(size);
        progress.set_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let actor = Actor::local(CLI_ACTOR);
        let mut importer = Importer {
            store: store.as_ref(),
            peppers: &peppers,
            admission: Admission::new(&actor),
            actor,
            batch: Vec::with_capacity(args.batch as usize),
            batch_size: args.batch as usize,
            tally: Tally::default(),
            report,
        };
        let started = Instant::now();
        // Parsing and building records (JSON, digests, random key ids) runs on its own
        // thread while this one writes the previous batch: the two overlap.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(usize, Built)>>(4);
        let parser = {
            let peppers = peppers.clone();
            let progress = progress.clone();
            std::thread::spawn(move || parse_file(file, csv, &peppers, &progress, &tx))
        };
        while let Ok(chunk) = rx.recv() {
            for (line, built) in chunk {
                importer.item(line, built).await?;
            }
        }
        parser
            .join()
            .map_err(|_| anyhow::anyhow!("the parser thread panicked"))??;
        importer.flush().await?;
        importer.report.flush()?;
        progress.finish_and_clear();
        let t = &importer.tally;
        let secs = started.elapsed().as_secs_f64();
        let total = t.imported + t.skipped + t.rejected;
        println!(
            "imported {}, skipped {} (already present), rejected {} in {secs:.2} s ({:.0} lines/s)",
            t.imported,
            t.skipped,
            t.rejected,
            total as f64 / secs.max(1e-9)
        );
        Ok(if t.rejected > 0 {
            ExitCode::from(crate::EXIT_INVALID)
        } else {
            ExitCode::SUCCESS
        })
    })
}
