//! The embedded gateway's finer rules, each through a real proxy to a real upstream: the
//! whole header sets it passes on, route costs and named limits, trusted proxies in
//! front of it, forward auth's original method, and `keyhaven serve --proxy-listen`.

use std::collections::BTreeMap;
use std::time::Duration;

use keyhaven_service::gateway::{RouteLimit, RouteRule};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::{gateway_with, header, refused, rule};
use crate::gateway_upstream::spawn_upstream;
use crate::helpers::{free_port, http_client, post_json, spawn_app_with, spawn_process_with};

/// A response's headers, every value of each, without `date` (a clock, not the proxy).
fn response_headers(response: &reqwest::Response) -> BTreeMap<String, Vec<String>> {
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in response.headers() {
        if name != "date" {
            all.entry(name.as_str().to_owned())
                .or_default()
                .push(value.to_str().unwrap().to_owned());
        }
    }
    all
}

#[tokio::test]
async fn whole_header_sets_differ_from_a_direct_request_only_by_the_documented_headers() {
    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |_| {}).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["docs:read"]}))
        .await;

    // The answer: every header the upstream sent, no more and no fewer.
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
    assert_eq!(response_headers(&proxied), response_headers(&direct));

    // The request: the same headers (repeated ones in order) as a direct request, apart
    // from the key, which is gone, and the identity and forwarding headers, which are
    // added.
    let send = |base: &str, key: Option<&str>| {
        let request = app
            .http
            .post(format!("{base}/echo/a?q=1"))
            .header("X-Custom-In", "first")
            .header("X-Custom-In", "second")
            .header("Accept-Language", "de-CH")
            .header("Cookie", "session=1")
            .header("User-Agent", "gateway-test/1.0")
            .header("Content-Type", "text/plain")
            .body("hello");
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
        .send()
    };
    let direct: Value = send(&upstream.url(), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut proxied: Value = send(&proxy, Some(&key.key))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let added = proxied["headers"].as_object_mut().unwrap();
    for name in [
        "x-keyhaven-key-id",
        "x-keyhaven-keyspace-id",
        "x-keyhaven-scopes",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ] {
        assert!(added.remove(name).is_some(), "{name} is added");
    }
    assert_eq!(proxied, direct);
}

#[tokio::test]
async fn route_costs_and_named_limits_take_what_the_rule_says() {
    let upstream = spawn_upstream().await;
    let (app, proxy) = gateway_with(&upstream.url(), |p| {
        p.routes = vec![
            RouteRule {
                cost: Some(2),
                ..rule("/echo/heavy", &[])
            },
            RouteRule {
                ratelimits: Some(vec![RouteLimit {
                    name: "search".into(),
                    cost: Some(3),
                }]),
                ..rule("/echo/search", &[])
            },
        ];
    })
    .await;
    let ks = app.create_keyspace("acme_live").await;
    let get = |key: &str, path: &str| {
        app.http
            .get(format!("{proxy}{path}"))
            .bearer_auth(key)
            .send()
    };
    let remaining =
        |response: &reqwest::Response| response.headers()["ratelimit"].to_str().unwrap().to_owned();

    // A route's cost comes off every limit of the key.
    let heavy = app
        .create_key(json!({"keyspace_id": ks.id,
            "ratelimits": [{"name": "requests", "limit": 10, "duration_ms": 60_000}]}))
        .await;
    for left in [8, 6, 4, 2, 0] {
        let ok = get(&heavy.key, "/echo/heavy/x").await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let current = remaining(&ok);
        assert!(
            current.starts_with(&format!("\"requests\";r={left};t=")),
            "{current}"
        );
    }
    refused(
        get(&heavy.key, "/echo/heavy").await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;

    // ... and off the quota: 5 units pay for two requests at 2, not a third.
    let quota = app
        .create_key(json!({"keyspace_id": ks.id, "quota": {"remaining": 5}}))
        .await;
    for _ in 0..2 {
        let ok = get(&quota.key, "/echo/heavy").await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
    refused(
        get(&quota.key, "/echo/heavy").await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "usage_exceeded",
    )
    .await;

    // A route naming limits takes from those only, at their own cost.
    let search = app
        .create_key(json!({"keyspace_id": ks.id, "ratelimits": [
            {"name": "requests", "limit": 10, "duration_ms": 60_000},
            {"name": "search", "limit": 6, "duration_ms": 60_000}]}))
        .await;
    for left in [3, 0] {
        let ok = get(&search.key, "/echo/search").await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["ratelimit-policy"], "\"search\";q=6;w=60");
        let current = remaining(&ok);
        assert!(
            current.starts_with(&format!("\"search\";r={left};t=")),
            "{current}"
        );
    }
    refused(
        get(&search.key, "/echo/search").await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    let (status, answer) = app
        .send(
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": search.key, "ratelimits": [{"name": "requests"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["ratelimits"][0]["remaining"], 9,
        "the gateway took nothing from `requests`: {answer}"
    );
    // Admitted: heavy ×5, quota ×2, search ×2.
    assert_eq!(upstream.hits(), 9);
}

#[tokio::test]
async fn behind_trusted_proxies_the_client_and_its_scheme_come_from_their_headers() {
    let upstream = spawn_upstream().await;
    let (app, trusting) = gateway_with(&upstream.url(), |p| p.trusted_proxy_hops = 1).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "ip_allowlist": ["203.0.113.0/24"]}))
        .await;
    let get = |base: &str, forwarded_for: Option<&str>| {
        let request = app
            .http
            .get(format!("{base}/echo"))
            .bearer_auth(&key.key)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "api.example.com");
        match forwarded_for {
            Some(chain) => request.header("X-Forwarded-For", chain),
            None => request,
        }
        .send()
    };

    // The proxy in front appended the client: the allowlist sees it, and the
    // scheme and host it received are passed on.
    let admitted = get(&trusting, Some("198.51.100.7, 203.0.113.9"))
        .await
        .unwrap();
    assert_eq!(admitted.status(), StatusCode::OK);
    let echo: Value = admitted.json().await.unwrap();
    assert_eq!(
        header(&echo, "x-forwarded-for"),
        Some(vec!["198.51.100.7, 203.0.113.9, 127.0.0.1"])
    );
    assert_eq!(header(&echo, "x-forwarded-proto"), Some(vec!["https"]));
    assert_eq!(
        header(&echo, "x-forwarded-host"),
        Some(vec!["api.example.com"])
    );
    // The client's own claim, one hop further left, is not believed.
    refused(
        get(&trusting, Some("203.0.113.9, 198.51.100.7"))
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden_ip",
    )
    .await;
    // No hop to read: no address, never the socket's (the proxy's own).
    refused(
        get(&trusting, None).await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden_ip",
    )
    .await;

    // A gateway trusting nobody reads the socket and overwrites the scheme and host.
    let (open_app, open) = gateway_with(&upstream.url(), |_| {}).await;
    let ks = open_app.create_keyspace("acme_live").await;
    let plain = open_app.create_key(json!({"keyspace_id": ks.id})).await;
    let echo: Value = open_app
        .http
        .get(format!("{open}/echo"))
        .bearer_auth(&plain.key)
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "api.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(header(&echo, "x-forwarded-proto"), Some(vec!["http"]));
    let host = open.trim_start_matches("http://");
    assert_eq!(header(&echo, "x-forwarded-host"), Some(vec![host]));
}

