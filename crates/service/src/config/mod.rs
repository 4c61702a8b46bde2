//! Server configuration, layered: built-in defaults → TOML file (`--config`) →
//! `KEYHAVEN_*` environment variables → command-line flags. Unknown fields in the file
//! are an error; unknown `KEYHAVEN_*` variables are warned about (a typo must not pass
//! silently). Every option is listed in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Data, Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod checks;
pub mod proxy;
pub mod routes;
pub(crate) mod values;

use values::without_password;
pub use values::{LogFormat, MetricsListen, RatelimitFallback};

/// Environment variables read outside this struct (so not "unknown").
pub const OTHER_ENV: &[&str] = &[
    "KEYHAVEN_PEPPER",
    "KEYHAVEN_MASTER_KEY",
    "KEYHAVEN_CONFIG",
    "KEYHAVEN_LOG",
];

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on: `IP:port` or `host:port` (resolved when the configuration
    /// is read; the first address wins).
    #[serde(deserialize_with = "values::listen_address")]
    pub listen: SocketAddr,
    /// Directory holding the database and the pepper file.
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://…` or `postgres://…`; default:
    /// `sqlite://<data_dir>/keyhaven.db`.
    pub database_url: Option<String>,
    /// PostgreSQL: connections in this node's pool.
    pub database_max_connections: u32,
    /// PostgreSQL: start even when the server has `fsync` or `synchronous_commit` off
    /// (acknowledged writes could then be lost in a crash). For throwaway databases.
    pub allow_unsafe_durability: bool,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Requests taking longer are answered 503 `timeout`.
    pub request_timeout_ms: u64,
    /// Most connections open at once (0: as many as the descriptor limit leaves room for).
    /// At the cap a new connection replaces the oldest one without a request in flight.
    pub max_connections: u32,
    /// A new connection's first request head must be complete within this long.
    pub http_header_timeout_ms: u64,
    /// A request body that sends nothing for this long is answered 408 `body_timeout`.
    pub http_body_timeout_ms: u64,
    /// A kept-alive connection with no request in flight for this long is closed.
    pub http_idle_timeout_ms: u64,
    /// Where `/metrics` is served: `main` (on `listen`, no authentication: the default,
    /// fine on a loopback or private listener), `off`, or an address (`127.0.0.1:9100`)
    /// for a separate listener that serves only `/metrics`.
    pub metrics_listen: MetricsListen,
    /// Most key records kept in the verify cache.
    pub cache_capacity: u64,
    /// A cached key record is re-read from the database after this long.
    pub cache_ttl_ms: u64,
    /// PostgreSQL (several nodes): the longest a node serves a cached key record when it
    /// cannot confirm that its change feed (`LISTEN`) is live, so a change made through
    /// another node is never missed for longer than this.
    pub cache_coherence_ms: u64,
    /// How often in-memory usage counters are written to the database.
    pub usage_flush_interval_ms: u64,
    /// How long responses to requests with an `Idempotency-Key` are kept for replay.
    pub idempotency_ttl_hours: u64,
    /// Redis URL (`redis://host:port/db`): rate limits are then shared by every node
    /// using the same Redis. Default: decided in this process.
    pub redis_url: Option<String>,
    /// How long a Redis call may take before the fallback applies.
    pub redis_timeout_ms: u64,
    /// What a node does while Redis is unreachable: `local_share` (enforce its share of
    /// each limit locally) or `deny` (refuse calls of keys that have rate limits).
    pub ratelimit_fallback: RatelimitFallback,
    /// Nodes sharing the limits, for the fallback share. Default: the count of live
    /// nodes each node registers in Redis (last known).
    pub cluster_nodes: Option<u32>,
    /// How often quota uses are written to the database; 0 writes each use before the
    /// verification answers (no use is lost to a crash, at one write per call).
    pub quota_flush_interval_ms: u64,
    /// Wrong secrets for one key id per minute before further failures answer
    /// RATE_LIMITED (0: off).
    pub failed_verifications_per_key_per_minute: u32,
    /// Failed verifications per minute from one `client_ip` before further failures
    /// answer RATE_LIMITED (0: off).
    pub failed_verifications_per_ip_per_minute: u32,
    /// Count verifications per key (usage API, `last_used_at`, anomaly alerts). Off, the
    /// verify path counts nothing.
    pub usage_tracking: bool,
    /// How long per-minute usage is kept (the anomaly baseline reads it).
    pub usage_minute_retention_hours: u64,
    /// How long per-hour usage is kept.
    pub usage_hour_retention_days: u64,
    /// How long per-day usage is kept.
    pub usage_day_retention_days: u64,
    /// Default: a key's minute above this many times its baseline is a `usage.anomaly`.
    pub alert_spike_factor: u32,
    /// Default: minutes with fewer verifications are never a spike.
    pub alert_spike_min_per_minute: u64,
    /// Default: this many wrong secrets for one key id in a minute is a `usage.anomaly`.
    pub alert_failed_per_minute: u64,
    /// A key's baseline is its mean rate over this many minutes before the one judged;
    /// younger keys are not judged for spikes.
    pub alert_baseline_minutes: u64,
    /// An alert episode ends after this many minutes without the condition; the next
    /// occurrence is a new event.
    pub alert_quiet_minutes: u64,
    /// How long a webhook receiver has to answer one attempt.
    pub webhook_timeout_ms: u64,
    /// Delay before the first retry; each next one doubles (with jitter).
    pub webhook_retry_initial_ms: u64,
    /// Longest delay between two attempts.
    pub webhook_retry_max_delay_ms: u64,
    /// A delivery is retried for this long after its first attempt was due, then
    /// marked failed (a manual re-send starts a new period).
    pub webhook_retry_period_hours: u64,
    /// Attempts a node makes at once.
    pub webhook_concurrency: u32,
    /// Allow webhook URLs on loopback, private, link-local and other non-public addresses
    /// (checked at creation and on every connection). For tests and private networks.
    pub webhook_allow_private_targets: bool,
    /// The address people and browsers reach this server at (`https://keys.example.com`):
    /// customer portal links start with it, and with `https` the dashboard's and portal's
    /// cookies are marked `Secure`. Default: `http://<listen>`.
    pub public_url: Option<String>,
    /// A dashboard session unused for this long ends.
    pub session_idle_minutes: u64,
    /// A dashboard session ends this long after sign-in, however active.
    pub session_max_hours: u64,
    /// A customer portal session ends this long after its link was opened.
    pub portal_session_minutes: u64,
    /// Failed dashboard sign-ins for one email address within the window before further
    /// attempts are refused until the window has passed.
    pub login_failures_per_email: u32,
    /// Failed dashboard sign-ins from one address within the window before further
    /// attempts from it are refused.
    pub login_failures_per_ip: u32,
    /// The sliding window of the two limits above.
    pub login_failure_window_minutes: u64,
    /// GitHub's secret scanning public keys, in the JSON format GitHub serves at
    /// `https://api.github.com/meta/public_keys/secret_scanning`; read again whenever the
    /// file changes. Enables `POST /v1/leaks/github`.
    pub leaks_github_public_keys_file: Option<PathBuf>,
    /// Where to fetch GitHub's secret scanning public keys from (hourly, and at most once
    /// a minute when a batch names an unknown key). Needs outbound HTTPS.
    pub leaks_github_public_keys_url: Option<String>,
    /// Log one INFO line per request (method, route, status, latency, key id).
    pub access_log: bool,
    /// Log one INFO line (target `keyhaven::verify`: key id, keyspace, outcome, client
    /// address) for one verification in this many: 0 logs none, 1 every one.
    pub verify_log_every: u64,
    /// Root keys stop working this many seconds after their creation (or rotation), and
    /// root keys made through the API expire then at the latest. Default: no limit.
    pub root_key_max_age_seconds: Option<u64>,
    /// Reverse proxy listeners in front of other APIs (`[[proxy]]`, file only).
    pub proxy: Vec<proxy::ProxyConfig>,
    /// The rules of forward auth (`GET /v1/auth`) and Envoy's external authorization
    /// (`[gateway]`, file only).
    pub gateway: routes::Rules,
    /// Address of the Envoy external authorization gRPC service
    /// (`envoy.service.auth.v3.Authorization`), deciding under `[gateway]`. Default: off.
    #[serde(deserialize_with = "values::optional_listen_address")]
    pub envoy_authz_listen: Option<SocketAddr>,
}

