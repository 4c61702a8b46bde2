//! The reverse proxy: `keyhaven serve --proxy-listen ADDR --proxy-upstream URL` (or
//! `[[proxy]]` listeners). Each request's key is checked in this process (the same
//! verification, cache, limits, quotas, usage and events as the verify API); an admitted
//! request goes upstream with the caller's `X-Keyhaven-*` identity headers and without
//! its key, and the answer comes back as it is.
//!
//! A real reverse proxy, on hyper: request and response bodies stream both ways (nothing
//! is buffered), upstream connections are pooled and kept alive, clients speak HTTP/1.1
//! or HTTP/2 (h2c), and upgrades (WebSocket) are spliced through once the upstream
//! answers 101. Headers as nginx handles them: hop-by-hop headers dropped both ways,
//! `Host` set to the upstream's (or kept, with `preserve_host`), the client's in
//! `X-Forwarded-Host`, its address appended to `X-Forwarded-For`. An upstream that
//! cannot be reached is answered 502, one too slow to answer 504.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderName};
use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keyhaven_service::gateway::listener::ProxyConfig;
use keyhaven_service::gateway::{Admission, Rules};
use keyhaven_service::{Actor, Service};
use tokio::net::TcpListener;

use crate::error::{Problem, problem_response};

/// Requests through the gateway, by `outcome`: `forwarded`, `refused`, `upstream_error`.
pub const REQUESTS: &str = "keyhaven_gateway_requests_total";

/// The request counters, registered once (a lookup by name and label per request is a
/// measurable cost at gateway rates).
struct Outcomes {
    forwarded: metrics::Counter,
    refused: metrics::Counter,
    upstream_error: metrics::Counter,
}

impl Outcomes {
    fn get() -> &'static Self {
        static OUTCOMES: std::sync::OnceLock<Outcomes> = std::sync::OnceLock::new();
        OUTCOMES.get_or_init(|| Outcomes {
            forwarded: metrics::counter!(REQUESTS, "outcome" => "forwarded"),
            refused: metrics::counter!(REQUESTS, "outcome" => "refused"),
            upstream_error: metrics::counter!(REQUESTS, "outcome" => "upstream_error"),
        })
    }
}

/// One proxy listener's settings and its upstream connection pool.
#[derive(Debug)]
pub struct Proxy {
    authorizer: super::Authorizer,
    rules: Rules,
    scheme: Scheme,
    authority: Authority,
    /// The upstream's base path, without a trailing `/` (empty for none).
    base_path: String,
    client: Client<HttpConnector, Body>,
    upstream_timeout: Duration,
    preserve_host: bool,
}

impl Proxy {
    pub fn new(authorizer: super::Authorizer, config: &ProxyConfig) -> anyhow::Result<Self> {
        let uri: Uri = config
            .upstream
            .parse()
            .with_context(|| format!("proxy upstream `{}`", config.upstream))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            anyhow::bail!(
                "proxy upstream `{}` must be http://host:port",
                config.upstream
            );
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Ok(Self {
            authorizer,
            rules: config.rules(),
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            client,
            upstream_timeout: Duration::from_millis(config.upstream_timeout_ms),
            preserve_host: config.preserve_host,
        })
    }

    /// The listener's router: every method and path goes to [`forward`].
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .fallback(forward)
            .with_state(self)
            .layer(tower_http::catch_panic::CatchPanicLayer::new())
    }
}

/// Binds every configured proxy listener of `keyhaven serve`, each deciding in this
/// process.
pub async fn bind_all(service: &Service) -> anyhow::Result<Vec<(TcpListener, Router)>> {
    bind(&service.config.proxy, |config| super::Authorizer::Local {
        service: service.clone(),
        actor: Actor::gateway(config.keyspace_id.as_deref()),
    })
    .await
}

