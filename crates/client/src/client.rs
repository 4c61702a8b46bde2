//! [`Client`]: verification (remote with a cache, or embedded) and the admin API.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cache::{CacheOptions, CacheStats, VerifyCache, digest};
use crate::error::{Error, Result};
use crate::transport::{ErasedBody, ErasedQuery, Resend, Transport, TransportConfig};
use crate::types::{
    VerifyBatchBody, VerifyBatchResponse, VerifyBody, VerifyOptions, VerifyResponse,
};

/// A Keyhaven client: cheap to clone (one reference count), safe to share between tasks.
///
/// Remote (built by [`Client::new`] or [`Client::builder`]): calls a Keyhaven server's
/// HTTP API with a root key, and keeps a local cache of verify answers coherent with the
/// server's change stream (see [`CacheOptions`]; on by default). Embedded (feature
/// `embedded`, [`Client::embedded`]): Keyhaven's application layer in this process over
/// a local store, with the same [`Client::verify`].
///
/// `Debug` never shows the root key.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) enum Inner {
    Remote(Remote),
    #[cfg(feature = "embedded")]
    Embedded(crate::embedded::Embedded),
}

pub(crate) struct Remote {
    pub(crate) transport: Arc<Transport>,
    cache: Option<Arc<VerifyCache>>,
    /// The signing keys signed tokens are checked against offline.
    token_keys: crate::tokens::TokenKeys,
    /// The stream follower, started by the first verification (it needs a runtime).
    follower: OnceLock<Option<tokio::task::AbortHandle>>,
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(Some(task)) = self.follower.get() {
            task.abort();
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Inner::Remote(remote) => f
                .debug_struct("Client")
                .field("server", &remote.transport.origin())
                .field("root_key", &"<redacted>")
                .field("cache", &remote.cache.as_ref().map(|c| c.stats()))
                .finish(),
            #[cfg(feature = "embedded")]
            Inner::Embedded(embedded) => f
                .debug_struct("Client")
                .field("embedded", embedded)
                .finish(),
        }
    }
}