/// `Debug` without the passwords URLs may carry (`redis://:secret@host`).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = |u: &Option<String>| u.as_deref().map(without_password);
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("allow_unsafe_durability", &self.allow_unsafe_durability)
            .field("log_format", &self.log_format)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_connections", &self.max_connections)
            .field("http_header_timeout_ms", &self.http_header_timeout_ms)
            .field("http_body_timeout_ms", &self.http_body_timeout_ms)
            .field("http_idle_timeout_ms", &self.http_idle_timeout_ms)
            .field("metrics_listen", &self.metrics_listen)
            .field("cache_capacity", &self.cache_capacity)
            .field("cache_ttl_ms", &self.cache_ttl_ms)
            .field("cache_coherence_ms", &self.cache_coherence_ms)
            .field("usage_flush_interval_ms", &self.usage_flush_interval_ms)
            .field("idempotency_ttl_hours", &self.idempotency_ttl_hours)
            .field("redis_url", &url(&self.redis_url))
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("ratelimit_fallback", &self.ratelimit_fallback)
            .field("cluster_nodes", &self.cluster_nodes)
            .field("quota_flush_interval_ms", &self.quota_flush_interval_ms)
            .field(
                "failed_verifications_per_key_per_minute",
                &self.failed_verifications_per_key_per_minute,
            )
            .field(
                "failed_verifications_per_ip_per_minute",
                &self.failed_verifications_per_ip_per_minute,
            )
            .field("usage_tracking", &self.usage_tracking)
            .field(
                "usage_minute_retention_hours",
                &self.usage_minute_retention_hours,
            )
            .field("usage_hour_retention_days", &self.usage_hour_retention_days)
            .field("usage_day_retention_days", &self.usage_day_retention_days)
            .field("alert_spike_factor", &self.alert_spike_factor)
            .field(
                "alert_spike_min_per_minute",
                &self.alert_spike_min_per_minute,
            )
            .field("alert_failed_per_minute", &self.alert_failed_per_minute)
            .field("alert_baseline_minutes", &self.alert_baseline_minutes)
            .field("alert_quiet_minutes", &self.alert_quiet_minutes)
            .field("webhook_timeout_ms", &self.webhook_timeout_ms)
            .field("webhook_retry_initial_ms", &self.webhook_retry_initial_ms)
            .field(
                "webhook_retry_max_delay_ms",
                &self.webhook_retry_max_delay_ms,
            )
            .field(
                "webhook_retry_period_hours",
                &self.webhook_retry_period_hours,
            )
            .field("webhook_concurrency", &self.webhook_concurrency)
            .field(
                "webhook_allow_private_targets",
                &self.webhook_allow_private_targets,
            )
            .field("public_url", &self.public_url)
            .field("session_idle_minutes", &self.session_idle_minutes)
            .field("session_max_hours", &self.session_max_hours)
            .field("portal_session_minutes", &self.portal_session_minutes)
            .field("login_failures_per_email", &self.login_failures_per_email)
            .field("login_failures_per_ip", &self.login_failures_per_ip)
            .field(
                "login_failure_window_minutes",
                &self.login_failure_window_minutes,
            )
            .field(
                "leaks_github_public_keys_file",
                &self.leaks_github_public_keys_file,
            )
            .field(
                "leaks_github_public_keys_url",
                &self.leaks_github_public_keys_url,
            )
            .field("access_log", &self.access_log)
            .field("verify_log_every", &self.verify_log_every)
            .field("root_key_max_age_seconds", &self.root_key_max_age_seconds)
            .field("proxy", &self.proxy)
            .field("gateway", &self.gateway)
            .field("envoy_authz_listen", &self.envoy_authz_listen)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("keyhaven-data"),
            database_url: None,
            database_max_connections: 16,
            allow_unsafe_durability: false,
            log_format: LogFormat::Text,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            max_connections: 0,
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 5_000,
            http_idle_timeout_ms: 60_000,
            metrics_listen: MetricsListen::Main,
            cache_capacity: 1_000_000,
            cache_ttl_ms: 60_000,
            cache_coherence_ms: 1_000,
            usage_flush_interval_ms: 5_000,
            idempotency_ttl_hours: 24,
            redis_url: None,
            redis_timeout_ms: 100,
            ratelimit_fallback: RatelimitFallback::LocalShare,
            cluster_nodes: None,
            quota_flush_interval_ms: 1_000,
            failed_verifications_per_key_per_minute: 10,
            failed_verifications_per_ip_per_minute: 100,
            usage_tracking: true,
            usage_minute_retention_hours: 48,
            usage_hour_retention_days: 90,
            usage_day_retention_days: 730,
            alert_spike_factor: 10,
            alert_spike_min_per_minute: 100,
            alert_failed_per_minute: 20,
            alert_baseline_minutes: 60,
            alert_quiet_minutes: 10,
            webhook_timeout_ms: 10_000,
            webhook_retry_initial_ms: 5_000,
            webhook_retry_max_delay_ms: 3_600_000,
            webhook_retry_period_hours: 24,
            webhook_concurrency: 16,
            webhook_allow_private_targets: false,
            public_url: None,
            session_idle_minutes: 30,
            session_max_hours: 12,
            portal_session_minutes: 60,
            login_failures_per_email: 10,
            login_failures_per_ip: 50,
            login_failure_window_minutes: 15,
            leaks_github_public_keys_file: None,
            leaks_github_public_keys_url: None,
            access_log: true,
            verify_log_every: 0,
            root_key_max_age_seconds: None,
            proxy: Vec::new(),
            gateway: routes::Rules::default(),
            envoy_authz_listen: None,
        }
    }
}

