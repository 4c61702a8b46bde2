//! `keyhaven healthcheck`: asks a running server whether it is ready (`/readyz`) and
//! exits 0 or 1, for container health checks and service managers where no `curl` is
//! installed (the Docker image has none).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::setup;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's base URL [default: from the `listen` option, with 0.0.0.0 or :: asked
    /// on loopback].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    #[arg(long, env = "KEYHAVEN_CONFIG", help = "TOML configuration file")]
    pub config: Option<std::path::PathBuf>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub timeout: u64,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let config = setup::load_config(args.config.as_deref(), None, &[])?;
            let mut addr = config.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            format!("http://{addr}")
        }
    };
    let url = format!("{base}/readyz");
    // reqwest is built without a default crypto provider (see the webhook client); a
    // provider installed already is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    setup::block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.timeout))
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        let answer = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("no answer from {url}"))?;
        let status = answer.status();
        if status.is_success() {
            println!("ready ({url})");
            Ok(ExitCode::SUCCESS)
        } else {
            let body = answer.text().await.unwrap_or_default();
            let detail: String = body.chars().take(300).collect();
            anyhow::bail!("{url} answered {status}: {detail}")
        }
    })
}