#[tokio::test]
async fn forward_auth_decides_for_the_original_method() {
    let app = spawn_app_with(|c| {
        c.gateway.routes = vec![RouteRule {
            methods: vec!["POST".into()],
            ..rule("/admin", &["admin"])
        }]
    })
    .await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let auth = |method_header: Option<(&str, &str)>| {
        let request = app
            .http
            .get(app.url("/v1/auth"))
            .bearer_auth(&key.key)
            .header("X-Forwarded-Uri", "/admin/users");
        match method_header {
            Some((name, method)) => request.header(name, method),
            None => request,
        }
        .send()
    };
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(auth(Some(("X-Forwarded-Method", "GET"))).await.unwrap()),
        StatusCode::OK
    );
    assert_eq!(
        status(auth(Some(("X-Forwarded-Method", "POST"))).await.unwrap()),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(auth(Some(("X-Original-Method", "POST"))).await.unwrap()),
        StatusCode::FORBIDDEN,
        "nginx's header"
    );
    // nginx sets X-Original-Method and passes the client's headers on: a client's own
    // X-Forwarded-Method cannot pick the method the rules decide for.
    let conflicting = [
        ("X-Original-Method", "POST", "X-Forwarded-Method", "GET"),
        (
            "X-Original-URI",
            "/admin/users",
            "X-Forwarded-Uri",
            "/public",
        ),
    ];
    for (set, value, forged, claim) in conflicting {
        let answer = app
            .http
            .get(app.url("/v1/auth"))
            .bearer_auth(&key.key)
            .header("X-Original-URI", "/admin/users")
            .header("X-Original-Method", "POST")
            .header(set, value)
            .header(forged, claim)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{forged}");
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["code"], "conflicting_original_request", "{forged}");
    }
    // Without the method, the rule would be decided for the subrequest's GET.
    let missing = auth(None).await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["code"], "missing_original_method");
}

#[tokio::test]
async fn serve_with_proxy_flags_fronts_an_upstream() {
    let upstream = spawn_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let upstream_url = upstream.url();
    let server = spawn_process_with(
        &dir.path().join("data"),
        dir.path(),
        &[],
        None,
        &["--proxy-listen", &listen, "--proxy-upstream", &upstream_url],
    )
    .await;
    let root = server.first_root_key();
    let http = http_client();
    let ks = post_json(
        &http,
        &format!("{}/v1/keyspaces", server.base),
        &root,
        &json!({"name": "acme", "prefix": "acme_live"}),
    )
    .await;
    let key = post_json(
        &http,
        &format!("{}/v1/keys", server.base),
        &root,
        &json!({"keyspace_id": ks["id"]}),
    )
    .await;
    let proxy = format!("http://{listen}");
    let mut without_key = None;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{proxy}/echo")).send().await {
            without_key = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let without_key = without_key.expect("the proxy listens");
    refused(without_key, StatusCode::UNAUTHORIZED, "missing_key").await;
    let echo: Value = http
        .get(format!("{proxy}/echo"))
        .bearer_auth(key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        header(&echo, "x-keyhaven-key-id"),
        Some(vec![key["key_id"].as_str().unwrap()])
    );
    assert_eq!(upstream.hits(), 1, "only the admitted request reached it");
}