/// Options set only in the configuration file (tables and lists of tables: `[gateway]`,
/// `[[proxy]]`), never by an environment variable.
pub const FILE_ONLY: &[&str] = &["proxy", "gateway"];

/// The field names, which are also the environment variable names after `KEYHAVEN_`.
pub const FIELDS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "database_max_connections",
    "allow_unsafe_durability",
    "log_format",
    "max_body_bytes",
    "request_timeout_ms",
    "max_connections",
    "http_header_timeout_ms",
    "http_body_timeout_ms",
    "http_idle_timeout_ms",
    "metrics_listen",
    "cache_capacity",
    "cache_ttl_ms",
    "cache_coherence_ms",
    "usage_flush_interval_ms",
    "idempotency_ttl_hours",
    "redis_url",
    "redis_timeout_ms",
    "ratelimit_fallback",
    "cluster_nodes",
    "quota_flush_interval_ms",
    "failed_verifications_per_key_per_minute",
    "failed_verifications_per_ip_per_minute",
    "usage_tracking",
    "usage_minute_retention_hours",
    "usage_hour_retention_days",
    "usage_day_retention_days",
    "alert_spike_factor",
    "alert_spike_min_per_minute",
    "alert_failed_per_minute",
    "alert_baseline_minutes",
    "alert_quiet_minutes",
    "webhook_timeout_ms",
    "webhook_retry_initial_ms",
    "webhook_retry_max_delay_ms",
    "webhook_retry_period_hours",
    "webhook_concurrency",
    "webhook_allow_private_targets",
    "public_url",
    "session_idle_minutes",
    "session_max_hours",
    "portal_session_minutes",
    "login_failures_per_email",
    "login_failures_per_ip",
    "login_failure_window_minutes",
    "leaks_github_public_keys_file",
    "leaks_github_public_keys_url",
    "access_log",
    "verify_log_every",
    "root_key_max_age_seconds",
    "envoy_authz_listen",
];

