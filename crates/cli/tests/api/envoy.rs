//! Envoy's external authorization (`envoy_authz_listen`): a real Keyhaven asked over gRPC
//! as Envoy asks it (`envoy.service.auth.v3.Authorization/Check` over h2c), with the
//! `[gateway]` rules forward auth uses. No Envoy here (Debian has no package): the client
//! is tonic's, with Envoy's own generated messages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderValueOption, HttpResponse,
    OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
use keyhaven_service::gateway::RouteRule;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::helpers::{TestApp, free_port, spawn_app_with};

const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAUTHENTICATED: i32 = 16;

/// A Keyhaven serving ext_authz, with `/admin` needing scope `admin` and `/health`
/// public; and a client connected to it.
async fn envoy_app() -> (TestApp, AuthorizationClient<Channel>) {
    let port = free_port();
    let app = spawn_app_with(|config| {
        config.envoy_authz_listen = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        config.gateway.routes = vec![
            RouteRule {
                path: "/admin".into(),
                methods: vec![],
                public: false,
                scopes: vec!["admin".into()],
                cost: None,
                ratelimits: None,
                permissions: None,
            },
            RouteRule {
                path: "/health".into(),
                methods: vec!["GET".into()],
                public: true,
                scopes: vec![],
                cost: None,
                ratelimits: None,
                permissions: None,
            },
        ];
    })
    .await;
    for _ in 0..200 {
        if let Ok(client) = AuthorizationClient::connect(format!("http://127.0.0.1:{port}")).await {
            return (app, client);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ext_authz never listened on {port}");
}

/// Asks about `method path` from 203.0.113.7 with `headers` (lower-case, as Envoy sends).
async fn check(
    client: &mut AuthorizationClient<Channel>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> CheckResponse {
    let http = attribute_context::HttpRequest {
        method: method.into(),
        path: path.into(),
        host: "api.example.com".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
        ..attribute_context::HttpRequest::default()
    };
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "203.0.113.7".into(),
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
    client.check(request).await.unwrap().into_inner()
}

fn code(response: &CheckResponse) -> i32 {
    response.status.as_ref().unwrap().code
}

fn ok(response: CheckResponse) -> OkHttpResponse {
    assert_eq!(code(&response), OK, "{response:?}");
    match response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not an OK response: {other:?}"),
    }
}

/// The denied response, its HTTP status and problem `code` checked.
fn denied(response: CheckResponse, grpc: i32, status: u16, problem: &str) -> DeniedHttpResponse {
    assert_eq!(code(&response), grpc, "{response:?}");
    let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
        panic!("not a denied response: {response:?}");
    };
    assert_eq!(denied.status.as_ref().unwrap().code, i32::from(status));
    assert_eq!(
        header(&denied.headers, "content-type"),
        Some("application/problem+json")
    );
    let body: Value = serde_json::from_str(&denied.body).unwrap();
    assert_eq!(body["code"], problem, "{body}");
    assert_eq!(body["status"], status);
    denied
}

fn header<'a>(options: &'a [HeaderValueOption], name: &str) -> Option<&'a str> {
    options
        .iter()
        .filter_map(|o| o.header.as_ref())
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

#[tokio::test]
async fn a_valid_key_passes_with_its_identity_and_without_its_header() {
    let (app, mut client) = envoy_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["docs:read"]}))
        .await;
    let bearer = format!("Bearer {}", key.key);
    let answer = ok(check(
        &mut client,
        "GET",
        "/v1/docs?page=2",
        &[
            ("authorization", bearer.as_str()),
            ("x-keyhaven-key-id", "forged"),
            ("x-keyhaven-owner-id", "forged"),
        ],
    )
    .await);
    assert_eq!(
        header(&answer.headers, "x-keyhaven-key-id"),
        Some(key.record.key_id.as_str())
    );
    assert_eq!(
        header(&answer.headers, "x-keyhaven-keyspace-id"),
        Some(ks.id.as_str())
    );
    assert_eq!(
        header(&answer.headers, "x-keyhaven-scopes"),
        Some("docs:read")
    );
    // The key's header goes, and the forged owner (this key has none); the forged key id
    // is overwritten.
    assert_eq!(
        answer.headers_to_remove,
        ["authorization", "x-keyhaven-owner-id"]
    );
    for option in &answer.headers {
        assert_eq!(option.append_action, 2, "OVERWRITE_IF_EXISTS_OR_ADD");
    }

    let by_api_key = ok(check(&mut client, "POST", "/v1/docs", &[("x-api-key", &key.key)]).await);
    assert_eq!(by_api_key.headers_to_remove, ["x-api-key"]);
    // The same verification as the API's: the key's usage counts both.
    assert!(app.verify(&key.key).await.valid);
}

