//! The dashboard and the portal over plain HTTP (the browser suite, `tests/browser/`,
//! drives the same pages in Chromium): sessions, CSRF, roles, sign-in throttling, portal
//! links and their owner boundary, security headers, and where secrets may appear.

use std::collections::HashMap;

use keyhaven_service::{Actor, operators};
use keyhaven_store::OperatorRole;
use reqwest::{Method, StatusCode, header};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

pub const PASSWORD: &str = "correct horse battery";

/// Creates an operator the way `keyhaven operator create` does.
pub async fn add_operator(app: &TestApp, email: &str, role: OperatorRole) {
    operators::create(
        app.store.as_ref(),
        &Actor::local("cli"),
        email,
        role,
        SecretString::from(PASSWORD),
        app.clock.now(),
    )
    .await
    .unwrap();
}

/// A browser without the browser: keeps cookies, never follows redirects.
pub struct WebClient<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a form with a CSRF field");
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// The value attribute of the form field named `name` (empty if it has none).
    pub fn field(&self, name: &str) -> String {
        let at = self
            .body
            .find(&format!("name=\"{name}\""))
            .unwrap_or_else(|| panic!("no field {name}"));
        let tag = &self.body[at..at + self.body[at..].find('>').unwrap()];
        tag.find("value=\"").map_or(String::new(), |v| {
            tag[v + 7..].split('"').next().unwrap().to_owned()
        })
    }

    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }
}

