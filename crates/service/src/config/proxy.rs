//! A reverse proxy listener's configuration (`[[proxy]]` in the configuration file, or
//! `keyhaven serve --proxy-listen ADDR --proxy-upstream URL`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::routes::{RouteRule, Rules};

/// One listener in front of one upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where the proxy listens (`IP:port` or `host:port`).
    #[serde(deserialize_with = "crate::config::values::listen_address")]
    pub listen: SocketAddr,
    /// The API behind: `http://host:port`, optionally with a base path that request
    /// paths are appended to.
    pub upstream: String,
    /// Longest wait for the upstream's response head; past it the answer is 504.
    #[serde(default = "default_upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// Longest wait for a connection to the upstream; past it the answer is 502.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Send the client's `Host` upstream (default: the upstream's own host, as nginx
    /// does; the client's is in `X-Forwarded-Host`).
    #[serde(default)]
    pub preserve_host: bool,
    /// As [`Rules::key_header`].
    #[serde(default)]
    pub key_header: Option<String>,
    /// As [`Rules::trusted_proxy_hops`].
    #[serde(default)]
    pub trusted_proxy_hops: u32,
    /// As [`Rules::keyspace_id`].
    #[serde(default)]
    pub keyspace_id: Option<String>,
    /// As [`Rules::token_audience`].
    #[serde(default)]
    pub token_audience: Option<String>,
    /// As [`Rules::routes`].
    #[serde(default)]
    pub routes: Vec<RouteRule>,
}

fn default_upstream_timeout_ms() -> u64 {
    60_000
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

impl ProxyConfig {
    /// A listener with default rules (every request needs a valid key).
    pub fn new(listen: SocketAddr, upstream: String) -> Self {
        Self {
            listen,
            upstream,
            upstream_timeout_ms: default_upstream_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            preserve_host: false,
            key_header: None,
            trusted_proxy_hops: 0,
            keyspace_id: None,
            token_audience: None,
            routes: Vec::new(),
        }
    }

    /// The request rules of this listener.
    pub fn rules(&self) -> Rules {
        Rules {
            key_header: self.key_header.clone(),
            trusted_proxy_hops: self.trusted_proxy_hops,
            keyspace_id: self.keyspace_id.clone(),
            token_audience: self.token_audience.clone(),
            routes: self.routes.clone(),
        }
    }

    /// Within bounds; the error names the field (`at` is where this entry is).
    pub fn check(&self, at: &str) -> Result<(), String> {
        let rest = self.upstream.strip_prefix("http://").unwrap_or_default();
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty()
            || self
                .upstream
                .chars()
                .any(|c| c.is_whitespace() || c == '?' || c == '#' || c == '@')
        {
            return Err(format!(
                "{at}.upstream must be an http:// address such as http://127.0.0.1:3000 \
                 (no query, fragment or credentials; put TLS in front of or behind the proxy)"
            ));
        }
        for (name, value) in [
            ("upstream_timeout_ms", self.upstream_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!("{at}.{name} must be greater than 0"));
            }
        }
        self.rules().check(at)
    }
}

impl crate::config::Config {
    /// Adds a proxy listener from the command line (`--proxy-listen ADDR
    /// --proxy-upstream URL`) to those of the file, with default rules, and checks the
    /// whole again.
    pub fn with_proxy(mut self, listen: &str, upstream: &str) -> Result<Self, String> {
        let listen =
            crate::config::values::listen_address(serde_json::Value::String(listen.to_owned()))
                .map_err(|e| format!("--proxy-listen: {e}"))?;
        self.proxy
            .push(ProxyConfig::new(listen, upstream.to_owned()));
        self.validate()?;
        Ok(self)
    }
}