/// Builds a remote [`Client`].
#[must_use]
pub struct ClientBuilder {
    base: String,
    root_key: SecretString,
    timeout: Duration,
    connect_timeout: Duration,
    attempts: u32,
    backoff: Duration,
    cache: CacheOptions,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Whole-request timeout (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connection timeout (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Attempts of a call that gets no HTTP answer (refused, reset, timed out); default
    /// 3, at least 1. A call that got an answer is never retried.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// The pause after the first failed attempt, doubled after each (default 50 ms).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The verify cache's options ([`CacheOptions::disabled`] turns it off).
    pub fn cache(mut self, cache: CacheOptions) -> Self {
        self.cache = cache;
        self
    }

    pub fn build(self) -> Result<Client> {
        let transport = Transport::build(TransportConfig {
            base: self.base,
            root_key: self.root_key,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            attempts: self.attempts,
            backoff: self.backoff,
        })?;
        let cache = self
            .cache
            .enabled
            .then(|| Arc::new(VerifyCache::new(&self.cache)));
        Ok(Client {
            inner: Arc::new(Inner::Remote(Remote {
                transport: Arc::new(transport),
                cache,
                token_keys: crate::tokens::TokenKeys::default(),
                follower: OnceLock::new(),
            })),
        })
    }
}

impl Client {
    /// A remote client for the server at `base_url` (`http(s)://host:port`), calling it
    /// with `root_key` (verification needs the scope `keys:verify`; the admin calls
    /// their own scopes). Default options; see [`Client::builder`].
    pub fn new(base_url: impl Into<String>, root_key: impl Into<SecretString>) -> Result<Self> {
        Self::builder(base_url, root_key).build()
    }

    pub fn builder(
        base_url: impl Into<String>,
        root_key: impl Into<SecretString>,
    ) -> ClientBuilder {
        ClientBuilder {
            base: base_url.into(),
            root_key: root_key.into(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            attempts: 3,
            backoff: Duration::from_millis(50),
            cache: CacheOptions::default(),
        }
    }

    /// Verifies `key` (as presented by your caller) with no other requirement.
    pub async fn verify(&self, key: &str) -> Result<VerifyResponse> {
        self.verify_with(key, &VerifyOptions::default()).await
    }

    /// Verifies `key` for `options`: scopes it must hold, cost, named limits, and the
    /// client's address. A cached answer when the cache may give one, else the server's.
    pub async fn verify_with(&self, key: &str, options: &VerifyOptions) -> Result<VerifyResponse> {
        self.verify_shared(key, options)
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// Verifies several keys in one call (`POST /v1/keys/verify/batch`, 1-100 items),
    /// each with its own options: the answers in the order of `items`, each what
    /// [`Client::verify_with`] answers for it from the server. The cache is neither read
    /// nor filled. An empty batch asks nothing; an embedded client verifies the items one
    /// after another.
    pub async fn verify_batch(
        &self,
        items: &[(&str, &VerifyOptions)],
    ) -> Result<Vec<VerifyResponse>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        match &*self.inner {
            Inner::Remote(remote) => remote.ask_batch(items).await,
            #[cfg(feature = "embedded")]
            Inner::Embedded(embedded) => {
                let mut answers = Vec::with_capacity(items.len());
                for (key, options) in items {
                    answers.push(embedded.verify(key, options).await?);
                }
                Ok(answers)
            }
        }
    }

    /// [`Client::verify_with`] without copying a cached answer (the layer's path).
    pub(crate) async fn verify_shared(
        &self,
        key: &str,
        options: &VerifyOptions,
    ) -> Result<Arc<VerifyResponse>> {
        match &*self.inner {
            Inner::Remote(remote) => remote.verify(key, options).await,
            #[cfg(feature = "embedded")]
            Inner::Embedded(embedded) => embedded.verify(key, options).await.map(Arc::new),
        }
    }

    /// What the cache has done (all zero without one, and for an embedded client).
    pub fn cache_stats(&self) -> CacheStats {
        self.as_remote()
            .and_then(|r| r.cache.as_ref())
            .map_or_else(CacheStats::default, |cache| cache.stats())
    }

    /// Starts following the change stream (the first verification does it anyway) and
    /// waits until the stream vouches for the cache, at most `timeout`. True once cached
    /// answers may be served; false without a cache, or if the stream did not vouch in
    /// time.
    pub async fn wait_until_coherent(&self, timeout: Duration) -> bool {
        let Some(remote) = self.as_remote() else {
            return false;
        };
        let Some(cache) = &remote.cache else {
            return false;
        };
        remote.start_following();
        let start = Instant::now();
        while !cache.coherent() {
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn as_remote(&self) -> Option<&Remote> {
        match &*self.inner {
            Inner::Remote(remote) => Some(remote),
            #[cfg(feature = "embedded")]
            Inner::Embedded(_) => None,
        }
    }

    pub(crate) fn remote(&self, what: &'static str) -> Result<&Remote> {
        self.as_remote().ok_or(Error::Unsupported(what))
    }

    /// Any API call: `method path` (with a leading `/`, e.g. `/v1/webhooks`) with an
    /// optional JSON body; the answer's JSON (`Value::Null` for an empty answer).
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let transport = &self.remote("request")?.transport;
        let response = transport
            .send(
                || {
                    let request = transport.request(method.clone(), path);
                    match body {
                        Some(body) => request.json(body),
                        None => request,
                    }
                },
                &[],
                Resend::for_call(&method, false),
            )
            .await?;
        let response = transport.check(response, &[]).await?;
        let bytes = response.bytes().await.map_err(|e| Error::Unreachable {
            origin: transport.origin().to_owned(),
            detail: crate::error::transport_detail(e),
        })?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// A typed call for the admin handles.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        query: Option<&dyn ErasedQuery>,
        body: Option<&dyn ErasedBody>,
    ) -> Result<T> {
        let transport = &self.remote(what)?.transport;
        transport.call(method, path, query, body).await
    }

    pub(crate) async fn call_empty(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        query: Option<&dyn ErasedQuery>,
    ) -> Result<()> {
        let transport = &self.remote(what)?.transport;
        transport.call_empty(method, path, query).await
    }

    /// A typed call authenticated by an API key instead of the root key.
    pub(crate) async fn call_as<T: DeserializeOwned>(
        &self,
        what: &'static str,
        key: &str,
        method: Method,
        path: &str,
        body: Option<&dyn ErasedBody>,
    ) -> Result<T> {
        let transport = &self.remote(what)?.transport;
        transport.call_as(key, method, path, body).await
    }

    /// A typed call whose body holds keys (`secrets`): wiped once sent, never in an error.
    pub(crate) async fn call_secret<T: DeserializeOwned>(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        body: &dyn ErasedBody,
        secrets: &[&str],
    ) -> Result<T> {
        let transport = &self.remote(what)?.transport;
        transport.call_secret(method, path, body, secrets).await
    }
}

#[cfg(feature = "embedded")]
impl Client {
    /// An embedded client over the data directory `data_dir` (created if missing, with
    /// its SQLite database and pepper), with Keyhaven's default configuration. See the
    /// README's "Embedded mode": one process serves one SQLite data directory.
    pub async fn embedded(data_dir: impl Into<std::path::PathBuf>) -> Result<Self> {
        Self::embedded_with(keyhaven_service::Config {
            data_dir: data_dir.into(),
            ..keyhaven_service::Config::default()
        })
        .await
    }

    /// An embedded client with a full configuration (`keyhaven_service::Config`: data
    /// directory, `database_url`, cache and limit settings, …).
    pub async fn embedded_with(config: keyhaven_service::Config) -> Result<Self> {
        let embedded = crate::embedded::Embedded::open(config).await?;
        Ok(Self {
            inner: Arc::new(Inner::Embedded(embedded)),
        })
    }

    /// The embedded application layer, for the operations beyond `verify` (create
    /// keyspaces and keys, revoke, …); `None` for a remote client.
    pub fn service(&self) -> Option<&keyhaven_service::Service> {
        match &*self.inner {
            Inner::Embedded(embedded) => Some(embedded.service()),
            Inner::Remote(_) => None,
        }
    }

    /// Stops an embedded client's background work and writes the usage counts and
    /// quota uses still in memory (dropping the client does it too, less surely).
    /// Nothing for a remote client.
    pub async fn shutdown(&self) {
        if let Inner::Embedded(embedded) = &*self.inner {
            embedded.shutdown().await;
        }
    }
}

impl Remote {
    /// Spawns the follower once, on the current runtime (none: the cache stays unused).
    fn start_following(&self) {
        let Some(cache) = &self.cache else { return };
        self.follower.get_or_init(|| {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            let task = runtime.spawn(crate::follow::follow(self.transport.clone(), cache.clone()));
            Some(task.abort_handle())
        });
    }

    async fn verify(&self, key: &str, options: &VerifyOptions) -> Result<Arc<VerifyResponse>> {
        if crate::tokens::is_token(key) {
            return self.verify_token(key, options).await;
        }
        let Some(cache) = &self.cache else {
            return self.ask(key, options).await.map(Arc::new);
        };
        self.start_following();
        let digest = digest(key, options.client_ip);
        if let Some(hit) = cache.lookup(&digest, options) {
            return Ok(hit);
        }
        let ticket = cache.ticket();
        let answer = Arc::new(self.ask(key, options).await?);
        cache.offer(digest, ticket, options, &answer);
        Ok(answer)
    }

    /// A signed token: checked offline (`tokens.rs`); the server is asked only whether
    /// its key still works, once per key until an event names the key.
    async fn verify_token(
        &self,
        token: &str,
        options: &VerifyOptions,
    ) -> Result<Arc<VerifyResponse>> {
        self.start_following();
        let cache = self.cache.as_ref();
        let vouched = |claims: &keyhaven_core::token::TokenClaims| {
            cache.and_then(|c| c.vouched_key(&claims.sub, options))
        };
        match (self.token_keys)
            .check(&self.transport, token, options, vouched)
            .await
        {
            crate::tokens::Offline::Answer(answer) => Ok(Arc::new(*answer)),
            crate::tokens::Offline::AskServer => {
                let ticket = cache.map(|c| c.ticket());
                let answer = Arc::new(self.ask(token, options).await?);
                if let (Some(cache), Some(ticket)) = (cache, ticket) {
                    cache.offer_key(ticket, options, &answer);
                }
                Ok(answer)
            }
        }
    }

    /// `POST /v1/keys/verify`.
    async fn ask(&self, key: &str, options: &VerifyOptions) -> Result<VerifyResponse> {
        let body = VerifyBody::new(key, options);
        // Holds the key: wiped when dropped (the copies handed to the HTTP stack are
        // its to free).
        let body =
            zeroize::Zeroizing::new(serde_json::to_vec(&body).map_err(|e| {
                Error::Config(format!("the verify request cannot be written: {e}"))
            })?);
        let transport = &self.transport;
        let response = transport
            .send(
                || {
                    transport
                        .request(Method::POST, "/v1/keys/verify")
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_vec())
                },
                &[key],
                Resend::Always,
            )
            .await?;
        transport.read(response, &[key]).await
    }

    /// `POST /v1/keys/verify/batch`, its body wiped once sent as `ask`'s is.
    async fn ask_batch(&self, items: &[(&str, &VerifyOptions)]) -> Result<Vec<VerifyResponse>> {
        let body = VerifyBatchBody {
            items: items
                .iter()
                .map(|(key, options)| VerifyBody::new(key, options))
                .collect(),
        };
        let keys: Vec<&str> = items.iter().map(|(key, _)| *key).collect();
        let answer: VerifyBatchResponse = (self.transport)
            .call_secret(Method::POST, "/v1/keys/verify/batch", &body, &keys)
            .await?;
        if answer.results.len() != items.len() {
            return Err(Error::Decode(format!(
                "{} answers to a batch of {}",
                answer.results.len(),
                items.len()
            )));
        }
        Ok(answer.results)
    }
}
