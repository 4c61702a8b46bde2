//! `keyhaven migrate`: applies pending database migrations and exits (servers also apply
//! them at start). `--upgrade-imports` also converts, once, imported keys that an older
//! version stored with their old system's plain digest.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use keyhaven_service::bootstrap;

use super::serve::{flag_layer, load_config};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "KEYHAVEN_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub database_url: Option<String>,
    /// Also convert keys that an older version imported, and that were never verified
    /// since, to peppered digests (once, after upgrading; until then they do not verify).
    #[arg(long)]
    pub upgrade_imports: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let flags = flag_layer(
        args.data_dir.as_ref(),
        None,
        args.database_url.as_ref(),
        None,
    );
    let config = load_config(args.config.as_ref(), &flags)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        bootstrap::ensure_data_dir(&config.data_dir)?;
        let store = bootstrap::open_store(&config).await?;
        store.migrate().await?;
        if args.upgrade_imports {
            let (peppers, _) = bootstrap::load_peppers(&config.data_dir, store.as_ref()).await?;
            let upgrade =
                keyhaven_service::import::upgrade_stored(store.as_ref(), &peppers, true).await?;
            if upgrade.converted == 0 {
                println!("no imported key waits for an upgrade");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "converted {} imported key(s) to peppered lookups and digests",
                upgrade.converted
            );
        }
        println!("database is up to date");
        Ok(ExitCode::SUCCESS)
    })
}
