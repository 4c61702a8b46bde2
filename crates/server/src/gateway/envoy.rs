//! Envoy's external authorization: the gRPC service `envoy.service.auth.v3.Authorization`
//! on `envoy_authz_listen`, so an Envoy (or Istio) in front of an API needs no other
//! proxy. Each `Check` is one gateway decision under the configuration's `[gateway]`
//! rules, the same ones forward auth (`GET /v1/auth`) uses:
//!
//! - the request is read from `attributes.request.http` (method, path without its query,
//!   headers; Envoy's lower-case `headers` map, or `header_map` when Envoy sends raw
//!   headers) and the client's address from `attributes.source` (or trusted
//!   `X-Forwarded-For` hops);
//! - allowed: `OK` with the `X-Keyhaven-*` identity headers set on the upstream request
//!   (overwriting a client's), the key's header and any other client `X-Keyhaven-*`
//!   header removed, and the `RateLimit` headers added to the response; a public route is
//!   `OK` with only the removals;
//! - refused: `UNAUTHENTICATED`, `PERMISSION_DENIED` or `RESOURCE_EXHAUSTED` with a
//!   denied response that is byte for byte the HTTP front doors' refusal (status,
//!   `WWW-Authenticate`, `Retry-After`, `RateLimit`, problem+json body);
//! - the decision could not be made (the store is down): the call fails `UNAVAILABLE`,
//!   and Envoy applies its `failure_mode_allow`, which must stay `false` (fail closed).
//!
//! The protobuf types and the tonic service trait come from `envoy-types`, which ships
//! them generated (no `protoc`, nothing fetched at build time). It carries all of Envoy's
//! API, so it is a large crate (about 90 s of a clean debug build on two cores), paid
//! once per clean build; hand-written messages for the dozen fields used here would be
//! lighter, but then nothing would check their field numbers against Envoy's.
//!
//! The service is served by the same accept loop as the gateway's proxies
//! (`connections.rs`, with h2c), so it has the same connection cap and timeouts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use axum::Router;
use axum::http::HeaderMap;
use axum::response::Response;
use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use keyhaven_service::gateway::{self, Admission, Refusal};
use keyhaven_service::{Actor, Service};
use tokio::net::TcpListener;

/// The largest refusal body read back from [`super::refusal_response`] (a problem
/// document is a few hundred bytes).
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// Binds `envoy_authz_listen`, if set: the listener and the gRPC service's router, for
/// the gateway's accept loop.
pub async fn bind(service: &Service) -> anyhow::Result<Option<(TcpListener, Router)>> {
    let Some(addr) = service.config.envoy_authz_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("Envoy external authorization listening on {addr}"))?;
    tracing::info!(addr = %addr, "Envoy external authorization listening");
    Ok(Some((listener, router(service.clone()))))
}

/// The gRPC service as a router (unknown services and methods answer `UNIMPLEMENTED`).
pub fn router(service: Service) -> Router {
    tonic::service::Routes::new(AuthorizationServer::new(ExtAuthz { service }))
        .prepare()
        .into_axum_router()
}

/// The `Authorization` service: the application and nothing else.
#[derive(Clone, Debug)]
struct ExtAuthz {
    service: Service,
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let asked = Asked::of(request.into_inner());
        let rules = &self.service.config.gateway;
        let Some(access) = rules.access(&asked.method, asked.path()) else {
            let bad = super::bad_path();
            let answer = denied_with(tonic::Code::InvalidArgument, "bad_path".into(), bad).await;
            return Ok(tonic::Response::new(answer));
        };
        let presented = rules.presented_key(|name| asked.headers.get(name).map(String::as_str));
        let client_ip = rules.client_ip(
            asked.source,
            asked.headers.get("x-forwarded-for").map(String::as_str),
        );
        let actor = Actor::gateway(rules.keyspace_id.as_deref());
        let key = presented.as_ref().map(|(key, _)| *key);
        let admission = gateway::authorize(&self.service, &actor, access, key, client_ip)
            .await
            .map_err(|e| {
                // The service's errors never hold a key.
                tracing::error!(error = %e, "Envoy external authorization could not decide");
                tonic::Status::unavailable("the authorization could not be decided")
            })?;
        let key_header = presented.map(|(_, header)| header);
        let answer = answer(admission, &asked.headers, key_header.as_deref()).await;
        Ok(tonic::Response::new(answer))
    }
}

