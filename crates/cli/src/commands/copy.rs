//! `keyhaven copy --to postgres://…`: moves a SQLite deployment to PostgreSQL. Copies
//! every table (keyspaces, owners, keys, audit history, events, idempotency records,
//! usage counters, quota counters) from the configured SQLite database into an empty
//! PostgreSQL database, in one transaction. Stop the server first, so no write lands
//! after the snapshot; then start the nodes with `KEYHAVEN_DATABASE_URL` and the same
//! pepper.

use std::process::ExitCode;

use anyhow::bail;
use keyhaven_store::{PgOptions, PgStore, SqliteStore};

use crate::setup::{self, Deployment};

#[derive(Debug, clap::Args)]
#[command(
    mut_arg("data_dir", |a| a.help(
        "The data directory whose SQLite database is copied [default: ./keyhaven-data]"
    )),
    mut_arg("database_url", |a| a.help(
        "The source, if not the data directory's file: a `sqlite:` URL"
    ))
)]
pub struct Args {
    #[command(flatten)]
    pub deployment: Deployment,
    /// The target PostgreSQL database (`postgres://user:password@host:port/db`); it is
    /// migrated first and must hold no keys, owners, keyspaces or audit events.
    #[arg(long, value_name = "URL")]
    pub to: String,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = args.deployment.config()?;
    if !(args.to.starts_with("postgres://") || args.to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    setup::multi_thread()?.block_on(async {
        let source = match config.database_url.as_deref() {
            None => {
                let path = config.database_path();
                if !path.exists() {
                    bail!("no database at {}", path.display());
                }
                SqliteStore::open(&path).await?
            }
            Some(url) if url.starts_with("sqlite:") => SqliteStore::open_url(url).await?,
            Some(_) => bail!(
                "the source must be a SQLite database (the data directory's, or a sqlite: URL)"
            ),
        };
        let options = PgOptions {
            max_connections: 2,
            allow_unsafe_durability: config.allow_unsafe_durability,
        };
        let target = PgStore::open(&args.to, &options).await?;
        let started = std::time::Instant::now();
        let report = keyhaven_store::copy::sqlite_to_postgres(&source, &target, |table, rows| {
            if rows % 50_000 == 0 {
                eprintln!("  {table}: {rows} rows");
            }
        })
        .await?;
        for (table, rows) in &report {
            println!("{table}: {rows} rows");
        }
        println!(
            "copied in {:.1} s. Start the nodes with KEYHAVEN_DATABASE_URL set to the target \
             and the same pepper ({}).",
            started.elapsed().as_secs_f64(),
            if std::env::var_os(keyhaven_store::pepper_file::PEPPER_ENV).is_some() {
                "KEYHAVEN_PEPPER".to_owned()
            } else {
                format!("{}/pepper", config.data_dir.display())
            }
        );
        source.close().await;
        target.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
