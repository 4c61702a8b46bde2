//! HTTP to one Keyhaven server: the root key on every request, bounded retries with
//! backoff on network errors only (a request that got an HTTP answer is never sent
//! again), problem documents read into [`Error::Api`].

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Problem, Result, redact, transport_detail};

/// How requests are sent.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    /// The base URL without a trailing `/`.
    base: String,
    /// `scheme://host:port`, for error messages.
    origin: String,
    root_key: SecretString,
    attempts: u32,
    backoff: Duration,
}

/// What [`Transport::build`] needs.
#[derive(Debug)]
pub(crate) struct TransportConfig {
    pub base: String,
    pub root_key: SecretString,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
}

impl Transport {
    pub fn build(config: TransportConfig) -> Result<Self> {
        let origin = origin(&config.base)?;
        // reqwest is built with rustls but without a crypto provider of its own: install
        // ring's as the process default unless the application already chose one.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| Error::Config(transport_detail(e)))?;
        Ok(Self {
            http,
            base: config.base.trim_end_matches('/').to_owned(),
            origin,
            root_key: config.root_key,
            attempts: config.attempts.max(1),
            backoff: config.backoff,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn root_key(&self) -> &SecretString {
        &self.root_key
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A request with the root key, not yet sent.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(self.root_key.expose_secret())
    }

    /// Sends `build()`'s request, again after a network error as `resend` allows (up to
    /// the configured attempts, backing off), never after an HTTP answer. `secrets` are
    /// keys sent with the request: scrubbed, with the root key, from anything an error
    /// keeps.
    pub async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
        secrets: &[&str],
        resend: Resend,
    ) -> Result<Response> {
        let mut pause = self.backoff;
        let mut attempt = 1;
        loop {
            match build().send().await {
                Ok(response) => return Ok(response),
                Err(e) if retryable(&e, resend) && attempt < self.attempts => {
                    tracing::debug!(attempt, error = %transport_detail(e), "Keyhaven unreachable; retrying");
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Unreachable {
                        origin: self.origin.clone(),
                        detail: self.scrub(&transport_detail(e), secrets),
                    });
                }
            }
        }
    }

    /// The body of a successful answer as `T`, or the error it is.
    pub async fn read<T: DeserializeOwned>(
        &self,
        response: Response,
        secrets: &[&str],
    ) -> Result<T> {
        let response = self.check(response, secrets).await?;
        let bytes = response.bytes().await.map_err(|e| Error::Unreachable {
            origin: self.origin.clone(),
            detail: self.scrub(&transport_detail(e), secrets),
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Decode(self.scrub(&e.to_string(), secrets)))
    }

    /// A successful answer as it is, or the error it is.
    pub async fn check(&self, response: Response, secrets: &[&str]) -> Result<Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let problem = serde_json::from_str::<Problem>(&text).unwrap_or_else(|_| Problem {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: format!(
                "an answer that is not a problem document ({} bytes)",
                text.len()
            ),
            code: format!("http_{}", status.as_u16()),
        });
        Err(Error::Api {
            problem: Problem {
                kind: self.scrub(&problem.kind, secrets),
                title: self.scrub(&problem.title, secrets),
                status: status.as_u16(),
                detail: self.scrub(&problem.detail, secrets),
                code: self.scrub(&problem.code, secrets),
            },
        })
    }

    /// `method path` with an optional JSON body and query, read as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&dyn ErasedQuery>,
        body: Option<&dyn ErasedBody>,
    ) -> Result<T> {
        let response = self.send_json(method, path, query, body, None).await?;
        self.read(response, &[]).await
    }

    /// `method path` answered without a body (204).
    pub async fn call_empty(
        &self,
        method: Method,
        path: &str,
        query: Option<&dyn ErasedQuery>,
    ) -> Result<()> {
        let response = self.send_json(method, path, query, None, None).await?;
        self.check(response, &[]).await.map(drop)
    }

