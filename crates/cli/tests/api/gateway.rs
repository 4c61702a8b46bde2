//! The embedded gateway (`[[proxy]]`, `--proxy-listen`): a real Keyhaven proxying to a
//! real upstream ([`crate::gateway_upstream`]), driven by real clients over sockets.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use keyhaven_service::gateway::RouteRule;
use keyhaven_service::gateway::listener::ProxyConfig;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::gateway_upstream::{fixed_body, spawn_upstream};
use crate::helpers::{TestApp, free_port, spawn_app_with};

/// A Keyhaven whose one proxy listener fronts `upstream`; returns it and the proxy's
/// base URL once the proxy accepts connections.
pub async fn gateway_with(
    upstream: &str,
    configure: impl FnOnce(&mut ProxyConfig),
) -> (TestApp, String) {
    let port = free_port();
    let mut proxy = ProxyConfig::new(SocketAddr::from(([127, 0, 0, 1], port)), upstream.into());
    configure(&mut proxy);
    let app = spawn_app_with(|config| config.proxy = vec![proxy]).await;
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (app, base);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the proxy never listened on {port}");
}

pub fn rule(path: &str, scopes: &[&str]) -> RouteRule {
    RouteRule {
        path: path.into(),
        methods: vec![],
        public: false,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        cost: None,
        ratelimits: None,
        permissions: None,
    }
}

async fn owner(app: &TestApp, external_id: &str) -> String {
    let (status, body) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({ "external_id": external_id })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

pub fn header<'a>(echo: &'a Value, name: &str) -> Option<Vec<&'a str>> {
    echo["headers"][name]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().unwrap()).collect())
}

#[tokio::test]
async fn an_admitted_request_reaches_the_upstream_byte_for_byte_with_only_the_documented_headers_changed()
 {
    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |_| {}).await;
    let ks = app.create_keyspace("acme_live").await;
    let owner_id = owner(&app, "cust 42 ü").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "owner_id": owner_id, "scopes": ["docs:read", "docs:write"]}))
        .await;

    // The answer: status, headers and bytes as the upstream sent them.
    let direct = app
        .http
        .get(format!("{}/fixed", upstream.url()))
        .send()
        .await
        .unwrap();
    let proxied = app
        .http
        .get(format!("{proxy}/fixed"))
        .bearer_auth(&key.key)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), direct.status());
    for name in ["content-type", "x-custom", "set-cookie", "content-length"] {
        assert_eq!(
            proxied.headers().get(name),
            direct.headers().get(name),
            "{name}"
        );
    }
    let (direct, proxied) = (
        direct.bytes().await.unwrap(),
        proxied.bytes().await.unwrap(),
    );
    assert_eq!(proxied, direct);
    assert_eq!(proxied.as_ref(), fixed_body().as_slice());

    // The request: method, path, query and body as sent; the key and forged identity
    // headers gone; the caller's identity and the forwarding headers added.
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let echo: Value = app
        .http
        .post(format!("{proxy}/echo/a/b?x=1&y=%20z"))
        .bearer_auth(&key.key)
        .header("X-Keyhaven-Key-Id", "forged")
        .header("X-Keyhaven-Anything", "forged")
        .header("X-Custom-In", "kept")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/echo/a/b?x=1&y=%20z");
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["body_sha256"], hex::encode(Sha256::digest(&body)));
    assert_eq!(header(&echo, "authorization"), None);
    assert_eq!(header(&echo, "x-keyhaven-anything"), None);
    assert_eq!(
        header(&echo, "x-keyhaven-key-id"),
        Some(vec![key.record.key_id.as_str()])
    );
    assert_eq!(
        header(&echo, "x-keyhaven-keyspace-id"),
        Some(vec![ks.id.as_str()])
    );
    assert_eq!(
        header(&echo, "x-keyhaven-owner-id"),
        Some(vec![owner_id.as_str()])
    );
    assert_eq!(
        header(&echo, "x-keyhaven-owner-external-id"),
        Some(vec!["cust 42 %C3%BC"])
    );
    assert_eq!(
        header(&echo, "x-keyhaven-scopes"),
        Some(vec!["docs:read,docs:write"])
    );
    assert_eq!(header(&echo, "x-custom-in"), Some(vec!["kept"]));
    assert_eq!(header(&echo, "x-forwarded-for"), Some(vec!["127.0.0.1"]));
    assert_eq!(header(&echo, "x-forwarded-proto"), Some(vec!["http"]));
    let proxy_host = proxy.trim_start_matches("http://");
    assert_eq!(header(&echo, "x-forwarded-host"), Some(vec![proxy_host]));
    let upstream_host = upstream.addr.to_string();
    assert_eq!(header(&echo, "host"), Some(vec![upstream_host.as_str()]));

    // A client's X-Forwarded-For is kept and the client appended, as nginx does.
    let echo: Value = app
        .http
        .get(format!("{proxy}/echo"))
        .header("X-API-Key", &key.key)
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        header(&echo, "x-forwarded-for"),
        Some(vec!["203.0.113.9, 127.0.0.1"])
    );
    assert_eq!(header(&echo, "x-api-key"), None, "the key is not forwarded");
}

