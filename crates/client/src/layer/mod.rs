//! A `tower` layer that lets a request reach your service only with a valid key, and
//! an axum extractor for the caller (feature `axum`, on by default).
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use keyhaven_client::{Client, layer::{KeyhavenLayer, VerifiedKey}};
//!
//! # async fn app() -> Result<(), keyhaven_client::Error> {
//! let client = Client::new("http://127.0.0.1:8080", std::env::var("KEYHAVEN_ROOT_KEY").unwrap_or_default())?;
//! let app: Router = Router::new()
//!     .route("/orders", get(|key: VerifiedKey| async move { format!("hello {}", key.key_id()) }))
//!     .layer(KeyhavenLayer::new(client).scope("orders:read"));
//! # Ok(()) }
//! ```
//!
//! The key is read from the configured header (if any), then `Authorization: Bearer`,
//! then `X-API-Key`; never from the URL. A request that may not pass is answered as
//! Keyhaven's gateway answers it (see `docs/gateway.md`, "Refusals"): 401
//! `missing_key` or `not_found`/`malformed`/`revoked`/`expired`/`disabled`, 403
//! `insufficient_scopes`, 429 `rate_limited` (with `Retry-After`) or `usage_exceeded`,
//! all `application/problem+json`. When Keyhaven cannot decide (unreachable, or
//! answering 5xx) the answer is 503 `unavailable`, unless the layer is
//! [`fail_open`](KeyhavenLayer::fail_open): then the request passes without a
//! [`VerifiedKey`] (with [`KeyhavenUnavailable`] in its extensions). A Keyhaven that
//! refuses the client's own root key is a misconfiguration and is never failed open.
//! An admitted request carries the [`VerifiedKey`] in its extensions, and its answer
//! gets the `RateLimit` headers when limits applied.

mod extract;
mod refusal;

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName, Request};
use axum::response::{IntoResponse, Response};
pub use extract::{KeyhavenUnavailable, VerifiedKey};
use zeroize::Zeroizing;

use crate::client::Client;
use crate::error::Error;
use crate::types::{NamedCost, VerifyOptions};

/// `X-API-Key`, the header read after `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The layer: put it on an axum `Router` (or any tower stack) with `.layer(...)`.
#[derive(Debug, Clone)]
pub struct KeyhavenLayer {
    client: Client,
    options: Arc<Options>,
}

#[derive(Debug, Clone, Default)]
struct Options {
    header: Option<HeaderName>,
    verify: VerifyOptions,
    fail_open: bool,
}

impl KeyhavenLayer {
    /// Verifies each request's key with `client` (its cache included).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            options: Arc::new(Options::default()),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Options)) -> Self {
        change(Arc::make_mut(&mut self.options));
        self
    }

    /// Also read the key from this header, before `Authorization` and `X-API-Key`.
    pub fn header(self, name: HeaderName) -> Self {
        self.with(|o| o.header = Some(name))
    }

    /// A scope the key must hold (403 otherwise).
    pub fn scope(self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        self.with(|o| o.verify.scopes.push(scope))
    }

    pub fn scopes<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.with(|o| o.verify.scopes.extend(scopes))
    }

    /// Units each request takes from the key's limits and quota (default 1).
    pub fn cost(self, cost: u64) -> Self {
        self.with(|o| o.verify.cost = Some(cost))
    }

    /// Check only these named limits, each at its own cost.
    pub fn ratelimits(self, named: Vec<NamedCost>) -> Self {
        self.with(|o| o.verify.ratelimits = Some(named))
    }

    /// Let requests through (without a caller) when Keyhaven cannot be reached, instead
    /// of answering 503. Off by default: only for routes where availability matters more
    /// than the key.
    pub fn fail_open(self, fail_open: bool) -> Self {
        self.with(|o| o.fail_open = fail_open)
    }
}

impl<S> tower::Layer<S> for KeyhavenLayer {
    type Service = Keyhaven<S>;

    fn layer(&self, inner: S) -> Keyhaven<S> {
        Keyhaven {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`KeyhavenLayer`] wraps around yours.
#[derive(Clone)]
pub struct Keyhaven<S> {
    inner: S,
    layer: KeyhavenLayer,
}

impl<S> fmt::Debug for Keyhaven<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyhaven")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<Request<B>> for Keyhaven<S>
where
    S: tower::Service<Request<B>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let key = presented_key(request.headers(), layer.options.header.as_ref());
            let Some(key) = key else {
                return Ok(refusal::refusal(None, &[]));
            };
            let mut options = layer.options.verify.clone();
            options.client_ip = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            match layer.client.verify_shared(&key, &options).await {
                Ok(answer) if answer.valid => {
                    let limits = answer.ratelimits.clone();
                    request.extensions_mut().insert(VerifiedKey(answer));
                    let mut response = inner.call(request).await?.into_response();
                    refusal::set_ratelimit(response.headers_mut(), &limits);
                    Ok(response)
                }
                Ok(answer) => Ok(refusal::refusal(Some(answer.code), &answer.ratelimits)),
                Err(e) if layer.options.fail_open && undecided(&e) => {
                    tracing::warn!(error = %e, "Keyhaven unreachable; failing open");
                    request.extensions_mut().insert(KeyhavenUnavailable);
                    Ok(inner.call(request).await?.into_response())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Keyhaven could not verify a key; failing closed");
                    Ok(refusal::unavailable())
                }
            }
        })
    }
}

/// Keyhaven could not be asked, or failed itself: what fail-open covers.
fn undecided(e: &Error) -> bool {
    e.is_unreachable() || e.status().is_some_and(|s| s >= 500)
}

/// The key a request presents: the configured header, `Authorization: Bearer`, then
/// `X-API-Key`; an empty value counts as none.
fn presented_key(headers: &HeaderMap, own: Option<&HeaderName>) -> Option<Zeroizing<String>> {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let found = match own.and_then(text) {
        Some(value) => Some(value.trim()),
        None => headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .or_else(|| {
                headers
                    .get(API_KEY_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
            }),
    };
    found
        .filter(|k| !k.is_empty())
        .map(|k| Zeroizing::new(k.to_owned()))
}

/// The token of `Bearer <token>` (scheme in any case).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn key(h: &HeaderMap, own: Option<&str>) -> Option<String> {
        let own = own.map(|n| HeaderName::try_from(n).unwrap());
        presented_key(h, own.as_ref()).map(|k| k.to_string())
    }

    #[test]
    fn keys_are_read_from_the_documented_headers_in_order() {
        let h = headers(&[
            ("authorization", "bearer k1"),
            ("x-api-key", "k2"),
            ("x-acme-key", "k3"),
        ]);
        assert_eq!(key(&h, Some("x-acme-key")).as_deref(), Some("k3"));
        assert_eq!(key(&h, None).as_deref(), Some("k1"));
        let h = headers(&[("authorization", "Basic abc"), ("x-api-key", " k2 ")]);
        assert_eq!(key(&h, None).as_deref(), Some("k2"));
        assert_eq!(key(&headers(&[("x-api-key", " ")]), None), None);
        assert_eq!(key(&headers(&[("authorization", "Bearer ")]), None), None);
        assert_eq!(key(&HeaderMap::new(), Some("x-acme-key")), None);
    }
}
