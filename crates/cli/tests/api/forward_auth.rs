//! Forward auth (`GET /v1/auth`) behind a real nginx from Debian's packages, configured
//! with the very snippet `docs/gateway.md` documents (read from the file, so the two
//! cannot drift): a real Keyhaven, a small upstream API that echoes the headers it got,
//! and nginx's `auth_request` between a real client and that API.
//!
//! nginx runs as the current user on a free loopback port, with its configuration, pid,
//! logs and temp files in a temp dir, and is killed when the test ends. Under `CI=true`
//! a missing `nginx` fails the test (`.ci/run` installs it); elsewhere the test says so
//! and passes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use keyhaven_service::gateway::RouteRule;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{TestApp, free_port, http_client, spawn_app_with};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/gateway.md");

/// The first `lang` code block after the line `heading` in a Markdown document.
fn code_block(doc: &str, heading: &str, lang: &str) -> String {
    let mut lines = doc.lines().skip_while(|l| *l != heading);
    assert_eq!(
        lines.next(),
        Some(heading),
        "docs/gateway.md has no {heading:?}"
    );
    let fence = format!("```{lang}");
    let block: Vec<&str> = lines
        .skip_while(|l| *l != fence)
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert!(!block.is_empty(), "no {fence} block under {heading:?}");
    block.join("\n")
}

/// `text` with `from` replaced by `to`, which must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the snippet has no {from:?}:\n{text}");
    text.replace(from, to)
}

/// A running nginx, killed (with its whole process, `master_process off`) when dropped.
struct Nginx {
    child: Child,
    dir: TempDir,
    base: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

#[allow(clippy::print_stdout)]
fn nginx_missing() -> Option<Nginx> {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "nginx is required under CI (.ci/run installs Debian's nginx-light)"
    );
    println!("SKIPPED forward auth through nginx: no nginx on PATH (bash .ci/run installs it)");
    None
}

