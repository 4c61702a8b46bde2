//! `keyhaven serve`: the HTTP server. On first start it creates the data directory,
//! database and pepper, and prints one root key with every scope, once, with what to do
//! next.

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use keyhaven_server::AppState;
use keyhaven_service::bootstrap;
use keyhaven_service::config::{Config, LogFormat};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::setup::{self, Opened};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "KEYHAVEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the database and pepper [default: ./keyhaven-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long)]
    pub listen: Option<String>,
    /// Database URL [default: sqlite in the data directory]
    #[arg(long)]
    pub database_url: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Also be a gateway: listen here for requests to the API at --proxy-upstream,
    /// checking each one's key (more listeners and route rules: `[[proxy]]` in the file).
    #[arg(long, value_name = "ADDR", requires = "proxy_upstream")]
    pub proxy_listen: Option<String>,
    /// The API behind the gateway, as http://host:port.
    #[arg(long, value_name = "URL", requires = "proxy_listen")]
    pub proxy_upstream: Option<String>,
}

pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYHAVEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = setup::load_config(
        args.config.as_deref(),
        args.data_dir.as_deref(),
        &[
            ("listen", args.listen.as_ref()),
            ("database_url", args.database_url.as_ref()),
            ("log_format", args.log_format.as_ref()),
        ],
    )?;
    let config = match (&args.proxy_listen, &args.proxy_upstream) {
        (Some(listen), Some(upstream)) => config
            .with_proxy(listen, upstream)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?,
        _ => config,
    };
    init_logging(config.log_format);
    setup::warn_unknown_env();
    setup::multi_thread()?.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    bootstrap::ensure_data_dir(&config.data_dir)?;
    let _lock = keyhaven_service::serve_lock::acquire(&config)?;
    let Opened {
        store,
        peppers,
        source,
    } = setup::open(&config).await?;
    let master_keys = bootstrap::load_master_keys(&config.data_dir, store.as_ref()).await?;
    let signing_keys = bootstrap::load_signing_keys(&config.data_dir, store.as_ref()).await?;
    tracing::info!(source = %signing_keys.source(), versions = ?signing_keys.versions(), "token signing keys loaded");
    tracing::info!(source = %source, versions = ?peppers.versions().map(|v| v.get()).collect::<Vec<_>>(), "pepper loaded");
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let first_root_key = if store.count_root_keys().await? == 0 {
        let key = keyhaven_service::root_keys::create(
            store.as_ref(),
            &peppers,
            vec!["*".to_owned()],
            None,
            Some("initial root key".to_owned()),
            keyhaven_service::root_keys::CLI_ACTOR,
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the first root key: {e}"))?;
        Some(key)
    } else {
        None
    };

    let data_path = config.data_dir.clone();
    let data_dir = config.data_dir.display().to_string();
    let state = AppState::with_parts(
        store,
        peppers,
        Some(master_keys),
        config,
        keyhaven_service::clock::Clock::System,
    )?;
    keyhaven_service::tokens::install(&state, signing_keys);
    if state.github_keys.is_configured() {
        let known = (state.github_keys.load().await)
            .context("loading GitHub's secret scanning public keys")?;
        tracing::info!(keys = known, "GitHub secret scanning endpoint ready");
    }
    tracing::info!(
        %addr,
        data_dir,
        ratelimits = if state.limits.shared().is_some() { "shared through Redis" } else { "this process" },
        "keyhaven listening"
    );
    if let Some(key) = first_root_key {
        // On a terminal the key is shown once; anywhere else (a service manager, a
        // container, a pipe into a log) stdout may be kept, so it goes to a private file.
        let shown = if std::io::stdout().is_terminal() {
            FirstKey::Shown(key.key().expose_secret())
        } else {
            let path = bootstrap::write_first_root_key(&data_path, key.key().expose_secret())
                .context(
                    "saving the first root key (make another with `keyhaven root-key create`)",
                )?;
            tracing::info!(path = %path.display(), "first root key written (mode 0600)");
            FirstKey::InFile(path)
        };
        print_welcome(&addr.to_string(), &shown)?;
    }
    keyhaven_server::serve(listener, state, keyhaven_server::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Where the first root key went.
enum FirstKey<'a> {
    /// Printed to the terminal, once.
    Shown(&'a str),
    /// Written to this file (mode 0600).
    InFile(PathBuf),
}

fn print_welcome(addr: &str, first: &FirstKey<'_>) -> anyhow::Result<()> {
    let (intro, root_key) = match first {
        FirstKey::Shown(key) => (
            format!(
                "This is your root key. It is shown once and can do everything: keep it in your\n\
                 secret manager, not in code.\n\n    {key}"
            ),
            (*key).to_owned(),
        ),
        FirstKey::InFile(path) => (
            format!(
                "Your root key, which can do everything, is in {path} (readable\n\
                 only by this user). Move it to your secret manager, then delete the file.",
                path = path.display()
            ),
            format!("$(cat '{}')", path.display()),
        ),
    };
    let (intro, root_key) = (
        zeroize::Zeroizing::new(intro),
        zeroize::Zeroizing::new(root_key),
    );
    let text = zeroize::Zeroizing::new(format!(
        r#"
Keyhaven is running on http://{addr}

{intro}

Next, in another terminal (plain sh + curl):

    KH=http://{addr}
    ROOT_KEY={root_key}
    # 1. A keyspace: a family of keys with its own prefix.
    KS=$(curl -s $KH/v1/keyspaces -H "Authorization: Bearer $ROOT_KEY" \
      -H 'Content-Type: application/json' -d '{{"name":"Acme live","prefix":"acme_live"}}' \
      | sed -n 's/.*"id":"\([^"]*\)".*/\1/p'); echo $KS
    # 2. A key for one of your customers (the plaintext is returned this once).
    KEY=$(curl -s $KH/v1/keys -H "Authorization: Bearer $ROOT_KEY" \
      -H 'Content-Type: application/json' -d "{{\"keyspace_id\":\"$KS\",\"name\":\"first key\"}}" \
      | sed -n 's/.*"key":"\([^"]*\)".*/\1/p'); echo $KEY
    # 3. Verify it, as your API would on every request: "code":"VALID".
    curl -s $KH/v1/keys/verify -H "Authorization: Bearer $ROOT_KEY" \
      -H 'Content-Type: application/json' -d "{{\"key\":\"$KEY\"}}"

Dashboard: http://{addr}/dashboard/ (first make yourself an operator:
    keyhaven operator create --email you@example.com)
API reference: http://{addr}/openapi.json
"#,
        intro = *intro,
        root_key = *root_key
    ));
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