#[tokio::test]
async fn keys_come_from_the_configured_header_bearer_or_x_api_key_and_public_routes_need_none() {
    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |p| {
        p.key_header = Some("X-Acme-Key".into());
        p.preserve_host = true;
        p.routes = vec![RouteRule {
            public: true,
            ..rule("/echo/public", &[])
        }];
    })
    .await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    for (name, value) in [
        ("X-Acme-Key", key.key.clone()),
        ("Authorization", format!("Bearer {}", key.key)),
        ("X-API-Key", key.key.clone()),
    ] {
        let response = app
            .http
            .get(format!("{proxy}/echo/x"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        let echo: Value = response.json().await.unwrap();
        assert_eq!(header(&echo, &name.to_ascii_lowercase()), None, "{name}");
        let proxy_host = proxy.trim_start_matches("http://");
        assert_eq!(
            header(&echo, "host"),
            Some(vec![proxy_host]),
            "preserve_host"
        );
    }
    // A key in the URL is never read.
    let response = app
        .http
        .get(format!(
            "{proxy}/echo/x?api_key={}&key={}",
            key.key, key.key
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A public route: no key needed, none checked; identity headers still stripped.
    let echo: Value = app
        .http
        .get(format!("{proxy}/echo/public/page"))
        .header("X-Keyhaven-Key-Id", "forged")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(header(&echo, "x-keyhaven-key-id"), None);
}

/// Asserts a refusal's status, problem code and headers.
pub async fn refused(
    response: reqwest::Response,
    status: StatusCode,
    code: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(response.status(), status, "{code}");
    let headers = response.headers().clone();
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], code);
    assert_eq!(problem["status"], status.as_u16());
    if status == StatusCode::UNAUTHORIZED {
        let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
    }
    headers
}

#[tokio::test]
async fn every_refusal_has_its_status_problem_and_headers_and_never_reaches_the_upstream() {
    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |p| {
        p.routes = vec![rule("/echo/admin", &["admin"])];
    })
    .await;
    let ks = app.create_keyspace("acme_live").await;
    let get = |key: Option<String>, path: &str| {
        let request = app.http.get(format!("{proxy}{path}"));
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
        .send()
    };
    let create = |body: Value| app.create_key(body);

    refused(
        get(None, "/echo").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "missing_key",
    )
    .await;
    refused(
        get(Some("not-a-key".into()), "/echo").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "malformed",
    )
    .await;
    let prefix = keyhaven_core::Prefix::new("acme_live").unwrap();
    let unknown = keyhaven_core::generate(&prefix).unwrap();
    refused(
        get(Some(unknown.key().expose_secret().to_owned()), "/echo")
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "not_found",
    )
    .await;

    let revoked = create(json!({"keyspace_id": ks.id})).await;
    let path = format!("/v1/keys/{}/revoke", revoked.record.key_id);
    assert_eq!(
        app.send(Method::POST, &path, Some(&json!({}))).await.0,
        StatusCode::OK
    );
    refused(
        get(Some(revoked.key), "/echo").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "revoked",
    )
    .await;

    let disabled = create(json!({"keyspace_id": ks.id, "enabled": false})).await;
    refused(
        get(Some(disabled.key), "/echo").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "disabled",
    )
    .await;

    let soon = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let expiring = create(
        json!({"keyspace_id": ks.id, "expires_at": keyhaven_service::validate::rfc3339(soon)}),
    )
    .await;
    assert_eq!(
        get(Some(expiring.key.clone()), "/echo")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    app.clock.advance(120);
    refused(
        get(Some(expiring.key), "/echo").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "expired",
    )
    .await;

    let plain = create(json!({"keyspace_id": ks.id, "scopes": ["docs:read"]})).await;
    refused(
        get(Some(plain.key.clone()), "/echo/admin/users")
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "insufficient_scopes",
    )
    .await;

    // Rules match the path as the upstream reads it: encoded, it still needs the scope;
    // a path that could be read two ways is refused before any key is looked at.
    refused(
        get(Some(plain.key.clone()), "/%65cho//admin/users")
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "insufficient_scopes",
    )
    .await;
    refused(
        get(Some(plain.key.clone()), "/echo%2Fadmin").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_path",
    )
    .await;

    let limited = create(json!({"keyspace_id": ks.id,
        "ratelimits": [{"name": "requests", "limit": 2, "duration_ms": 60_000}]}))
    .await;
    for remaining in [1, 0] {
        let ok = get(Some(limited.key.clone()), "/echo").await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            ok.headers().get("ratelimit-policy").unwrap(),
            "\"requests\";q=2;w=60"
        );
        let current = ok.headers().get("ratelimit").unwrap().to_str().unwrap();
        assert!(
            current.starts_with(&format!("\"requests\";r={remaining};t=")),
            "{current}"
        );
    }
    let headers = refused(
        get(Some(limited.key.clone()), "/echo").await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    let retry: u64 = headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=30).contains(&retry),
        "one request per 30 s comes back: {retry}"
    );
    assert_eq!(
        headers.get("ratelimit-policy").unwrap(),
        "\"requests\";q=2;w=60"
    );
    assert!(
        headers
            .get("ratelimit")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("\"requests\";r=0;t=")
    );

    let quota = create(json!({"keyspace_id": ks.id, "quota": {"remaining": 1}})).await;
    assert_eq!(
        get(Some(quota.key.clone()), "/echo")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    refused(
        get(Some(quota.key), "/echo").await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "usage_exceeded",
    )
    .await;

    // Only the admitted requests (expiring ×1, limited ×2, quota ×1) reached the
    // upstream: nothing refused did.
    assert_eq!(upstream.hits(), 4);
}