/// The `CheckResponse` for a decision on a request with headers `client`, whose key (if
/// any) came in `key_header`.
async fn answer(
    admission: Admission,
    client: &HashMap<String, String>,
    key_header: Option<&str>,
) -> CheckResponse {
    match admission {
        Admission::Public => allowed(
            HeaderMap::new(),
            HeaderMap::new(),
            removals(client, key_header, &HeaderMap::new()),
        ),
        Admission::Allowed(identity) => {
            let mut upstream = HeaderMap::new();
            super::set_identity(&mut upstream, &identity);
            let mut downstream = HeaderMap::new();
            super::set_ratelimit(&mut downstream, &identity.limits);
            let remove = removals(client, key_header, &upstream);
            allowed(upstream, downstream, remove)
        }
        Admission::Refused(refusal) => denied(&refusal).await,
    }
}

/// What a `CheckRequest` asks about.
/// No `Debug`: its headers hold the presented key.
#[derive(Default)]
struct Asked {
    method: String,
    /// Path and query, as Envoy sends `:path`.
    path: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    source: Option<IpAddr>,
}

impl Asked {
    fn of(request: CheckRequest) -> Self {
        let Some(attributes) = request.attributes else {
            return Self::default();
        };
        let source = attributes
            .source
            .and_then(|peer| peer.address)
            .and_then(|address| address.address)
            .and_then(|address| match address {
                Address::SocketAddress(socket) => parse_ip(&socket.address),
                _ => None,
            });
        let Some(http) = attributes.request.and_then(|r| r.http) else {
            return Self {
                source,
                ..Self::default()
            };
        };
        let mut headers = http.headers;
        // With `encode_raw_headers`, Envoy fills `header_map` instead (values as bytes).
        if headers.is_empty()
            && let Some(map) = http.header_map
        {
            for header in map.headers {
                let value = if header.raw_value.is_empty() {
                    header.value
                } else {
                    String::from_utf8_lossy(&header.raw_value).into_owned()
                };
                headers
                    .entry(header.key.to_ascii_lowercase())
                    .and_modify(|joined: &mut String| {
                        joined.push(',');
                        joined.push_str(&value);
                    })
                    .or_insert(value);
            }
        }
        Self {
            method: http.method,
            path: http.path,
            headers,
            source,
        }
    }

    /// The path without its query (route rules match paths).
    fn path(&self) -> &str {
        let path = self.path.split('?').next().unwrap_or("");
        if path.is_empty() { "/" } else { path }
    }
}

/// An address as Envoy writes it: an IP, or a socket address.
fn parse_ip(address: &str) -> Option<IpAddr> {
    address
        .parse()
        .ok()
        .or_else(|| address.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The request headers to remove: the key's header, and every client `X-Keyhaven-*`
/// header the answer does not overwrite (removing one it sets could drop the new value,
/// depending on the order Envoy applies the two lists in).
fn removals(
    client: &HashMap<String, String>,
    key_header: Option<&str>,
    set: &HeaderMap,
) -> Vec<String> {
    let mut remove: Vec<String> = key_header.map(str::to_owned).into_iter().collect();
    let mut claimed: Vec<String> = client
        .keys()
        .map(|name| name.to_ascii_lowercase())
        .filter(|name| gateway::is_identity_header(name) && !set.contains_key(name.as_str()))
        .collect();
    claimed.sort();
    remove.extend(claimed);
    remove
}

/// `OK`: `upstream` set on the request, `downstream` added to the response, `remove`
/// taken off the request.
fn allowed(upstream: HeaderMap, downstream: HeaderMap, remove: Vec<String>) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: tonic::Code::Ok as i32,
            ..rpc::Status::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: options(&upstream),
            headers_to_remove: remove,
            response_headers_to_add: options(&downstream),
            ..OkHttpResponse::default()
        })),
        ..CheckResponse::default()
    }
}

