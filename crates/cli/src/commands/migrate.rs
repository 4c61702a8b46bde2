//! `keyhaven migrate`: applies pending database migrations and exits (servers also apply
//! them at start).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use keyhaven_server::bootstrap;

use super::serve::{flag_layer, load_config};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "KEYHAVEN_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub database_url: Option<String>,
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
        println!("database is up to date");
        Ok(ExitCode::SUCCESS)
    })
}