#[tokio::test]
async fn a_key_revoked_through_the_api_is_refused_on_its_next_request() {
    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |_| {}).await;
    let ks = app.create_keyspace("acme_live").await;
    for _ in 0..25 {
        let key = app.create_key(json!({"keyspace_id": ks.id})).await;
        let call = || {
            app.http
                .get(format!("{proxy}/echo"))
                .bearer_auth(&key.key)
                .send()
        };
        assert_eq!(call().await.unwrap().status(), StatusCode::OK);
        let path = format!("/v1/keys/{}/revoke", key.record.key_id);
        assert_eq!(
            app.send(Method::POST, &path, Some(&json!({}))).await.0,
            StatusCode::OK
        );
        assert_eq!(call().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn an_upstream_that_is_down_is_502_and_one_too_slow_is_504() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (app, proxy) = gateway_with(&closed, |_| {}).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let response = app
        .http
        .get(format!("{proxy}/x"))
        .bearer_auth(&key.key)
        .send()
        .await
        .unwrap();
    refused(response, StatusCode::BAD_GATEWAY, "upstream_unavailable").await;

    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |p| p.upstream_timeout_ms = 300).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let response = app
        .http
        .get(format!("{proxy}/slow"))
        .bearer_auth(&key.key)
        .send()
        .await
        .unwrap();
    refused(response, StatusCode::GATEWAY_TIMEOUT, "upstream_timeout").await;
}