impl<'a> WebClient<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut req = self.http.request(method, self.app.url(path));
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header(header::COOKIE, cookie);
        }
        if let Some(form) = form {
            let body = form
                .iter()
                .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                .collect::<Vec<_>>()
                .join("&");
            req = req
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
        }
        let response = req.send().await.unwrap();
        for set in response.headers().get_all(header::SET_COOKIE) {
            let text = set.to_str().unwrap();
            let (pair, attrs) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    /// Signs in through the sign-in form; returns the answer to the form.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/dashboard/login").await;
        let csrf = form.csrf();
        self.post(
            "/dashboard/login",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", password),
                ("next", "/dashboard/"),
            ],
        )
        .await
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A portal link for `owner_id` (its path: the test server's public address is not its
/// real one).
pub async fn portal_link(app: &TestApp, body: Value) -> String {
    let (status, answer) = app
        .send(Method::POST, "/v1/portal/sessions", Some(&body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let url = answer["url"].as_str().unwrap();
    url[url.find("/portal/start/").unwrap()..].to_owned()
}

pub async fn owner(app: &TestApp, external_id: &str) -> String {
    let (status, body) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": external_id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn pages_need_a_session_and_carry_strict_headers() {
    let app = spawn_app().await;
    let mut web = WebClient::new(&app);
    let page = web.get("/dashboard/keys?state=active").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location(),
        "/dashboard/login?next=/dashboard/keys%3Fstate%3Dactive"
    );
    let login = web.get("/dashboard/login").await;
    assert_eq!(login.status, StatusCode::OK);
    let csp = login.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(login.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(login.headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(login.headers[header::CACHE_CONTROL], "no-store");
    assert!(!login.body.contains("<script>"), "no inline script");
    // The portal without a session: a clear page, not a crash.
    let portal = web.get("/portal/").await;
    assert_eq!(portal.status, StatusCode::UNAUTHORIZED);
    assert!(portal.body.contains("Your session has ended"));
    // Assets are served from the binary.
    assert_eq!(web.get("/assets/app.css").await.status, StatusCode::OK);
    assert_eq!(
        web.get("/assets/accent/a1b2c3.css").await.body.trim(),
        ":root { --accent: #a1b2c3; }"
    );
    assert_eq!(
        web.get("/assets/accent/red;}.css").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session() {
    let app = spawn_app().await;
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    let mut web = WebClient::new(&app);
    let wrong = web.sign_in("ann@example.com", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong email address or password."));
    let unknown = web.sign_in("nobody@example.com", PASSWORD).await;
    assert!(
        unknown.body.contains("Wrong email address or password."),
        "same answer for unknown emails"
    );
    let ok = web.sign_in("ANN@example.com", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.location(), "/dashboard/");
    let set = ok
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    let session = set.iter().find(|c| c.starts_with("kh_dashboard=")).unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/dashboard"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "no TLS here: Secure only with an https public_url"
    );
    let home = web.get("/dashboard/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("ann@example.com"));
    // The session token is not in the page; only its derived CSRF token is.
    assert!(!home.body.contains(&web.cookies["kh_dashboard"]));

    let csrf = home.csrf();
    let out = web.post("/dashboard/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(!web.cookies.contains_key("kh_dashboard"));
    // The old cookie no longer opens anything.
    let mut replay = WebClient::new(&app);
    replay.cookies.insert(
        "kh_dashboard".into(),
        ok.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .find_map(|v| {
                v.to_str()
                    .unwrap()
                    .strip_prefix("kh_dashboard=")
                    .map(|r| r.split(';').next().unwrap().to_owned())
            })
            .unwrap(),
    );
    assert_eq!(
        replay.get("/dashboard/").await.status,
        StatusCode::SEE_OTHER
    );

    let (_, audit) = app
        .send(
            Method::GET,
            "/v1/audit-events?actor=operator:ann@example.com",
            None,
        )
        .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["operator.logout", "operator.login"]);
}

#[tokio::test]
async fn sessions_end_when_idle_or_old() {
    let app = spawn_app().await;
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    let mut web = WebClient::new(&app);
    web.sign_in("ann@example.com", PASSWORD).await;
    app.clock.advance(29 * 60);
    assert_eq!(
        web.get("/dashboard/").await.status,
        StatusCode::OK,
        "still within the idle limit"
    );
    app.clock.advance(31 * 60);
    assert_eq!(
        web.get("/dashboard/").await.status,
        StatusCode::SEE_OTHER,
        "30 minutes idle"
    );

    web.sign_in("ann@example.com", PASSWORD).await;
    for _ in 0..29 {
        app.clock.advance(25 * 60);
        web.get("/dashboard/").await;
    }
    assert_eq!(
        web.get("/dashboard/").await.status,
        StatusCode::SEE_OTHER,
        "12 hours after sign-in"
    );
}

#[tokio::test]
async fn forms_without_the_right_csrf_token_are_refused() {
    let app = spawn_app().await;
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    let mut web = WebClient::new(&app);
    web.sign_in("ann@example.com", PASSWORD).await;
    let form = [("name", "Sneaky"), ("prefix", "sneaky")];
    let missing = web.post("/dashboard/keyspaces", &form).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("This form has expired"));
    let wrong = web
        .post(
            "/dashboard/keyspaces",
            &[("csrf", "AAAA"), ("name", "Sneaky"), ("prefix", "sneaky")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // Another session's token is no good either.
    let mut other = WebClient::new(&app);
    other.sign_in("ann@example.com", PASSWORD).await;
    let theirs = other.get("/dashboard/").await.csrf();
    let crossed = web
        .post(
            "/dashboard/keyspaces",
            &[("csrf", &theirs), ("name", "Sneaky"), ("prefix", "sneaky")],
        )
        .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    let (_, list) = app.send(Method::GET, "/v1/keyspaces", None).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
    // The sign-in form too: its cookie and field must match.
    let mut fresh = WebClient::new(&app);
    let login = fresh
        .post(
            "/dashboard/login",
            &[
                ("csrf", "x"),
                ("email", "ann@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
    // With the right token it works.
    let csrf = web.get("/dashboard/keyspaces").await.csrf();
    let ok = web
        .post(
            "/dashboard/keyspaces",
            &[("csrf", &csrf), ("name", "Real"), ("prefix", "real")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
}

#[tokio::test]
async fn a_viewer_reads_everything_and_changes_nothing() {
    let app = spawn_app().await;
    add_operator(&app, "vic@example.com", OperatorRole::Viewer).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "name": "prod"}))
        .await;
    let mut web = WebClient::new(&app);
    web.sign_in("vic@example.com", PASSWORD).await;
    let page = web
        .get(&format!("/dashboard/keys/{}", key.record.key_id))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("prod"));
    for action in ["/revoke\"", "/rotate\"", "/update\"", "/enabled\""] {
        assert!(
            !page.body.contains(action),
            "a viewer sees no {action} form"
        );
    }
    let keys = web.get("/dashboard/keys").await;
    assert!(
        !keys.body.contains("/dashboard/keys/new"),
        "no create button"
    );
    let csrf = page.csrf();
    for path in ["revoke", "rotate", "enabled"] {
        let refused = web
            .post(
                &format!("/dashboard/keys/{}/{path}", key.record.key_id),
                &[("csrf", &csrf), ("enabled", "false")],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(
        web.post(
            "/dashboard/keyspaces",
            &[("csrf", &csrf), ("name", "x"), ("prefix", "xx")]
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        web.get("/dashboard/keys/new").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.verify(&key.key).await.code,
        "VALID",
        "the key is untouched"
    );
    // Signing out is not a change.
    assert_eq!(
        web.post("/dashboard/logout", &[("csrf", &csrf)])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn wrong_passwords_are_throttled_per_email_and_address() {
    let app = spawn_app().await;
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    let mut web = WebClient::new(&app);
    for n in 0..10 {
        let page = web.sign_in("ann@example.com", "guess").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let throttled = web.sign_in("ann@example.com", PASSWORD).await;
    assert_eq!(
        throttled.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(throttled.body.contains("Too many failed sign-ins"));
    assert_eq!(throttled.headers[header::RETRY_AFTER], "900");
    assert!(!web.cookies.contains_key("kh_dashboard"));
    // The window slides: after 15 minutes the right password works again.
    app.clock.advance(15 * 60 + 1);
    assert_eq!(
        web.sign_in("ann@example.com", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );

    // Per address: many emails from one address.
    add_operator(&app, "bob@example.com", OperatorRole::Admin).await;
    for n in 0..50 {
        let page = web.sign_in(&format!("guess{n}@example.com"), "guess").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    assert_eq!(
        web.sign_in("bob@example.com", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn creating_a_key_shows_its_plaintext_once_and_never_again() {
    let app = spawn_app().await;
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    let ks = app.create_keyspace("acme_live").await;
    let mut web = WebClient::new(&app);
    web.sign_in("ann@example.com", PASSWORD).await;
    let csrf = web.get("/dashboard/keys/new").await.csrf();
    let created = web
        .post(
            "/dashboard/keys",
            &[
                ("csrf", &csrf),
                ("keyspace_id", &ks.id),
                ("name", "web key"),
                ("scopes", "read:orders write:orders"),
                ("rl_limit", "100"),
                ("rl_per", "60000"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let at =
        created.body.find("<code id=\"plaintext\">").unwrap() + "<code id=\"plaintext\">".len();
    let plaintext = created.body[at..].split('<').next().unwrap().to_owned();
    assert!(plaintext.starts_with("acme_live_"), "{plaintext}");
    let verified = app.verify(&plaintext).await;
    assert_eq!(verified.code, "VALID");
    let key_id = plaintext.split('_').nth(2).unwrap().to_owned();
    // No later page holds it: the key page, the lists, the audit log.
    for path in [
        format!("/dashboard/keys/{key_id}"),
        "/dashboard/keys".into(),
        "/dashboard/audit".into(),
        "/dashboard/events".into(),
        "/dashboard/".into(),
    ] {
        let page = web.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            !page.body.contains(&plaintext),
            "{path} shows the plaintext"
        );
        let secret = &plaintext[plaintext.len() - 10..];
        assert!(
            !page.body.contains(secret),
            "{path} shows part of the secret"
        );
    }
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={key_id}"),
            None,
        )
        .await;
    assert_eq!(audit["data"][0]["actor"], "operator:ann@example.com");
    assert_eq!(audit["data"][0]["action"], "key.create");
    let (_, stored) = app
        .send(Method::GET, &format!("/v1/keys/{key_id}"), None)
        .await;
    assert_eq!(stored["scopes"], json!(["read:orders", "write:orders"]));
    assert_eq!(stored["ratelimits"][0]["limit"], 100);

    // A bad form comes back with its message and what was typed, and creates nothing.
    let bad = web
        .post(
            "/dashboard/keys",
            &[
                ("csrf", &csrf),
                ("keyspace_id", &ks.id),
                ("name", "x"),
                ("scopes", "bad scope!"),
                ("rl_limit", "ten"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("Requests must be a whole number"),
        "{}",
        bad.body
    );
    // Search finds it by name, id prefix and state.
    assert!(
        web.get("/dashboard/keys?search=WEB+KEY")
            .await
            .body
            .contains(&key_id)
    );
    assert!(
        web.get(&format!("/dashboard/keys?search={}", &key_id[..6]))
            .await
            .body
            .contains(&key_id)
    );
    assert!(
        !web.get("/dashboard/keys?state=revoked")
            .await
            .body
            .contains(&key_id)
    );
}

#[tokio::test]
async fn portal_links_work_once_and_only_for_their_owner() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let a = owner(&app, "cus_a").await;
    let b = owner(&app, "cus_b").await;
    let b_key = app
        .create_key(json!({"keyspace_id": ks.id, "owner_id": b, "name": "B's key"}))
        .await;
    let link = portal_link(
        &app,
        json!({"owner_id": a, "return_url": "https://acme.example/account"}),
    )
    .await;

    let mut customer = WebClient::new(&app);
    let opened = customer.get(&link).await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    assert_eq!(opened.location(), "/portal/");
    assert!(customer.cookies.contains_key("kh_portal"));
    let home = customer.get("/portal/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.body.contains("https://acme.example/account"),
        "the way back"
    );
    assert!(!home.body.contains("B&#39;s key") && !home.body.contains("B's key"));

    // B's key answers exactly like a key that does not exist, for every action.
    let missing = customer.get("/portal/keys/Abcdefghijkm").await;
    let theirs = customer
        .get(&format!("/portal/keys/{}", b_key.record.key_id))
        .await;
    assert_eq!(
        (theirs.status, missing.status),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(theirs.body, missing.body);
    let csrf = home.csrf();
    for action in ["revoke", "rotate", "name"] {
        let refused = customer
            .post(
                &format!("/portal/keys/{}/{action}", b_key.record.key_id),
                &[("csrf", &csrf), ("name", "mine now")],
            )
            .await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{action}");
    }
    assert_eq!(app.verify(&b_key.key).await.code, "VALID");
    // Creating a key in the portal gives it to A, whatever the form says.
    let created = customer
        .post(
            "/portal/keys",
            &[
                ("csrf", &csrf),
                ("keyspace_id", &ks.id),
                ("name", "A's key"),
                ("owner_id", &b),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let (_, listed) = app
        .send(Method::GET, &format!("/v1/keys?owner_id={a}"), None)
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?actor=portal:{a}"),
            None,
        )
        .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key.create", "portal.session.start"]);

    // The link is dead now: a second opening starts nothing.
    let mut again = WebClient::new(&app);
    let reused = again.get(&link).await;
    assert_eq!(reused.status, StatusCode::GONE);
    assert!(reused.body.contains("expired or was already used"));
    assert!(again.cookies.is_empty());
    // An unopened link dies after its lifetime.
    let late = portal_link(&app, json!({"owner_id": a, "ttl_seconds": 60})).await;
    app.clock.advance(61);
    let mut slow = WebClient::new(&app);
    assert_eq!(slow.get(&late).await.status, StatusCode::GONE);
    assert!(slow.cookies.is_empty());
    assert_eq!(
        slow.get("/portal/start/not-a-token").await.status,
        StatusCode::GONE
    );
}

#[tokio::test]
async fn portal_links_are_checked_and_need_the_portal_scope() {
    let app = spawn_app().await;
    let ks = app.create_keyspace("acme_live").await;
    let other = app.create_keyspace("other").await;
    let a = owner(&app, "cus_a").await;
    for (body, needle) in [
        (json!({"owner_id": "own_nope"}), "owner_id"),
        (
            json!({"owner_id": a, "permissions": ["keys:delete"]}),
            "permissions",
        ),
        (json!({"owner_id": a, "permissions": []}), "permissions"),
        (
            json!({"owner_id": a, "keyspace_ids": ["ks_nope"]}),
            "keyspace_ids",
        ),
        (
            json!({"owner_id": a, "return_url": "javascript:alert(1)"}),
            "return_url",
        ),
        (json!({"owner_id": a, "ttl_seconds": 5}), "ttl_seconds"),
        (json!({"owner_id": a, "extra": 1}), "extra"),
    ] {
        let (status, problem) = app
            .send(Method::POST, "/v1/portal/sessions", Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{body}: {problem}"
        );
    }
    let no_scope = app.root_key(&["keys:*"], None).await;
    let (status, _) = app
        .send_as(
            &no_scope,
            Method::POST,
            "/v1/portal/sessions",
            Some(&json!({"owner_id": a})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A root key limited to keyspaces binds no keys to owners, so it makes no links; a
    // link grants nothing its maker could not do: creating keys needs `keys:write`.
    let limited = app.root_key(&["*"], Some(&[&ks.id])).await;
    let (status, _) = app
        .send_as(
            &limited,
            Method::POST,
            "/v1/portal/sessions",
            Some(&json!({"owner_id": a})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let portal_only = app.root_key(&["portal:write"], None).await;
    let (status, _) = app
        .send_as(
            &portal_only,
            Method::POST,
            "/v1/portal/sessions",
            Some(&json!({"owner_id": a})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let reader = app.root_key(&["portal:write", "keys:read"], None).await;
    let (status, _) = app
        .send_as(
            &reader,
            Method::POST,
            "/v1/portal/sessions",
            Some(&json!({"owner_id": a, "permissions": ["keys:create"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, link) = app
        .send_as(
            &reader,
            Method::POST,
            "/v1/portal/sessions",
            Some(&json!({"owner_id": a, "keyspace_ids": [ks.id], "permissions": ["keys:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let _ = &other;
    let url = link["url"].as_str().unwrap();
    let path = &url[url.find("/portal/start/").unwrap()..];
    let mut customer = WebClient::new(&app);
    customer.get(path).await;
    let home = customer.get("/portal/").await;
    assert!(
        !home.body.contains("Create a key"),
        "keys:read only: no create form"
    );
    let own = app
        .create_key(json!({"keyspace_id": ks.id, "owner_id": a, "name": "theirs"}))
        .await;
    let page = customer
        .get(&format!("/portal/keys/{}", own.record.key_id))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("Rename"),
        "read-only: nothing to change"
    );
    let renamed = customer
        .post(
            &format!("/portal/keys/{}/name", own.record.key_id),
            &[("csrf", &page.csrf()), ("name", "mine")],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::FORBIDDEN);
    let csrf = home.csrf();
    let refused = customer
        .post(
            "/portal/keys",
            &[("csrf", &csrf), ("keyspace_id", &ks.id), ("name", "x")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (_, keys) = app.send(Method::GET, "/v1/keys", None).await;
    assert_eq!(
        keys["data"].as_array().unwrap().len(),
        1,
        "only the one made through the API: {keys}"
    );
}

#[tokio::test]
async fn saving_a_form_changes_only_what_was_changed() {
    let app = spawn_app().await;
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    let limits = json!([
        {"name": "burst", "limit": 10, "duration_ms": 300000, "burst": 20},
        {"name": "daily", "limit": 1000, "duration_ms": 86400000}
    ]);
    let (status, ks) = app
        .send(
            Method::POST,
            "/v1/keyspaces",
            Some(&json!({
                "name": "odd", "prefix": "odd", "max_key_age_seconds": 129600,
                "default_grace_seconds": 1800, "ratelimits": limits
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = ks["id"].as_str().unwrap();
    let key = app
        .create_key(
            json!({"keyspace_id": id, "name": "k", "expires_at": "2099-01-01T00:00:30Z",
        "ratelimits": [{"name": "own", "limit": 5, "duration_ms": 1500}]}),
        )
        .await;
    let mut web = WebClient::new(&app);
    web.sign_in("ann@example.com", PASSWORD).await;

    // The keyspace form: only the branding is changed.
    let page = web.get(&format!("/dashboard/keyspaces/{id}")).await;
    let field = |name: &str| page.field(name);
    let mut form: Vec<(String, String)> = [
        "name",
        "max_age_days",
        "max_age_days__was",
        "grace_hours",
        "grace_hours__was",
        "warning_days",
        "warning_days__was",
        "brand_name__was",
        "brand_logo__was",
        "brand_color__was",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), field(n)))
    .collect();
    form.push(("csrf".into(), page.csrf()));
    form.push(("brand_name".into(), "Odd Co".into()));
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let saved = web
        .post(&format!("/dashboard/keyspaces/{id}"), &fields)
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let (_, after) = app
        .send(Method::GET, &format!("/v1/keyspaces/{id}"), None)
        .await;
    assert_eq!(
        after["max_key_age_seconds"], 129600,
        "not rounded to whole days"
    );
    assert_eq!(
        after["default_grace_seconds"], 1800,
        "not rounded to whole hours"
    );
    assert_eq!(
        after["ratelimits"], limits,
        "limits the form cannot show are kept"
    );
    assert_eq!(after["branding"]["name"], "Odd Co");

    // The key form: only the name is changed.
    let page = web
        .get(&format!("/dashboard/keys/{}", key.record.key_id))
        .await;
    let field = |name: &str| page.field(name);
    let mut form: Vec<(String, String)> = [
        "scopes",
        "scopes__was",
        "expires_at",
        "expires_at__was",
        "name__was",
        "rl_name",
        "rl_limit",
        "rl_limit__was",
        "rl_per__was",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), field(n)))
    .collect();
    form.push(("rl_per".into(), field("rl_per__was")));
    form.push(("csrf".into(), page.csrf()));
    form.push(("name".into(), "renamed".into()));
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let saved = web
        .post(
            &format!("/dashboard/keys/{}/update", key.record.key_id),
            &fields,
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let (_, after) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", key.record.key_id),
            None,
        )
        .await;
    assert_eq!(after["name"], "renamed");
    assert_eq!(
        after["expires_at"],
        key.record.expires_at.as_deref().unwrap(),
        "seconds kept"
    );
    assert_eq!(
        after["ratelimits"],
        json!([{"name": "own", "limit": 5, "duration_ms": 1500}]),
        "a 1.5 s period kept"
    );
}

#[tokio::test]
async fn sign_in_returns_only_to_plain_dashboard_paths_and_admins_grant_no_more_than_they_hold() {
    let app = spawn_app().await;
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    let mut web = WebClient::new(&app);
    for (next, to) in [
        ("/dashboard/keys", "/dashboard/keys"),
        ("/dashboard/\nx", "/dashboard/"),
        ("https://evil.example/", "/dashboard/"),
        ("//evil.example/dashboard/", "/dashboard/"),
    ] {
        let form = web.get("/dashboard/login").await;
        let signed = web
            .post(
                "/dashboard/login",
                &[
                    ("csrf", &form.csrf()),
                    ("email", "ann@example.com"),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(signed.location(), to, "{next:?}");
    }
    let page = web.get("/dashboard/root-keys").await;
    assert!(page.body.contains("value=\"keys:verify\""));
    assert!(
        !page.body.contains("value=\"keys:reveal\"") && !page.body.contains("value=\"*\""),
        "not offered"
    );
    for scope in ["*", "keys:reveal"] {
        let refused = web
            .post(
                "/dashboard/root-keys",
                &[("csrf", &page.csrf()), ("scopes", scope)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{scope}");
    }
    assert_eq!(
        app.store.count_root_keys().await.unwrap(),
        1,
        "none was created"
    );
}

#[tokio::test]
async fn guesses_sent_in_parallel_are_counted_before_their_password_is_checked() {
    let app = spawn_app().await;
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    let mut clients: Vec<WebClient<'_>> = (0..30).map(|_| WebClient::new(&app)).collect();
    let mut tokens = Vec::new();
    for client in &mut clients {
        tokens.push(client.get("/dashboard/login").await.csrf());
    }
    let attempts = clients
        .iter_mut()
        .zip(&tokens)
        .map(|(client, csrf)| async move {
            client
                .post(
                    "/dashboard/login",
                    &[
                        ("csrf", csrf),
                        ("email", "ann@example.com"),
                        ("password", "guess"),
                    ],
                )
                .await
                .status
        });
    let statuses = futures_join_all(attempts).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + throttled, 30, "{statuses:?}");
    assert!(
        checked <= 10,
        "{checked} passwords were checked, not at most 10"
    );
}

/// Runs the futures at once on this task.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in out.iter_mut().zip(set.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}

#[tokio::test]
async fn behind_tls_cookies_are_secure_and_portal_links_use_the_public_address() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.public_url = Some("https://keys.acme.example/".into());
    })
    .await;
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    let mut web = WebClient::new(&app);
    let signed = web.sign_in("ann@example.com", PASSWORD).await;
    let cookie = signed
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("kh_dashboard="))
        .unwrap()
        .to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    app.create_keyspace("acme").await;
    let a = owner(&app, "cus_a").await;
    let (status, link) = app
        .send(
            Method::POST,
            "/v1/portal/sessions",
            Some(&json!({"owner_id": a})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with("https://keys.acme.example/portal/start/"),
        "{link}"
    );
}

#[tokio::test]
async fn an_admin_changes_credits_and_ip_allowlists_in_the_dashboard() {
    let app = spawn_app().await;
    add_operator(&app, "ada@example.com", OperatorRole::Admin).await;
    add_operator(&app, "vic@example.com", OperatorRole::Viewer).await;
    let ks = app.create_keyspace("dash_credits").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "quota": {"remaining": 5},
            "ip_allowlist": ["192.0.2.0/24"]}))
        .await;
    let page_path = format!("/dashboard/keys/{}", key.record.key_id);
    let mut web = WebClient::new(&app);
    web.sign_in("ada@example.com", PASSWORD).await;
    let page = web.get(&page_path).await;
    assert!(page.body.contains("192.0.2.0/24"), "the allowlist is shown");
    assert!(page.body.contains("Change credits"));
    let csrf = page.csrf();

    let done = web
        .post(
            &format!("{page_path}/credits"),
            &[("csrf", &csrf), ("op", "increment"), ("amount", "3")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let (_, view) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", key.record.key_id),
            None,
        )
        .await;
    assert_eq!(view["quota"]["remaining"], 8);
    for (op, amount) in [("decrement", "9"), ("add", "1"), ("set", "-1"), ("set", "")] {
        let refused = web
            .post(
                &format!("{page_path}/credits"),
                &[("csrf", &csrf), ("op", op), ("amount", amount)],
            )
            .await;
        assert!(
            refused.status.is_client_error(),
            "{op} {amount}: {}",
            refused.status
        );
    }
    let (_, audit) = app
        .send(
            Method::GET,
            &format!(
                "/v1/audit-events?target_id={}&action=key.credits",
                key.record.key_id
            ),
            None,
        )
        .await;
    let events = audit["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["actor"], "operator:ada@example.com");

    // The allowlist, edited in the key's form (only the field that changed is written).
    let done = web
        .post(
            &format!("{page_path}/update"),
            &[
                ("csrf", &csrf),
                ("ip_allowlist", "198.51.100.7, 2001:db8::/32"),
                ("ip_allowlist__was", "192.0.2.0/24"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let (_, view) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", key.record.key_id),
            None,
        )
        .await;
    assert_eq!(
        view["ip_allowlist"],
        json!(["198.51.100.7/32", "2001:db8::/32"])
    );
    assert_eq!(view["quota"]["remaining"], 8, "the quota was left alone");
    let refused = web
        .post(
            &format!("{page_path}/update"),
            &[
                ("csrf", &csrf),
                ("ip_allowlist", "10.0.0.1/8"),
                ("ip_allowlist__was", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("write 10.0.0.0/8"),
        "{}",
        refused.body
    );

    // A viewer sees the form nowhere and may not post it.
    let mut viewer = WebClient::new(&app);
    viewer.sign_in("vic@example.com", PASSWORD).await;
    let page = viewer.get(&page_path).await;
    assert!(!page.body.contains("/credits\""));
    let refused = viewer
        .post(
            &format!("{page_path}/credits"),
            &[("csrf", &page.csrf()), ("op", "set"), ("amount", "1000")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (_, view) = app
        .send(
            Method::GET,
            &format!("/v1/keys/{}", key.record.key_id),
            None,
        )
        .await;
    assert_eq!(view["quota"]["remaining"], 8);
}

#[tokio::test]
async fn an_admin_manages_a_keyspaces_roles_in_the_dashboard() {
    let app = spawn_app().await;
    add_operator(&app, "ada@example.com", OperatorRole::Admin).await;
    add_operator(&app, "vic@example.com", OperatorRole::Viewer).await;
    let ks = app.create_keyspace("dash_roles").await;
    let key = app.create_key(json!({"keyspace_id": ks.id})).await;
    let page_path = format!("/dashboard/keyspaces/{}", ks.id);
    let mut web = WebClient::new(&app);
    web.sign_in("ada@example.com", PASSWORD).await;
    let page = web.get(&page_path).await;
    assert!(page.body.contains("No roles yet."));
    let csrf = page.csrf();
    let done = web
        .post(
            &format!("{page_path}/roles"),
            &[
                ("csrf", &csrf),
                ("name", "editor"),
                ("permissions", "documents.read, documents.write"),
                ("description", "Edits documents"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = web.get(&page_path).await;
    assert!(page.body.contains("documents.write") && page.body.contains("Edits documents"));
    // A key given the role holds its permissions; the role's change reaches it.
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/v1/keys/{}", key.record.key_id),
            Some(&json!({"roles": ["editor"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        permission_code(&app, &key.key, "documents.write").await,
        "VALID"
    );
    let done = web
        .post(
            &format!("{page_path}/roles/editor"),
            &[
                ("csrf", &csrf),
                ("permissions", "documents.read"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        permission_code(&app, &key.key, "documents.write").await,
        "INSUFFICIENT_PERMISSIONS"
    );
    // Refusals: a bad name, a viewer.
    let refused = web
        .post(
            &format!("{page_path}/roles"),
            &[("csrf", &csrf), ("name", "a/b")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let mut viewer = WebClient::new(&app);
    viewer.sign_in("vic@example.com", PASSWORD).await;
    let seen = viewer.get(&page_path).await;
    assert!(seen.body.contains("editor") && !seen.body.contains("/roles/editor/delete"));
    let refused = viewer
        .post(
            &format!("{page_path}/roles/editor/delete"),
            &[("csrf", &seen.csrf())],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Deleted by the admin.
    let done = web
        .post(
            &format!("{page_path}/roles/editor/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        permission_code(&app, &key.key, "documents.read").await,
        "INSUFFICIENT_PERMISSIONS"
    );
    assert!(web.get(&page_path).await.body.contains("No roles yet."));
}

/// The verify code of `key` asked for the permission query `query`.
async fn permission_code(app: &TestApp, key: &str, query: &str) -> String {
    let body = json!({"key": key, "permissions": query});
    let (status, answer) = app.send(Method::POST, "/v1/keys/verify", Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["code"].as_str().unwrap().to_owned()
}
