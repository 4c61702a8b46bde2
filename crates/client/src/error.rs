//! The client's one error type. No variant ever holds a key or the root key: the
//! transport's errors are reduced to their causes (never the request, its headers or its
//! body), and any text that came back from the server is scrubbed of the secrets that
//! were sent with the request before it is kept ([`redact`]).

use serde::{Deserialize, Serialize};

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Keyhaven could not be reached (connection refused or reset, no answer within the
    /// timeout), after the configured attempts. A verifier fails closed on this.
    #[error("cannot reach Keyhaven at {origin}: {detail}")]
    Unreachable {
        /// `scheme://host:port` of the server (never its user info or path).
        origin: String,
        detail: String,
    },
    /// Keyhaven answered with an error status (its problem document).
    #[error("Keyhaven answered {}: {} ({})", .problem.status, .problem.detail, .problem.code)]
    Api { problem: Problem },
    /// An answer that is not what the API documents.
    #[error("unreadable answer from Keyhaven: {0}")]
    Decode(String),
    /// The client was configured wrongly (a base URL that is not `http(s)://`, …).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The operation needs the HTTP API (an embedded client has only `verify`; use its
    /// `service()` for the rest).
    #[error("{0} needs a remote client")]
    Unsupported(&'static str),
    /// The embedded application layer failed (store unreachable, data directory locked).
    #[error("embedded Keyhaven: {0}")]
    Embedded(String),
}

impl Error {
    /// The HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { problem } => Some(problem.status),
            _ => None,
        }
    }

    /// The problem's stable `code` of an [`Error::Api`] (`not_found`, `validation_failed`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { problem } => Some(&problem.code),
            _ => None,
        }
    }

    /// Whether Keyhaven could not be asked at all (the case a verifier fails closed on).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// An RFC 9457 problem document, as every Keyhaven error answer carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:keyhaven:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `text` with every occurrence of each secret replaced by `<redacted>`. Applied to
/// anything from the wire that ends up in an [`Error`], so a server (or a proxy in
/// between) echoing a request cannot put a key into a log line.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(secret) {
            out = out.replace(secret, "<redacted>");
        }
    }
    out
}

/// The causes of a transport error, outermost first, without the URL: "error sending
/// request: connection refused (os error 111)".
pub(crate) fn transport_detail(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !detail.contains(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = cause.source();
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_secret() {
        let text = "bad key acme_live_x1 and root kh_root_y2 and acme_live_x1";
        assert_eq!(
            redact(text, &["acme_live_x1", "kh_root_y2", ""]),
            "bad key <redacted> and root <redacted> and <redacted>"
        );
    }

    #[test]
    fn api_errors_say_status_detail_and_code() {
        let e = Error::Api {
            problem: Problem {
                kind: "urn:keyhaven:problem:not_found".into(),
                title: "Not Found".into(),
                status: 404,
                detail: "The requested resource does not exist.".into(),
                code: "not_found".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "Keyhaven answered 404: The requested resource does not exist. (not_found)"
        );
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.code(), Some("not_found"));
    }
}