#[tokio::test]
async fn refusals_carry_the_http_refusal() {
    let (app, mut client) = envoy_app().await;
    let ks = app.create_keyspace("acme_live").await;

    let none = denied(
        check(&mut client, "GET", "/v1/docs", &[]).await,
        UNAUTHENTICATED,
        401,
        "missing_key",
    );
    assert_eq!(
        header(&none.headers, "www-authenticate"),
        Some("Bearer realm=\"api\"")
    );

    // Never from the URL.
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let in_query = format!("/v1/docs?api_key={}", key.key);
    denied(
        check(&mut client, "GET", &in_query, &[]).await,
        UNAUTHENTICATED,
        401,
        "missing_key",
    );

    let path = format!("/v1/keys/{}/revoke", key.record.key_id);
    assert_eq!(
        app.send(Method::POST, &path, Some(&json!({}))).await.0,
        StatusCode::OK
    );
    let revoked = denied(
        check(&mut client, "GET", "/v1/docs", &[("x-api-key", &key.key)]).await,
        UNAUTHENTICATED,
        401,
        "revoked",
    );
    assert_eq!(
        header(&revoked.headers, "www-authenticate"),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );

    let reader = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["docs:read"]}))
        .await;
    let forbidden = denied(
        check(
            &mut client,
            "DELETE",
            "/admin/users/7",
            &[("x-api-key", &reader.key)],
        )
        .await,
        PERMISSION_DENIED,
        403,
        "insufficient_scopes",
    );
    assert_eq!(header(&forbidden.headers, "www-authenticate"), None);
}

#[tokio::test]
async fn a_rate_limited_key_is_refused_with_retry_after_and_ratelimit_headers() {
    let (app, mut client) = envoy_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let limited = app
        .create_key(json!({"keyspace_id": ks.id,
            "ratelimits": [{"name": "requests", "limit": 2, "duration_ms": 60_000}]}))
        .await;
    let headers = [("x-api-key", limited.key.as_str())];
    for remaining in [1, 0] {
        let passed = ok(check(&mut client, "GET", "/v1/docs", &headers).await);
        assert_eq!(
            header(&passed.response_headers_to_add, "ratelimit-policy"),
            Some("\"requests\";q=2;w=60")
        );
        let current = header(&passed.response_headers_to_add, "ratelimit").unwrap();
        assert!(
            current.starts_with(&format!("\"requests\";r={remaining};t=")),
            "{current}"
        );
    }
    let refused = denied(
        check(&mut client, "GET", "/v1/docs", &headers).await,
        RESOURCE_EXHAUSTED,
        429,
        "rate_limited",
    );
    let retry: u64 = header(&refused.headers, "retry-after")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(header(&refused.headers, "ratelimit").is_some());
}

#[tokio::test]
async fn a_public_route_passes_without_a_key_and_without_forged_identity() {
    let (_app, mut client) = envoy_app().await;
    let public = ok(check(
        &mut client,
        "GET",
        "/health/live",
        &[("x-keyhaven-scopes", "admin")],
    )
    .await);
    assert!(public.headers.is_empty());
    assert_eq!(public.headers_to_remove, ["x-keyhaven-scopes"]);
    // Public for GET only.
    denied(
        check(&mut client, "POST", "/health/live", &[]).await,
        UNAUTHENTICATED,
        401,
        "missing_key",
    );
}

#[tokio::test]
async fn a_check_that_cannot_be_decided_fails_unavailable_so_envoy_fails_closed() {
    let (app, mut client) = envoy_app().await;
    app.create_keyspace("acme_live").await;
    // A well-formed key no cache has seen: deciding needs the database, which is gone.
    let prefix = keyhaven_core::Prefix::new("acme_live").unwrap();
    let unknown = keyhaven_core::generate(&prefix).unwrap();
    let unknown = unknown.key().expose_secret().to_owned();
    app.execute_sql(
        "ALTER TABLE keys RENAME TO keys_gone",
        "ALTER TABLE keys RENAME TO keys_gone",
    )
    .await;
    let failed = client
        .check(CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        method: "GET".into(),
                        path: "/v1/docs".into(),
                        headers: HashMap::from([("x-api-key".to_owned(), unknown.clone())]),
                        ..attribute_context::HttpRequest::default()
                    }),
                    ..attribute_context::Request::default()
                }),
                ..AttributeContext::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Unavailable);
    assert!(!failed.message().contains(&unknown), "{failed:?}");
}