    /// `method path` with `key` as the credential in place of the root key (the routes
    /// an API key calls for itself), read as `T`; `key` is scrubbed from any error.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<&dyn ErasedBody>,
    ) -> Result<T> {
        let response = self.send_json(method, path, None, body, Some(key)).await?;
        self.read(response, &[key]).await
    }

    /// `method path` with a JSON body holding keys (`secrets`): its bytes wiped once
    /// sent, and the keys scrubbed, with the root key, from any error.
    pub async fn call_secret<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &dyn ErasedBody,
        secrets: &[&str],
    ) -> Result<T> {
        let body = zeroize::Zeroizing::new(
            body.to_json()
                .map_err(|_| Error::Config("the request body cannot be written".into()))?,
        );
        let response = self
            .send(
                || {
                    self.request(method.clone(), path)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_vec())
                },
                secrets,
                // Batch verifications, imports (a taken key is skipped), reveals and
                // leak reports (each acted on once): sending one again changes nothing.
                Resend::Always,
            )
            .await?;
        self.read(response, secrets).await
    }

    /// Sends a JSON call with the root key, or with `as_key` instead.
    async fn send_json(
        &self,
        method: Method,
        path: &str,
        query: Option<&dyn ErasedQuery>,
        body: Option<&dyn ErasedBody>,
        as_key: Option<&str>,
    ) -> Result<Response> {
        let body = body
            .map(|b| b.to_json())
            .transpose()
            .map_err(|e| Error::Config(format!("the request body cannot be written: {e}")))?;
        let query = query
            .map(|q| q.to_pairs())
            .transpose()
            .map_err(|e| Error::Config(format!("the query cannot be written: {e}")))?;
        let secrets: &[&str] = match &as_key {
            Some(key) => std::slice::from_ref(key),
            None => &[],
        };
        // The same on every attempt: a retry after a timeout whose request did arrive
        // is answered from the first one, not applied twice.
        let idempotency = idempotency_key(&method, path)?;
        self.send(
            || {
                let mut request = match as_key {
                    Some(key) => self
                        .http
                        .request(method.clone(), self.url(path))
                        .bearer_auth(key),
                    None => self.request(method.clone(), path),
                };
                if let Some(pairs) = &query {
                    request = request.query(pairs);
                }
                if let Some(key) = &idempotency {
                    request = request.header("idempotency-key", key.as_str());
                }
                if let Some(body) = &body {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone());
                }
                request
            },
            secrets,
            Resend::for_call(&method, idempotency.is_some()),
        )
        .await
    }

    fn scrub(&self, text: &str, secrets: &[&str]) -> String {
        let mut all = Vec::with_capacity(secrets.len() + 1);
        all.extend_from_slice(secrets);
        all.push(self.root_key.expose_secret());
        redact(text, &all)
    }
}

/// A body of any serializable type, behind a reference (keeps `call` object-safe to pass).
pub(crate) trait ErasedBody: Sync {
    fn to_json(&self) -> serde_json::Result<Vec<u8>>;
}

impl<T: Serialize + Sync> ErasedBody for T {
    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}

/// A query of any serializable type, as name/value pairs.
pub(crate) trait ErasedQuery: Sync {
    fn to_pairs(&self) -> serde_json::Result<Vec<(String, String)>>;
}

impl<T: Serialize + Sync> ErasedQuery for T {
    fn to_pairs(&self) -> serde_json::Result<Vec<(String, String)>> {
        let value = serde_json::to_value(self)?;
        let Some(object) = value.as_object() else {
            return Ok(Vec::new());
        };
        Ok(object
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect())
    }
}

