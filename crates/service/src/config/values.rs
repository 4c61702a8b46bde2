//! The option values that are more than a number or a string: the rate-limit fallback,
//! where `/metrics` is served, the log format; and how URLs are shown without their
//! passwords.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `scheme://user:password@host…` → `scheme://user:<redacted>@host…`.
pub(super) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority
        .rsplit_once('@')
        .map(|(userinfo, _)| userinfo.len())
    {
        Some(at) => {
            let (userinfo, host) = rest.split_at(at);
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:<redacted>{host}")
        }
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatelimitFallback {
    LocalShare,
    Deny,
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    /// On the main listener, beside the API.
    Main,
    /// Nowhere.
    Off,
    /// On a listener of its own, which serves nothing else.
    Address(SocketAddr),
}

impl Serialize for MetricsListen {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Main => serializer.serialize_str("main"),
            Self::Off => serializer.serialize_str("off"),
            Self::Address(addr) => serializer.collect_str(addr),
        }
    }
}

impl<'de> Deserialize<'de> for MetricsListen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "main" => Ok(Self::Main),
            "off" => Ok(Self::Off),
            other => other.parse().map(Self::Address).map_err(|_| {
                serde::de::Error::custom(
                    "metrics_listen must be `main`, `off` or an address like 127.0.0.1:9100",
                )
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `listen` as `IP:port`, or `host:port` resolved now (the first address).
pub(crate) fn listen_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_listen_address(&text).map_err(serde::de::Error::custom)
}

/// An optional listener's address (`envoy_authz_listen`), read as `listen` is.
pub(crate) fn optional_listen_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| parse_listen_address(&text).map_err(serde::de::Error::custom))
        .transpose()
}

fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let bad = || {
        format!(
            "`{text}` is not an address to listen on: write IP:port or host:port, \
             such as 127.0.0.1:8080 or localhost:8080"
        )
    };
    if !text.contains(':') {
        return Err(bad());
    }
    std::net::ToSocketAddrs::to_socket_addrs(text)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(bad)
}

/// One configuration error: ``option `name` (where): what``.
pub(super) fn describe_one(e: &figment::Error) -> String {
    let key: Vec<&str> = e
        .path
        .iter()
        .map(String::as_str)
        .skip_while(|p| *p == "default")
        .collect();
    let key = key.join(".").to_lowercase();
    let whence = match e.metadata.as_ref() {
        Some(m) if m.name.contains("environment") => {
            format!(" (environment variable KEYHAVEN_{})", key.to_uppercase())
        }
        Some(m) => match m.source.as_ref() {
            Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
            Some(figment::Source::Code(_)) => " (given on the command line)".to_owned(),
            Some(figment::Source::Custom(s)) => format!(" ({s})"),
            _ => String::new(),
        },
        None => String::new(),
    };
    if key.is_empty() {
        format!("{}", e.kind)
    } else {
        format!("option `{key}`{whence}: {}", e.kind)
    }
}