#[tokio::test]
async fn websockets_server_sent_events_and_h2c_clients_pass_through() {
    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |_| {}).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;

    // WebSocket: the upgrade needs the key too, then messages go both ways.
    let ws_url = format!("{}/ws", proxy.replacen("http", "ws", 1));
    let refused = tokio_tungstenite::connect_async(ws_url.as_str()).await;
    assert!(refused.is_err(), "no key, no upgrade");
    let mut request = ws_url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", key.key).parse().unwrap(),
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    let hello = socket.next().await.unwrap().unwrap();
    assert_eq!(
        hello,
        Message::Text(format!("hello {}", key.record.key_id).into())
    );
    for i in 0..20 {
        socket
            .send(Message::Text(format!("ping {i}").into()))
            .await
            .unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed, Message::Text(format!("ping {i}").into()));
    }
    socket
        .send(Message::Binary(vec![0, 255, 1].into()))
        .await
        .unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::Binary(vec![0, 255, 1].into())
    );
    socket.close(None).await.unwrap();

    // Server-sent events arrive one by one, not buffered to the end.
    let mut events = app
        .http
        .get(format!("{proxy}/sse"))
        .bearer_auth(&key.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        events.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let first = events.chunk().await.unwrap().unwrap();
    assert_eq!(
        first.as_ref(),
        b"id: 0\ndata: tick 0\n\n",
        "the first event alone"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = events.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"id: 1\ndata: tick 1\n\nid: 2\ndata: tick 2\n\n");

    // An HTTP/2 client without TLS (prior knowledge): the upstream still gets HTTP/1.1.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2
        .get(format!("{proxy}/echo/h2"))
        .bearer_auth(&key.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["uri"], "/echo/h2");
    assert_eq!(
        header(&echo, "x-keyhaven-key-id"),
        Some(vec![key.record.key_id.as_str()])
    );
    let unauthorized = h2.get(format!("{proxy}/echo/h2")).send().await.unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn look_alike_headers_connection_tricks_h2c_upgrades_and_head_requests_gain_nothing() {
    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |p| {
        p.routes = vec![
            RouteRule {
                public: true,
                ..rule("/echo/public", &[])
            },
            RouteRule {
                methods: vec!["GET".into()],
                ..rule("/echo/admin", &["admin"])
            },
        ];
    })
    .await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let other = app.create_key(json!({"keyspace_id": ks.id})).await;

    // Underscored look-alikes (read as X-Keyhaven-* by CGI, PHP, WSGI, Rack) are stripped.
    let echo: Value = app
        .http
        .get(format!("{proxy}/echo/public"))
        .header("X_Keyhaven_Key_Id", "forged")
        .header("x-keyhaven_owner-id", "forged")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&String> = echo["headers"].as_object().unwrap().keys().collect();
    assert!(
        names
            .iter()
            .all(|n| !n.replace('_', "-").starts_with("x-keyhaven-")),
        "{names:?}"
    );

    // `Connection` naming the gateway's headers cannot remove them; a second key in
    // another key header does not reach the upstream either.
    let echo: Value = app
        .http
        .get(format!("{proxy}/echo/x"))
        .bearer_auth(&key.key)
        .header("X-API-Key", &other.key)
        .header("Connection", "x-keyhaven-key-id, x-forwarded-for")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        header(&echo, "x-keyhaven-key-id"),
        Some(vec![key.record.key_id.as_str()])
    );
    assert_eq!(header(&echo, "x-forwarded-for"), Some(vec!["127.0.0.1"]));
    assert_eq!(header(&echo, "x-api-key"), None);
    assert_eq!(header(&echo, "authorization"), None);

    // Only WebSocket upgrades pass: an h2c upgrade goes upstream as a plain request.
    let echo: Value = app
        .http
        .get(format!("{proxy}/echo/x"))
        .bearer_auth(&key.key)
        .header("Connection", "Upgrade, HTTP2-Settings")
        .header("Upgrade", "h2c")
        .header("HTTP2-Settings", "AAMAAABkAAQAAP__")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for gone in ["upgrade", "http2-settings", "connection"] {
        assert_eq!(header(&echo, gone), None, "{gone}");
    }

    // HEAD is GET without a body: a GET rule covers it.
    let head = app
        .http
        .head(format!("{proxy}/echo/admin/x"))
        .bearer_auth(&key.key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn forward_auth_with_route_rules_needs_the_original_path() {
    let app = spawn_app_with(|c| c.gateway.routes = vec![rule("/admin", &["admin"])]).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let auth = |uri: Option<&str>| {
        let request = app.http.get(app.url("/v1/auth")).bearer_auth(&key.key);
        match uri {
            Some(uri) => request.header("X-Forwarded-Uri", uri),
            None => request,
        }
        .send()
    };
    let missing = auth(None).await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["code"], "missing_original_uri");
    assert_eq!(
        auth(Some("/admin/x")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(auth(Some("/other")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        auth(Some("/a/../admin")).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

/// The longest lists forward auth takes, in the widest characters, still fit the request
/// line an HTTP server reads (a longer one would get hyper's bare 414); one more
/// character is a problem+json 400.
#[tokio::test]
async fn forward_auth_query_lists_are_bounded_below_the_request_line_limit() {
    let app = spawn_app_with(|_| {}).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let wide = "\u{10e2aa}";
    for chars in [2000, 2001] {
        let list = wide.repeat(chars);
        let mut url = reqwest::Url::parse(&app.url("/v1/auth")).unwrap();
        url.query_pairs_mut()
            .append_pair("scopes", &list)
            .append_pair("ratelimits", &list);
        let response = app
            .http
            .get(url)
            .bearer_auth(&key.key)
            .send()
            .await
            .unwrap();
        // 2000 reaches the handler, which refuses such a scope and limit name as it
        // refuses any invalid one; 2001 is refused for its length.
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{chars} characters"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{chars} characters"
        );
        let problem: Value = response.json().await.unwrap();
        let too_long = problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 2000 characters");
        assert_eq!(too_long, chars > 2000, "{chars}: {problem}");
    }
}
