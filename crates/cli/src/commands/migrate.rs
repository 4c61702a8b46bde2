//! `keyhaven migrate`: applies pending database migrations and exits (servers also apply
//! them at start). `--upgrade-imports` also converts, once, imported keys that an older
//! version stored with their old system's plain digest.

use std::process::ExitCode;

use keyhaven_service::bootstrap;

use crate::setup::{self, Deployment};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub deployment: Deployment,
    /// Also convert keys that an older version imported, and that were never verified
    /// since, to peppered digests (once, after upgrading; until then they do not verify).
    #[arg(long)]
    pub upgrade_imports: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = args.deployment.config()?;
    setup::block_on(async {
        let store = setup::open_store(&config).await?;
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
