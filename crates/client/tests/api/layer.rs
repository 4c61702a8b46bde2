//! The example app (`examples/axum_app.rs`), protected by the layer, against a real
//! server: what a caller of your API sees.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use keyhaven_client::Client;
use keyhaven_client::layer::{KeyhavenLayer, KeyhavenUnavailable, VerifiedKey};
use keyhaven_client::types::{CreateKey, CreateOwner, RevokeKey};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestServer, dead_url, key, keyspace, limited_key, plain};

#[allow(dead_code)]
#[path = "../../examples/axum_app.rs"]
mod example;

/// Serves `app` on 127.0.0.1:0 (with the client's address); its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    format!("http://{addr}")
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get_with(url: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = http().get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

fn header<'r>(r: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The problem document of a refusal, after checking its content type.
async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(
        header(&response, "content-type"),
        Some("application/problem+json")
    );
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_answers_like_the_gateway() {
    let server = TestServer::start().await;
    let client = server.client();
    let app = serve(example::app(client.clone())).await;
    let ks = keyspace(&client).await;
    let owner = client
        .owners()
        .create(&CreateOwner::new(format!("cust-{}", ks.prefix)))
        .await
        .unwrap();
    let mut input = CreateKey::new(ks.id.clone());
    input.owner_id = Some(owner.id.clone());
    let valid = client.keys().create(&input).await.unwrap();

    // 200 with the caller; twice (the second may come from the cache); X-API-Key too.
    for _ in 0..2 {
        let ok = get_with(&format!("{app}/orders"), Some(&plain(&valid))).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let text = ok.text().await.unwrap();
        assert!(text.contains(&valid.view.key_id), "{text}");
        assert!(text.contains(&owner.external_id), "{text}");
    }
    let by_header = http()
        .get(format!("{app}/orders"))
        .header("x-api-key", plain(&valid))
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), StatusCode::OK);
    // A public route needs nothing.
    assert_eq!(get_with(&format!("{app}/health"), None).await.status(), 200);

    // 401 without a key.
    let missing = get_with(&format!("{app}/orders"), None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&missing, "www-authenticate"),
        Some("Bearer realm=\"api\"")
    );
    let body = problem(missing).await;
    assert_eq!(body["code"], "missing_key");
    assert_eq!(body["status"], 401);
    assert_eq!(body["type"], "urn:keyhaven:problem:missing_key");

    // 401 for an unknown key, and for garbage.
    let unknown = keyhaven_client::keys::generate(&ks.prefix).unwrap();
    let unknown = keyhaven_client::ExposeSecret::expose_secret(unknown.key()).to_owned();
    let refused = get_with(&format!("{app}/orders"), Some(&unknown)).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&refused, "www-authenticate"),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );
    assert_eq!(problem(refused).await["code"], "not_found");
    let garbage = get_with(&format!("{app}/orders"), Some("garbage")).await;
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem(garbage).await["code"], "malformed");

    // 401 for a revoked key.
    let revoked = key(&client, &ks, &[]).await;
    client
        .keys()
        .revoke(&revoked.view.key_id, &RevokeKey::default())
        .await
        .unwrap();
    let refused = get_with(&format!("{app}/orders"), Some(&plain(&revoked))).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem(refused).await["code"], "revoked");

    // 403 for a key without the route's scope; 200 with it.
    let refused = get_with(&format!("{app}/reports"), Some(&plain(&valid))).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(header(&refused, "www-authenticate").is_none());
    assert_eq!(problem(refused).await["code"], "insufficient_scopes");
    let reporter = key(&client, &ks, &["reports:*"]).await;
    let ok = get_with(&format!("{app}/reports"), Some(&plain(&reporter))).await;
    assert_eq!(ok.status(), StatusCode::OK);

    // 429 with Retry-After for a key allowed one request a minute.
    let limited = limited_key(&client, &ks).await;
    let first = get_with(&format!("{app}/orders"), Some(&plain(&limited))).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(header(&first, "ratelimit").is_some());
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"requests\";q=1;w=60")
    );
    let second = get_with(&format!("{app}/orders"), Some(&plain(&limited))).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&second, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(header(&second, "ratelimit").is_some());
    assert_eq!(problem(second).await["code"], "rate_limited");
}

/// Keyhaven down: 503 `unavailable` (fail closed); with `fail_open`, the request passes
/// without a caller.
#[tokio::test]
async fn an_unreachable_keyhaven_fails_closed_unless_told_otherwise() {
    let client = Client::builder(dead_url().await, "kh_root_not_a_real_key")
        .attempts(2)
        .backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let closed = serve(example::app(client.clone())).await;
    let refused = get_with(&format!("{closed}/orders"), Some("acme_live_any")).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = problem(refused).await;
    assert_eq!(body["code"], "unavailable");
    assert_eq!(body["status"], 503);

    let open = Router::new()
        .route(
            "/orders",
            get(
                |key: Option<VerifiedKey>,
                 unavailable: Option<axum::Extension<KeyhavenUnavailable>>| async move {
                    match key {
                        Some(key) => format!("key {}", key.key_id()),
                        None => format!("anonymous (keyhaven down: {})", unavailable.is_some()),
                    }
                },
            ),
        )
        .route(
            "/strict",
            get(|key: VerifiedKey| async move { key.key_id().to_owned() }),
        )
        .layer(KeyhavenLayer::new(client).fail_open(true));
    let open = serve(open).await;
    let passed = get_with(&format!("{open}/orders"), Some("acme_live_any")).await;
    assert_eq!(passed.status(), StatusCode::OK);
    assert_eq!(
        passed.text().await.unwrap(),
        "anonymous (keyhaven down: true)"
    );
    // A handler that needs the caller still cannot have one.
    let strict = get_with(&format!("{open}/strict"), Some("acme_live_any")).await;
    assert_eq!(strict.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Fail-open never admits a request without a key.
    let missing = get_with(&format!("{open}/orders"), None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
}

/// A root key Keyhaven refuses is a misconfiguration: 503 even when failing open.
#[tokio::test]
async fn a_refused_root_key_is_never_failed_open() {
    let server = TestServer::start().await;
    let client = Client::new(server.url.clone(), "kh_root_wrong").unwrap();
    let app = Router::new()
        .route("/", get(|| async { "secret" }))
        .layer(KeyhavenLayer::new(client).fail_open(true));
    let app = serve(app).await;
    let refused = get_with(&format!("{app}/"), Some("acme_live_any")).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
}