impl Config {
    /// Layers the sources. `flags` holds only the options given on the command line.
    pub fn load(
        file: Option<&Path>,
        flags: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, Box<figment::Error>> {
        Self::layered(file.map(Toml::file_exact), flags)
    }

    /// As [`Config::load`], with the file's contents given as a string: the same layers,
    /// extraction and validation. Pub for the fuzz targets (a temp file per input would
    /// be too slow).
    pub fn load_toml_str(
        toml: &str,
        flags: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, Box<figment::Error>> {
        Self::layered(Some(Toml::string(toml)), flags)
    }

    fn layered(
        file: Option<Data<Toml>>,
        flags: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(file);
        }
        let config: Config = figment
            .merge(Env::prefixed("KEYHAVEN_").only(FIELDS))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)?;
        config
            .validate()
            .map_err(|e| Box::new(figment::Error::from(e)))?;
        Ok(config)
    }

    /// A configuration error as a person reads it: each option by its name and where
    /// its value came from (file, environment variable, command line), then what is
    /// wrong, with no source-code location or type name.
    pub fn describe_error(error: &figment::Error) -> String {
        error
            .clone()
            .into_iter()
            .map(|e| values::describe_one(&e))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The address portal links start with, without a trailing `/`.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Whether browsers reach this server over TLS (cookies are then `Secure`).
    pub fn public_is_https(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| {
            u.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        })
    }

