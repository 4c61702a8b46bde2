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