/// A fresh `Idempotency-Key` for a POST the server deduplicates by one (creates, revoke,
/// rotate, credits); `None` for any other call.
fn idempotency_key(method: &Method, path: &str) -> Result<Option<String>> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let deduplicated = *method == Method::POST
        && matches!(
            segments.as_slice(),
            ["v1", "keyspaces" | "keys" | "owners" | "webhooks" | "plans"]
                | ["v1", "keys", "batch"]
                | ["v1", "keyspaces", _, "roles"]
                | ["v1", "keys", _, "revoke" | "rotate" | "credits"]
                | ["v1", "owners", _, "credits"]
        );
    if !deduplicated {
        return Ok(None);
    }
    let mut bytes = [0u8; 16];
    keyhaven_core::random::fill(&mut bytes)
        .map_err(|e| Error::Config(format!("no randomness for an idempotency key: {e}")))?;
    Ok(Some(bytes.iter().map(|b| format!("{b:02x}")).collect()))
}

/// When a call that got no answer may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// After any failure without an answer (refused, reset, timed out before a response
    /// head): reads, writes the server deduplicates by `Idempotency-Key`, writes that
    /// change nothing the second time, and verifications (whose use may then be counted
    /// twice, the price of not failing a request over a blip).
    Always,
    /// Only when no connection was made: a write the server would apply twice (a second
    /// root key, a rate limit charged twice) if the first had arrived unanswered.
    IfNotConnected,
}

impl Resend {
    /// The rule for `method path`, `deduplicated` when it carries an `Idempotency-Key`.
    pub fn for_call(method: &Method, deduplicated: bool) -> Self {
        if *method == Method::POST && !deduplicated {
            Self::IfNotConnected
        } else {
            Self::Always
        }
    }
}

/// Whether a call that failed with `e` may be sent again under `resend`. An HTTP answer
/// of any status never is.
fn retryable(e: &reqwest::Error, resend: Resend) -> bool {
    e.is_connect() || (resend == Resend::Always && (e.is_timeout() || e.is_request()))
}

/// `scheme://host[:port]` of `base`, refusing anything but `http(s)://`.
fn origin(base: &str) -> Result<String> {
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| Error::Config("the base URL must start with http:// or https://".into()))?;
    if !matches!(scheme, "http" | "https") {
        return Err(Error::Config(
            "the base URL must start with http:// or https://".into(),
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Never keep user info (`user:password@`) in what errors print.
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() {
        return Err(Error::Config("the base URL has no host".into()));
    }
    Ok(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_posts_the_server_deduplicates_carry_an_idempotency_key() {
        for path in [
            "/v1/keys",
            "/v1/keyspaces",
            "/v1/keyspaces/ks_1/roles",
            "/v1/keys/key_1/rotate",
            "/v1/owners/own_1/credits",
        ] {
            let key = idempotency_key(&Method::POST, path).unwrap().unwrap();
            assert_eq!(key.len(), 32, "{path}");
            assert_ne!(Some(key), idempotency_key(&Method::POST, path).unwrap());
        }
        for (method, path) in [
            (Method::POST, "/v1/keys/verify"),
            (Method::POST, "/v1/keys/verify/batch"),
            (Method::POST, "/v1/ratelimits/limit"),
            (Method::POST, "/v1/keys/import"),
            (Method::PATCH, "/v1/keys/key_1"),
            (Method::GET, "/v1/keys"),
        ] {
            assert_eq!(idempotency_key(&method, path).unwrap(), None, "{path}");
        }
    }

    #[test]
    fn origins_drop_user_info_and_paths() {
        assert_eq!(
            origin("https://u:p@keys.example:8443/base/").unwrap(),
            "https://keys.example:8443"
        );
        assert_eq!(
            origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(origin("ftp://x").is_err());
        assert!(origin("keys.example").is_err());
        assert!(origin("http:///x").is_err());
    }

    #[test]
    fn queries_skip_absent_values() {
        let filter = crate::types::KeyFilter {
            keyspace_id: Some("ks_1".into()),
            page: crate::types::Page {
                limit: Some(10),
                cursor: None,
            },
            ..Default::default()
        };
        let pairs = filter.to_pairs().unwrap();
        assert_eq!(
            pairs,
            vec![
                ("keyspace_id".to_owned(), "ks_1".to_owned()),
                ("limit".to_owned(), "10".to_owned())
            ]
        );
    }
}