/// Starts nginx with the documented snippet, pointed at `keyhaven` and `upstream`.
async fn start_nginx(snippet: &str, keyhaven: SocketAddr, upstream: SocketAddr) -> Option<Nginx> {
    let port = free_port();
    let snippet = replaced(
        snippet,
        "server 127.0.0.1:8080;",
        &format!("server {keyhaven};"),
    );
    let snippet = replaced(
        &snippet,
        "server 127.0.0.1:3000;",
        &format!("server {upstream};"),
    );
    let snippet = replaced(&snippet, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // One process (no master, no workers to switch users): it runs as whoever runs the
    // test, and a kill stops all of it. Every path nginx writes is in `dir`.
    let conf = format!(
        "master_process off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         access_log {d}/access.log;\n\
         client_body_temp_path {d}/client_body;\n\
         proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         {snippet}\n\
         }}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    // Debian puts nginx in /usr/sbin, which a user's PATH may lack.
    let spawn = |program: &str| {
        Command::new(program)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let child = match spawn("nginx") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => spawn("/usr/sbin/nginx"),
        started => started,
    };
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return nginx_missing(),
        Err(e) => panic!("starting nginx: {e}"),
    };
    let mut nginx = Nginx {
        child,
        dir,
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(nginx);
        }
        if let Ok(Some(status)) = nginx.child.try_wait() {
            panic!("nginx exited ({status}):\n{}", nginx.error_log());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx never listened on {port}:\n{}", nginx.error_log());
}

/// The API behind nginx: answers every request with its method, URI and headers (each
/// name with all its values), and counts what it received.
async fn spawn_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    async fn echo(State(hits): State<Arc<AtomicUsize>>, request: Request) -> axum::Json<Value> {
        hits.fetch_add(1, Ordering::SeqCst);
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in request.headers() {
            headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        axum::Json(json!({
            "method": request.method().as_str(),
            "uri": request.uri().to_string(),
            "headers": headers,
        }))
    }
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new().fallback(echo).with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// A client whose connections come from `source` (any 127.0.0.0/8 address is this
/// machine), so nginx sees different clients.
fn client_from(source: [u8; 4]) -> reqwest::Client {
    let _ = http_client();
    reqwest::Client::builder()
        .local_address(IpAddr::from(source))
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The values of request header `name` as the upstream received it.
    fn upstream_got(&self, name: &str) -> Option<Vec<String>> {
        let values = self.body["headers"].get(name)?.as_array()?;
        Some(
            values
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect(),
        )
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

fn rule(path: &str) -> RouteRule {
    RouteRule {
        path: path.into(),
        methods: vec![],
        public: false,
        scopes: vec![],
        cost: None,
        ratelimits: None,
        permissions: None,
    }
}

async fn revoke(app: &TestApp, key_id: &str) {
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/v1/keys/{key_id}/revoke"),
            Some(&json!({"reason": "test"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A well-formed key no one issued.
fn unknown_key() -> String {
    let prefix = keyhaven_core::Prefix::new("fwd_live").unwrap();
    let generated = keyhaven_core::generate(&prefix).unwrap();
    generated.key().expose_secret().to_owned()
}

#[tokio::test]
async fn nginx_auth_request_with_the_documented_snippet_admits_identifies_and_refuses() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let snippet = code_block(&doc, "### nginx", "nginx");
    let app = spawn_app_with(|config| {
        config.gateway.trusted_proxy_hops = 1;
        config.gateway.routes = vec![
            RouteRule {
                public: true,
                ..rule("/public")
            },
            RouteRule {
                scopes: vec!["admin".into()],
                ..rule("/admin")
            },
        ];
        config.failed_verifications_per_ip_per_minute = 5;
    })
    .await;
    let (upstream, hits) = spawn_echo().await;
    let keyhaven: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let Some(nginx) = start_nginx(&snippet, keyhaven, upstream).await else {
        return;
    };
    let url = |path: &str| format!("{}{path}", nginx.base);
    let http = client_from([127, 0, 0, 1]);

    let ks = app.create_keyspace("fwd_live").await;
    let (status, owner) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "cus_42"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    let reader = app
        .create_key(json!({"keyspace_id": ks.id, "owner_id": owner["id"], "scopes": ["read"]}))
        .await;
    let admin = app
        .create_key(json!({"keyspace_id": ks.id, "scopes": ["admin"]}))
        .await;
    let limited = app
        .create_key(json!({
            "keyspace_id": ks.id,
            "ratelimits": [{"name": "requests", "limit": 1, "duration_ms": 60_000}],
        }))
        .await;
    let revoked = app.create_key(json!({"keyspace_id": ks.id})).await;
    revoke(&app, &revoked.record.key_id).await;

    // A valid key: the upstream gets the caller as Keyhaven identified it, whatever the
    // client claimed, and not the key.
    let ok = send(
        http.get(url("/things?page=2"))
            .bearer_auth(&reader.key)
            .header("X-Keyhaven-Key-Id", "forged")
            .header("X-Keyhaven-Scopes", "admin"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["uri"], "/things?page=2");
    let got = |name: &str| ok.upstream_got(name);
    assert_eq!(
        got("x-keyhaven-key-id"),
        Some(vec![reader.record.key_id.clone()])
    );
    assert_eq!(got("x-keyhaven-keyspace-id"), Some(vec![ks.id.clone()]));
    assert_eq!(got("x-keyhaven-scopes"), Some(vec!["read".to_owned()]));
    assert_eq!(
        got("x-keyhaven-owner-id"),
        Some(vec![owner["id"].as_str().unwrap().to_owned()])
    );
    assert_eq!(
        got("x-keyhaven-owner-external-id"),
        Some(vec!["cus_42".to_owned()])
    );
    assert_eq!(got("authorization"), None, "the key stays with nginx");
    assert!(!ok.body.to_string().contains(&reader.key));
    // X-API-Key works as well, and is not forwarded either.
    let by_header = send(http.get(url("/things")).header("X-API-Key", &admin.key)).await;
    assert_eq!(by_header.status, StatusCode::OK, "{}", by_header.body);
    assert_eq!(
        by_header.upstream_got("x-keyhaven-key-id"),
        Some(vec![admin.record.key_id.clone()])
    );
    assert_eq!(by_header.upstream_got("x-api-key"), None);
    assert_eq!(by_header.upstream_got("x-keyhaven-owner-id"), None);

    // A public route needs no key, and a client's identity headers never pass.
    let public = send(
        http.get(url("/public/docs"))
            .header("X-Keyhaven-Key-Id", "forged")
            .header("X-Keyhaven-Owner-External-Id", "someone"),
    )
    .await;
    assert_eq!(public.status, StatusCode::OK, "{}", public.body);
    assert_eq!(public.upstream_got("x-keyhaven-key-id"), None);
    assert_eq!(public.upstream_got("x-keyhaven-owner-external-id"), None);

    // 401: no key, an unknown key, a revoked key; the challenge comes back through nginx.
    let before = hits.load(Ordering::SeqCst);
    let missing = send(http.get(url("/things"))).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"api\"")
    );
    for key in [unknown_key(), revoked.key.clone()] {
        let refused = send(http.get(url("/things")).bearer_auth(&key)).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Bearer realm=\"api\", error=\"invalid_token\"")
        );
        assert!(!refused.body.to_string().contains(&key));
    }
    // The route is the request's own, not one a client names in a header of its own.
    let sneaky = send(
        http.get(url("/things"))
            .header("X-Forwarded-Uri", "/public/docs")
            .header("X-Original-URI", "/public/docs"),
    )
    .await;
    assert_eq!(sneaky.status, StatusCode::UNAUTHORIZED);

    // 403: a route rule's scope the key lacks.
    let forbidden = send(http.get(url("/admin/users")).bearer_auth(&reader.key)).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "no refusal reached the API"
    );
    let allowed = send(http.get(url("/admin/users")).bearer_auth(&admin.key)).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);

    // 429 from the key's rate limit: auth_request alone would say 500; the snippet gives
    // the status and the headers back.
    let first = send(http.get(url("/things")).bearer_auth(&limited.key)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"requests\";q=1;w=60")
    );
    assert_eq!(first.header("ratelimit"), Some("\"requests\";r=0;t=60"));
    let before = hits.load(Ordering::SeqCst);
    let limited_answer = send(http.get(url("/things")).bearer_auth(&limited.key)).await;
    assert_eq!(limited_answer.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited_answer
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        limited_answer.header("ratelimit-policy"),
        Some("\"requests\";q=1;w=60")
    );
    assert!(
        limited_answer
            .header("ratelimit")
            .unwrap()
            .starts_with("\"requests\";r=0;"),
        "{:?}",
        limited_answer.headers
    );
    assert_eq!(hits.load(Ordering::SeqCst), before);

    // The client's address reaches the failed-verification limiter through nginx's
    // X-Forwarded-For (`trusted_proxy_hops = 1`): one client guessing keys is shed after
    // 5 failures, even when it claims another address, and another client is not.
    let guesser = client_from([127, 0, 0, 2]);
    for _ in 0..5 {
        let guess = send(guesser.get(url("/things")).bearer_auth(unknown_key())).await;
        assert_eq!(guess.status, StatusCode::UNAUTHORIZED);
    }
    let shed = send(
        guesser
            .get(url("/things"))
            .bearer_auth(unknown_key())
            .header("X-Forwarded-For", "198.51.100.7"),
    )
    .await;
    assert_eq!(shed.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(shed.header("retry-after").is_some(), "{:?}", shed.headers);
    let other = client_from([127, 0, 0, 3]);
    let elsewhere = send(other.get(url("/things")).bearer_auth(unknown_key())).await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
    // The guesser's own valid key still works: the limiter sheds failures only.
    let theirs = send(guesser.get(url("/things")).bearer_auth(&reader.key)).await;
    assert_eq!(theirs.status, StatusCode::OK);

    let errors = nginx.error_log();
    assert!(!errors.contains("[emerg]"), "{errors}");
    for key in [&reader.key, &admin.key, &limited.key, &revoked.key] {
        assert!(!errors.contains(key.as_str()), "no key in nginx's log");
    }
}

/// Every proxy's snippet hands the upstream all five identity headers (a header left out
/// of nginx's would let a client's own pass through).
#[test]
fn every_documented_snippet_passes_every_identity_header() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let nginx = code_block(&doc, "### nginx", "nginx");
    let traefik = code_block(&doc, "### Traefik", "yaml");
    let caddy = code_block(&doc, "### Caddy", "caddy");
    for header in [
        "X-Keyhaven-Key-Id",
        "X-Keyhaven-Keyspace-Id",
        "X-Keyhaven-Owner-Id",
        "X-Keyhaven-Owner-External-Id",
        "X-Keyhaven-Scopes",
    ] {
        let var = header.to_ascii_lowercase().replace('-', "_");
        assert!(
            nginx.contains(&format!("$upstream_http_{var};")),
            "{header}"
        );
        assert!(
            nginx.contains(&format!("proxy_set_header {header} $")),
            "{header}"
        );
        let line = |block: &str, want: String| block.lines().any(|l| l.trim() == want);
        assert!(line(&traefik, format!("- {header}")), "{header}");
        assert!(
            line(&caddy, format!("request_header -{header}")),
            "{header}"
        );
        assert!(
            caddy.lines().any(|l| l.trim().starts_with("copy_headers ")
                && l.split_whitespace().any(|w| w == header)),
            "{header}"
        );
    }
}

/// The configuration examples of docs/gateway.md load as written.
#[test]
fn the_documented_gateway_configuration_loads() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let flags = serde_json::Map::new();
    let proxy = code_block(&doc, "## The embedded proxy", "toml");
    let config = keyhaven_service::config::Config::load_toml_str(&proxy, &flags)
        .unwrap_or_else(|e| panic!("{e}\n{proxy}"));
    let listener = &config.proxy[0];
    assert_eq!(listener.upstream, "http://127.0.0.1:3000");
    assert_eq!(listener.routes.len(), 3);
    assert!(listener.rules().access("GET", "/health").unwrap().public);
    assert_eq!(
        listener
            .rules()
            .access("POST", "/reports/9")
            .unwrap()
            .scopes,
        ["reports:write"]
    );
    let gateway = code_block(&doc, "## Forward auth: `GET /v1/auth`", "toml");
    let config = keyhaven_service::config::Config::load_toml_str(&gateway, &flags)
        .unwrap_or_else(|e| panic!("{e}\n{gateway}"));
    assert_eq!(config.gateway.trusted_proxy_hops, 1);
    assert_eq!(
        config.gateway.access("GET", "/admin/x").unwrap().scopes,
        ["admin"]
    );
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap();
    let example = code_block(&reference, "## Gateway: proxy and forward auth", "toml");
    let config = keyhaven_service::config::Config::load_toml_str(&example, &flags)
        .unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert_eq!(config.proxy[0].routes.len(), 2);
    assert_eq!(config.gateway.routes.len(), 1);
}