    /// `KEYHAVEN_*` variables in `vars` that no option reads.
    pub fn unknown_env(vars: impl Iterator<Item = (String, String)>) -> Vec<String> {
        vars.filter_map(|(name, _)| {
            let field = name.strip_prefix("KEYHAVEN_")?.to_ascii_lowercase();
            let known = FIELDS.contains(&field.as_str()) || OTHER_ENV.contains(&name.as_str());
            (!known).then_some(name)
        })
        .collect()
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir
            .join(keyhaven_store::sqlite::DATABASE_FILE_NAME)
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }

    /// `root_key_max_age_seconds` as a span of time.
    pub fn root_key_max_age(&self) -> Option<time::Duration> {
        (self.root_key_max_age_seconds)
            .and_then(|age| i64::try_from(age).ok())
            .map(time::Duration::seconds)
    }

    pub fn cache_coherence(&self) -> Duration {
        Duration::from_millis(self.cache_coherence_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// `None` when every quota use is written before the verification answers.
    pub fn quota_flush_interval(&self) -> Option<Duration> {
        (self.quota_flush_interval_ms > 0)
            .then(|| Duration::from_millis(self.quota_flush_interval_ms))
    }

    /// How long usage of `granularity` is kept, in seconds.
    pub fn usage_retention_secs(&self, granularity: keyhaven_store::Granularity) -> i64 {
        let hours = match granularity {
            keyhaven_store::Granularity::Minute => self.usage_minute_retention_hours,
            keyhaven_store::Granularity::Hour => self.usage_hour_retention_days.saturating_mul(24),
            keyhaven_store::Granularity::Day => self.usage_day_retention_days.saturating_mul(24),
        };
        i64::try_from(hours.saturating_mul(3_600)).unwrap_or(i64::MAX)
    }

    pub fn usage_flush_interval(&self) -> Duration {
        Duration::from_millis(self.usage_flush_interval_ms)
    }
}

#[cfg(test)]
mod tests;