/// Binds each of `configs`, deciding with the authorizer `decider` makes for it.
pub async fn bind(
    configs: &[ProxyConfig],
    decider: impl Fn(&ProxyConfig) -> super::Authorizer,
) -> anyhow::Result<Vec<(TcpListener, Router)>> {
    let mut out = Vec::new();
    for config in configs {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("proxy listening on {}", config.listen))?;
        let proxy = Arc::new(Proxy::new(decider(config), config)?);
        tracing::info!(addr = %config.listen, upstream = %config.upstream, "gateway listening");
        out.push((listener, proxy.router()));
    }
    Ok(out)
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let Some(access) = proxy.rules.access(parts.method.as_str(), parts.uri.path()) else {
        return super::bad_path();
    };
    let admitted = super::admit(
        &proxy.authorizer,
        &proxy.rules,
        access,
        &parts,
        peer.map(|p| p.ip()),
    )
    .await;
    let (admission, key_header) = match admitted {
        Ok(decided) => decided,
        Err(e) => return e.into_response(),
    };
    // Hop-by-hop headers go first: a client's `Connection` may not name (and so
    // remove) a header the gateway sets below.
    let upgrade = wants_upgrade(&parts.headers);
    remove_hop_by_hop(&mut parts.headers, upgrade);
    let headers = &mut parts.headers;
    super::strip_identity(headers);
    super::strip_keys(headers, &proxy.rules, key_header.as_deref());
    let limits = match &admission {
        Admission::Refused(refusal) => {
            Outcomes::get().refused.increment(1);
            return super::refusal_response(refusal);
        }
        Admission::Allowed(identity) => {
            super::set_identity(headers, identity);
            identity.limits.as_slice()
        }
        Admission::Public => &[],
    };
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let Some(uri) = proxy.upstream_uri(&parts.uri) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "The request path cannot be forwarded.",
        );
    };
    proxy.forwarded_headers(&mut parts.headers, &parts.uri, peer);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.extensions = Default::default();
    let upstream = Request::from_parts(parts, body);
    let answer = tokio::time::timeout(proxy.upstream_timeout, proxy.client.request(upstream)).await;
    let mut response = match answer {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            Outcomes::get().upstream_error.increment(1);
            tracing::warn!(upstream = %proxy.authority, error = %e, "upstream request failed");
            return problem(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "The API behind the gateway could not be reached.",
            );
        }
        Err(_) => {
            Outcomes::get().upstream_error.increment(1);
            return problem(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "The API behind the gateway did not answer in time.",
            );
        }
    };
    Outcomes::get().forwarded.increment(1);
    let switching = upgrade && response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(client_upgrade) = client_upgrade {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
    remove_hop_by_hop(response.headers_mut(), switching);
    super::set_ratelimit(response.headers_mut(), limits);
    response.map(Body::new)
}

impl Proxy {
    /// The upstream's address for a request to `uri`: its base path, then the request's
    /// path and query.
    fn upstream_uri(&self, uri: &Uri) -> Option<Uri> {
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let path_and_query = format!("{}{path_and_query}", self.base_path);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .ok()
    }

    /// `Host`, `X-Forwarded-For`, `-Host` and `-Proto`, as nginx sets them.
    fn forwarded_headers(&self, headers: &mut HeaderMap, uri: &Uri, peer: Option<SocketAddr>) {
        let host = headers.get(header::HOST).cloned().or_else(|| {
            uri.authority()
                .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
        });
        if let Some(peer) = peer {
            let chain = match super::joined(headers, "x-forwarded-for") {
                Some(before) => format!("{before}, {}", peer.ip()),
                None => peer.ip().to_string(),
            };
            if let Ok(chain) = HeaderValue::try_from(chain) {
                headers.insert(HeaderName::from_static("x-forwarded-for"), chain);
            }
        }
        let trusted = self.rules.trusted_proxy_hops > 0;
        if !(trusted && headers.contains_key("x-forwarded-proto")) {
            headers.insert(
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static("http"),
            );
        }
        if let Some(host) = host {
            if !(trusted && headers.contains_key("x-forwarded-host")) {
                headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
            }
            if self.preserve_host {
                headers.insert(header::HOST, host);
            } else {
                // The client sets the upstream's own from the URI.
                headers.remove(header::HOST);
            }
        }
    }
}

/// A request asking to switch to WebSocket: `Connection: upgrade` and `Upgrade:
/// websocket`. No other upgrade passes: an `h2c` upgrade would give the client a raw
/// HTTP/2 connection to the upstream on which no request is checked.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    websocket && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Drops the hop-by-hop headers (RFC 9110 §7.6.1) and those `Connection` names; an
/// upgrade keeps `Upgrade` and `Connection: upgrade`.
fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let listed: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in listed {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("http2-settings"),
    ] {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    problem_response(&Problem {
        kind: format!("urn:keyhaven:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail.to_owned(),
        code: code.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_an_upgrade_keeps_its_own() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-hop"),
        );
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-end-to-end", HeaderValue::from_static("kept"));
        let mut plain = headers.clone();
        remove_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert!(plain.contains_key("x-end-to-end"));

        let mut upgrade = headers.clone();
        upgrade.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        assert!(wants_upgrade(&upgrade));
        assert!(!wants_upgrade(&headers));
        let mut h2c = upgrade.clone();
        h2c.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!wants_upgrade(&h2c), "only WebSocket upgrades pass");
        remove_hop_by_hop(&mut upgrade, true);
        assert_eq!(upgrade.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(upgrade.get(header::CONNECTION).unwrap(), "upgrade");
    }
}
