//! `keyhaven proxy`: a stateless gateway node for another machine. It verifies each
//! request's key through a central Keyhaven (`--server`), keeps a local cache of
//! admissions coherent through the server's change stream, and forwards admitted
//! requests to `--upstream`. No database, no pepper: only a root key with the scope
//! `keys:verify`, read from a file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use secrecy::SecretString;

use crate::setup;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The central Keyhaven's base URL (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// File holding the root key the node verifies with; it needs the scope
    /// `keys:verify` (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE")]
    pub root_key_file: PathBuf,
    /// Listen here (with --upstream; more listeners and route rules: `[[proxy]]` in
    /// --config).
    #[arg(long, value_name = "ADDR", requires = "upstream")]
    pub listen: Option<String>,
    /// The API behind the node, as http://host:port.
    #[arg(long, value_name = "URL", requires = "listen")]
    pub upstream: Option<String>,
    /// TOML configuration file: its `[[proxy]]` listeners, `cache_*` and `http_*`
    /// options apply (see docs/gateway.md).
    #[arg(long, env = "KEYHAVEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = setup::load_config(
        args.config.as_deref(),
        None,
        // The node serves no API: `listen` is unused, and port 0 collides with no
        // proxy listener in the checks.
        &[
            ("log_format", args.log_format.as_ref()),
            ("listen", Some(&"127.0.0.1:0".to_owned())),
        ],
    )?;
    let config = match (&args.listen, &args.upstream) {
        (Some(listen), Some(upstream)) => config
            .with_proxy(listen, upstream)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?,
        _ => config,
    };
    if config.proxy.is_empty() {
        anyhow::bail!("nothing to proxy: give --listen and --upstream, or [[proxy]] in --config");
    }
    let server = reqwest::Url::parse(&args.server)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .with_context(|| format!("--server {}: not an http:// or https:// URL", args.server))?;
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(&args.root_key_file).with_context(
        || {
            format!(
                "cannot read the root key file {}",
                args.root_key_file.display()
            )
        },
    )?);
    let key = text.trim();
    if key.is_empty() {
        anyhow::bail!(
            "the root key file {} is empty",
            args.root_key_file.display()
        );
    }
    let root_key = SecretString::from(key.to_owned());
    super::serve::init_logging(config.log_format);
    setup::warn_unknown_env();
    let _ = rustls::crypto::ring::default_provider().install_default();
    setup::multi_thread()?.block_on(async {
        tracing::info!(server = %server, listeners = config.proxy.len(), "keyhaven proxy starting");
        keyhaven_server::app::proxy_node(
            config,
            server.as_str(),
            root_key,
            keyhaven_server::shutdown_signal(),
        )
        .await
    })?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