/// The refusal, as the HTTP front doors answer it.
async fn denied(refusal: &Refusal) -> CheckResponse {
    let code = match refusal.status() {
        403 => tonic::Code::PermissionDenied,
        429 => tonic::Code::ResourceExhausted,
        _ => tonic::Code::Unauthenticated,
    };
    denied_with(
        code,
        refusal.problem_code(),
        super::refusal_response(refusal),
    )
    .await
}

/// A denied answer carrying `response` (status, headers, problem+json body) for Envoy
/// to send, with gRPC status `code`.
async fn denied_with(code: tonic::Code, message: String, response: Response) -> CheckResponse {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_REFUSAL_BODY)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    CheckResponse {
        status: Some(rpc::Status {
            code: code as i32,
            message,
            ..rpc::Status::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(parts.status.as_u16()),
            }),
            headers: options(&parts.headers),
            body,
        })),
        ..CheckResponse::default()
    }
}

/// Headers as Envoy's header options, each replacing any value already there.
fn options(headers: &HeaderMap) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?;
            Some(HeaderValueOption {
                header: Some(HeaderValue {
                    key: name.as_str().to_owned(),
                    value: value.to_owned(),
                    ..HeaderValue::default()
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..HeaderValueOption::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::{
        Address as Peer, HeaderMap as EnvoyHeaders, SocketAddress, address,
    };
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
    use keyhaven_core::VerifyCode;
    use keyhaven_service::gateway::{Identity, LimitState};

    use super::*;

    fn client(headers: &[(&str, &str)]) -> HashMap<String, String> {
        headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn header<'a>(options: &'a [HeaderValueOption], name: &str) -> Option<&'a str> {
        options
            .iter()
            .filter_map(|o| o.header.as_ref())
            .find(|h| h.key == name)
            .map(|h| h.value.as_str())
    }

    fn limit(remaining: u64, exceeded: bool) -> LimitState {
        LimitState {
            name: "requests".into(),
            limit: 2,
            window_ms: 60_000,
            remaining,
            reset_ms: 30_000,
            retry_after_ms: exceeded.then_some(29_500),
            exceeded,
        }
    }

    #[tokio::test]
    async fn an_allowed_request_gets_the_identity_and_loses_the_key_and_forged_headers() {
        let identity = Identity {
            key_id: "7Gx9QbWkP2mZ".into(),
            keyspace_id: "ks_1".into(),
            owner_id: None,
            owner_external_id: None,
            scopes: vec!["read".into(), "write".into()],
            limits: vec![limit(1, false)],
        };
        let headers = client(&[
            ("authorization", "Bearer acme_x"),
            ("x-keyhaven-key-id", "forged"),
            ("x-keyhaven-owner-id", "forged"),
            ("accept", "*/*"),
        ]);
        let response = answer(
            Admission::Allowed(identity),
            &headers,
            Some("authorization"),
        )
        .await;
        assert_eq!(response.status.unwrap().code, 0);
        let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
            panic!("not an OK response");
        };
        assert_eq!(
            header(&ok.headers, "x-keyhaven-key-id"),
            Some("7Gx9QbWkP2mZ")
        );
        assert_eq!(header(&ok.headers, "x-keyhaven-scopes"), Some("read,write"));
        // `append_action` only: Envoy rejects an option that also sets the deprecated
        // `append`.
        #[allow(deprecated)]
        let overwrite_only = ok.headers.iter().all(|o| {
            o.append_action == HeaderAppendAction::OverwriteIfExistsOrAdd as i32
                && o.append.is_none()
        });
        assert!(overwrite_only);
        // The forged owner id goes (this key has no owner); the key id is overwritten.
        assert_eq!(
            ok.headers_to_remove,
            ["authorization", "x-keyhaven-owner-id"]
        );
        assert_eq!(
            header(&ok.response_headers_to_add, "ratelimit"),
            Some("\"requests\";r=1;t=30")
        );
        assert!(header(&ok.response_headers_to_add, "ratelimit-policy").is_some());
    }

    #[tokio::test]
    async fn a_public_route_passes_without_identity() {
        let headers = client(&[("x-keyhaven-scopes", "admin")]);
        let response = answer(Admission::Public, &headers, None).await;
        assert_eq!(response.status.unwrap().code, 0);
        let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
            panic!("not an OK response");
        };
        assert!(ok.headers.is_empty());
        assert_eq!(ok.headers_to_remove, ["x-keyhaven-scopes"]);
    }

    #[tokio::test]
    async fn refusals_map_to_grpc_codes_and_the_http_refusal() {
        let cases = [
            (None, 16, 401, "missing_key"),
            (Some(VerifyCode::Revoked), 16, 401, "revoked"),
            (
                Some(VerifyCode::InsufficientScopes),
                7,
                403,
                "insufficient_scopes",
            ),
            (Some(VerifyCode::RateLimited), 8, 429, "rate_limited"),
        ];
        for (code, grpc, http, problem) in cases {
            let exceeded = code == Some(VerifyCode::RateLimited);
            let refusal = Refusal {
                code,
                limits: if exceeded {
                    vec![limit(0, true)]
                } else {
                    Vec::new()
                },
            };
            let response = answer(Admission::Refused(refusal), &HashMap::new(), None).await;
            assert_eq!(response.status.as_ref().unwrap().code, grpc, "{problem}");
            let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
                panic!("not a denied response");
            };
            assert_eq!(denied.status.unwrap().code, http);
            assert_eq!(
                header(&denied.headers, "content-type"),
                Some("application/problem+json")
            );
            let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
            assert_eq!(body["code"], problem);
            assert_eq!(body["status"], http);
            assert_eq!(
                header(&denied.headers, "www-authenticate").is_some(),
                http == 401
            );
            assert_eq!(
                header(&denied.headers, "retry-after"),
                exceeded.then_some("30")
            );
        }
    }

    #[test]
    fn a_check_request_is_read_from_headers_or_raw_header_map() {
        let request = |http: attribute_context::HttpRequest, source: &str| CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(attribute_context::Peer {
                    address: Some(Peer {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: source.into(),
                            ..SocketAddress::default()
                        })),
                    }),
                    ..attribute_context::Peer::default()
                }),
                request: Some(attribute_context::Request {
                    http: Some(http),
                    ..attribute_context::Request::default()
                }),
                ..AttributeContext::default()
            }),
        };
        let asked = Asked::of(request(
            attribute_context::HttpRequest {
                method: "GET".into(),
                path: "/v1/things?key=not-here".into(),
                headers: client(&[("x-api-key", "k")]),
                ..attribute_context::HttpRequest::default()
            },
            "203.0.113.9",
        ));
        assert_eq!(asked.path(), "/v1/things");
        assert_eq!(asked.source, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(
            asked.headers.get("x-api-key").map(String::as_str),
            Some("k")
        );

        let raw = |key: &str, value: &str| HeaderValue {
            key: key.into(),
            raw_value: value.as_bytes().to_vec(),
            ..HeaderValue::default()
        };
        let asked = Asked::of(request(
            attribute_context::HttpRequest {
                method: "POST".into(),
                path: String::new(),
                header_map: Some(EnvoyHeaders {
                    headers: vec![
                        raw("Authorization", "Bearer k"),
                        raw("x-forwarded-for", "198.51.100.1"),
                        raw("x-forwarded-for", "10.0.0.1"),
                    ],
                }),
                ..attribute_context::HttpRequest::default()
            },
            "not an address",
        ));
        assert_eq!(asked.path(), "/");
        assert_eq!(asked.source, None);
        assert_eq!(
            asked.headers.get("authorization").map(String::as_str),
            Some("Bearer k")
        );
        assert_eq!(
            asked.headers.get("x-forwarded-for").map(String::as_str),
            Some("198.51.100.1,10.0.0.1")
        );
        assert!(Asked::of(CheckRequest::default()).headers.is_empty());
    }
}
