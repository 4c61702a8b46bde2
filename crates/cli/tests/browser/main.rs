//! The dashboard and the customer portal in a real headless Chromium (Debian's
//! `chromium`, driven through `chromedriver` over WebDriver): the flows an operator and a
//! customer go through, clicked and typed as a person would, against a real server on a
//! real socket. Screenshots of each main page are saved under `target/screenshots/`.
//!
//! Without chromium and chromedriver the suite says so and passes, except under CI
//! (`CI=true`), where a missing browser is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use helpers::{TestApp, spawn_app};
use keyhaven_service::{Actor, operators};
use keyhaven_store::OperatorRole;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const CHROMIUM: &str = "/usr/bin/chromium";

fn find_chromedriver() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A chromedriver process and a browser session through it.
struct Browser {
    client: Client,
    driver: Child,
    base: String,
    shots: PathBuf,
}

impl Drop for Browser {
    /// Ends chromedriver and every browser process it started (its process group), even
    /// when a failed test never closed the session.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn browser(base: &str) -> Option<Browser> {
    let (Some(driver_bin), true) = (find_chromedriver(), Path::new(CHROMIUM).exists()) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium and chromedriver are required under CI (apt-get install chromium chromium-driver)"
        );
        println!("SKIPPED: the browser suite needs chromium and chromedriver");
        return None;
    };
    let port = helpers::free_port();
    let driver = Command::new(driver_bin)
        .arg(format!("--port={port}"))
        // A process group of its own, so the browsers it starts end with it.
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--hide-scrollbars", "--lang=en-US"]
        }
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                let shots =
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
                std::fs::create_dir_all(&shots).unwrap();
                return Some(Browser {
                    client,
                    driver,
                    base: base.to_owned(),
                    shots,
                });
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start a session: {last:?}");
}

impl Browser {
    async fn go(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn fill(&self, name: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("[name='{name}']")))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn select(&self, name: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("select[name='{name}']")))
            .await
            .unwrap();
        field.select_by_value(value).await.unwrap();
    }

    /// Clicks the button, link or disclosure with this text; when that navigates (a link,
    /// a submit button), waits until the new page has replaced the old one.
    async fn click(&self, text: &str) {
        let xpath = format!(
            "//button[normalize-space()='{text}'] | //a[normalize-space()='{text}'] | //summary[normalize-space()='{text}']"
        );
        let element = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no `{text}` to click: {e}"));
        let navigates = element.tag_name().await.unwrap() != "summary"
            && element.attr("type").await.unwrap().as_deref() != Some("button");
        element.click().await.unwrap();
        if navigates {
            for _ in 0..200 {
                if element.tag_name().await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            self.client
                .wait()
                .for_element(Locator::Css("body"))
                .await
                .unwrap();
        }
    }

    async fn has(&self, text: &str) -> bool {
        let xpath = format!(
            "//button[normalize-space()='{text}'] | //a[normalize-space()='{text}'] | //summary[normalize-space()='{text}']"
        );
        !self
            .client
            .find_all(Locator::XPath(&xpath))
            .await
            .unwrap()
            .is_empty()
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn heading(&self) -> String {
        self.text("h1").await
    }

    async fn body(&self) -> String {
        self.text("body").await
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn sign_in(&self, email: &str, password: &str) {
        self.go("/dashboard/login").await;
        self.fill("email", email).await;
        self.fill("password", password).await;
        self.click("Sign in").await;
    }

    /// POSTs a form from the page's own origin with `fetch` (as a forged or scripted
    /// request would), returning the status.
    async fn post_from_page(&self, path: &str, body: &str) -> u64 {
        let status = self
            .client
            .execute_async(
                "const [path, body, done] = arguments; \
                 fetch(path, {method: 'POST', body, redirect: 'manual', \
                   headers: {'Content-Type': 'application/x-www-form-urlencoded'}}) \
                 .then(r => done(r.status), e => done(String(e)));",
                vec![json!(path), json!(body)],
            )
            .await
            .unwrap();
        status
            .as_u64()
            .unwrap_or_else(|| panic!("fetch failed: {status}"))
    }

    /// Every visible form field has a label, and the page is no wider than the window.
    async fn check_accessible_layout(&self, width: u64) {
        let report = self
            .client
            .execute(
                "const unlabelled = [...document.querySelectorAll('input,select,textarea')] \
                   .filter(e => e.type !== 'hidden' && !e.closest('label') && !e.getAttribute('aria-label')) \
                   .map(e => e.name); \
                 return {unlabelled, width: document.documentElement.scrollWidth};",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            report["unlabelled"],
            json!([]),
            "fields without a label on {}",
            self.path().await
        );
        let scroll = report["width"].as_u64().unwrap();
        assert!(
            scroll <= width,
            "{} is {scroll}px wide in a {width}px window",
            self.path().await
        );
    }
}

async fn add_operator(app: &TestApp, email: &str, role: OperatorRole) {
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

async fn verify_code(app: &TestApp, key: &str) -> String {
    app.verify(key).await.code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_creates_rotates_and_revokes_a_key_in_the_browser() {
    let app = helpers::spawn_app_with(|c| c.usage_flush_interval_ms = 100).await;
    let Some(b) = browser(&app.base).await else {
        return;
    };
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;

    // Sign in.
    b.go("/dashboard/").await;
    assert!(
        b.path().await.starts_with("/dashboard/login"),
        "sent to sign in"
    );
    b.shot("01-sign-in").await;
    b.sign_in("ann@example.com", PASSWORD).await;
    assert_eq!(b.path().await, "/dashboard/");
    assert_eq!(b.heading().await, "Overview");

    // A keyspace.
    b.go("/dashboard/keyspaces").await;
    b.fill("name", "Acme live").await;
    b.fill("prefix", "acme_live").await;
    b.fill("grace_hours", "24").await;
    b.fill("rl_limit", "1000").await;
    b.check_accessible_layout(1280).await;
    b.click("Create keyspace").await;
    assert_eq!(b.heading().await, "Acme live");
    assert!(b.body().await.contains("Created."));
    b.shot("03-keyspace").await;

    // A key, its plaintext copied from the page.
    b.go("/dashboard/keys/new").await;
    b.fill("name", "Production server").await;
    b.fill("scopes", "read:orders write:orders").await;
    b.check_accessible_layout(1280).await;
    b.shot("04-create-key").await;
    b.click("Create key").await;
    assert_eq!(b.heading().await, "Key created");
    let warning = b.text("[role=alert]").await;
    assert!(warning.contains("shown only this once"), "{warning}");
    let plaintext = b.text("#plaintext").await;
    assert!(plaintext.starts_with("acme_live_"), "{plaintext}");
    b.click("Copy").await;
    b.client
        .wait()
        .for_element(Locator::XPath("//button[@data-copy and (normalize-space()='Copied' or starts-with(normalize-space(), 'Selected'))]"))
        .await
        .unwrap();
    b.shot("05-key-created").await;
    assert_eq!(verify_code(&app, &plaintext).await, "VALID");
    let key_id = plaintext.split('_').nth(2).unwrap().to_owned();

    // Its page never shows the plaintext again.
    b.click("I have copied it: show the key").await;
    assert_eq!(b.path().await, format!("/dashboard/keys/{key_id}"));
    assert!(!b.client.source().await.unwrap().contains(&plaintext));

    // Rotate with a grace period: both keys verify until it ends.
    b.click("Rotate…").await;
    b.select("grace", "3600").await;
    b.click("Rotate key").await;
    assert_eq!(b.heading().await, "Key rotated");
    let successor = b.text("#plaintext").await;
    assert_ne!(successor, plaintext);
    assert_eq!(verify_code(&app, &successor).await, "VALID");
    assert_eq!(
        verify_code(&app, &plaintext).await,
        "VALID",
        "within the grace period"
    );
    b.click("I have copied it: show the new key").await;
    let successor_id = successor.split('_').nth(2).unwrap().to_owned();
    assert!(
        b.body().await.contains(&key_id),
        "the rotation chain names the old key"
    );

    // Revoke the new key with a reason.
    b.click("Revoke…").await;
    b.fill("reason", "leaked in a log").await;
    b.click("Revoke key").await;
    assert!(b.body().await.contains("The key was revoked"));
    assert_eq!(verify_code(&app, &successor).await, "REVOKED");
    b.shot("07-key-revoked").await;

    // Disable and enable the old key.
    b.go(&format!("/dashboard/keys/{key_id}")).await;
    assert!(
        !b.body().await.contains("No verifications in this period"),
        "its verifications are charted"
    );
    b.select("range", "7d").await;
    b.click("Show").await;
    assert!(b.body().await.contains("per hour, last 7 days"));
    assert!(b.path().await.ends_with("?range=7d"));
    b.click("Disable").await;
    assert_eq!(verify_code(&app, &plaintext).await, "DISABLED");
    b.click("Enable").await;
    assert_eq!(verify_code(&app, &plaintext).await, "VALID");

    // The list finds keys by state and name.
    b.go("/dashboard/keys").await;
    b.select("state", "revoked").await;
    b.click("Apply").await;
    let listed = b.body().await;
    assert!(
        listed.contains(&successor_id) && !listed.contains(&key_id),
        "{listed}"
    );
    b.go("/dashboard/keys?search=production").await;
    b.shot("08-keys").await;

    // The audit log names the operator for every change.
    b.go("/dashboard/audit?actor=operator%3Aann%40example.com")
        .await;
    let audit = b.body().await;
    for action in [
        "keyspace.create",
        "key.create",
        "key.rotate",
        "key.revoke",
        "key.update",
        "operator.login",
    ] {
        assert!(
            audit.contains(action),
            "{action} missing from the audit page"
        );
    }
    assert!(!audit.contains(&plaintext[plaintext.len() - 12..]));
    b.shot("09-audit").await;
    b.go("/dashboard/events").await;
    b.shot("10-events").await;
    b.go("/dashboard/").await;
    b.shot("02-overview").await;

    // Root keys: created (shown once), listed, revoked.
    b.go("/dashboard/root-keys").await;
    b.fill("name", "billing service").await;
    b.client
        .find(Locator::Css("input[name=scopes][value='keys:verify']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.click("Create root key").await;
    let root = b.text("#plaintext").await;
    assert!(root.starts_with("kh_root_"));
    assert_eq!(verify_code(&app, &plaintext).await, "VALID");
    let (status, _) = app
        .send_as(
            &root,
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": plaintext})),
        )
        .await;
    assert_eq!(status, 200, "the new root key works");
    b.click("I have copied it: back to root keys").await;
    b.click("Revoke…").await;
    b.click("Revoke").await;
    let (status, _) = app
        .send_as(
            &root,
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": plaintext})),
        )
        .await;
    assert_eq!(status, 401, "a revoked root key no longer authenticates");
    b.shot("11-root-keys").await;

    // Webhooks and owners pages render.
    b.go("/dashboard/webhooks").await;
    b.shot("12-webhooks").await;
    b.go("/dashboard/owners").await;
    b.shot("13-owners").await;

    // At 375 px wide nothing overflows.
    b.client.set_window_size(375, 800).await.unwrap();
    for path in [
        "/dashboard/",
        &format!("/dashboard/keys/{key_id}"),
        "/dashboard/keys",
        "/dashboard/audit",
    ] {
        b.go(path).await;
        b.check_accessible_layout(375).await;
    }
    b.go(&format!("/dashboard/keys/{key_id}")).await;
    b.shot("14-key-mobile").await;
    b.client.set_window_size(1280, 1400).await.unwrap();
    b.go(&format!("/dashboard/keys/{key_id}")).await;
    b.shot("06-key").await;

    // A forged form (no CSRF token) is refused, and so is one with a wrong token.
    b.client.set_window_size(1280, 1000).await.unwrap();
    b.go("/dashboard/").await;
    assert_eq!(
        b.post_from_page(&format!("/dashboard/keys/{key_id}/revoke"), "reason=forged")
            .await,
        403
    );
    assert_eq!(
        b.post_from_page(
            &format!("/dashboard/keys/{key_id}/revoke"),
            "csrf=wrong&reason=forged"
        )
        .await,
        403
    );
    assert_eq!(verify_code(&app, &plaintext).await, "VALID");

    // Sign out.
    b.click("Sign out").await;
    assert!(b.path().await.starts_with("/dashboard/login"));
    b.go("/dashboard/keys").await;
    assert!(b.path().await.starts_with("/dashboard/login"));
    b.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_buttons_and_cannot_post() {
    let app = spawn_app().await;
    let Some(b) = browser(&app.base).await else {
        return;
    };
    add_operator(&app, "vic@example.com", OperatorRole::Viewer).await;
    let ks = app.create_keyspace("acme_live").await;
    let key = app
        .create_key(json!({"keyspace_id": ks.id, "name": "prod"}))
        .await;
    b.sign_in("vic@example.com", PASSWORD).await;
    assert_eq!(b.heading().await, "Overview");
    assert!(!b.has("Create key").await);
    b.go(&format!("/dashboard/keys/{}", key.record.key_id))
        .await;
    assert_eq!(b.heading().await, "prod active");
    for button in ["Rotate…", "Revoke…", "Disable", "Edit…"] {
        assert!(!b.has(button).await, "a viewer sees {button}");
    }
    b.shot("15-viewer-key").await;
    b.go("/dashboard/keyspaces").await;
    assert!(!b.has("Create keyspace").await);
    b.go("/dashboard/root-keys").await;
    assert!(!b.has("Create root key").await);
    // Even with a valid CSRF token, a viewer's POST is refused.
    b.go(&format!("/dashboard/keys/{}", key.record.key_id))
        .await;
    let csrf = b
        .client
        .find(Locator::Css("input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.post_from_page(
            &format!("/dashboard/keys/{}/revoke", key.record.key_id),
            &format!("csrf={csrf}")
        )
        .await,
        403
    );
    assert_eq!(verify_code(&app, &key.key).await, "VALID");
    b.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_wrong_passwords_throttle_sign_in() {
    let app = spawn_app().await;
    let Some(b) = browser(&app.base).await else {
        return;
    };
    add_operator(&app, "ann@example.com", OperatorRole::Admin).await;
    for _ in 0..10 {
        b.sign_in("ann@example.com", "wrong password").await;
        assert!(b.body().await.contains("Wrong email address or password."));
    }
    b.sign_in("ann@example.com", PASSWORD).await;
    assert!(
        b.body().await.contains("Too many failed sign-ins"),
        "throttled, even with the right password"
    );
    assert!(b.path().await.starts_with("/dashboard/login"));
    b.shot("16-sign-in-throttled").await;
    b.client.clone().close().await.unwrap();
}

async fn portal_path(app: &TestApp, body: Value) -> String {
    let (status, answer) = app
        .send(Method::POST, "/v1/portal/sessions", Some(&body))
        .await;
    assert_eq!(status, 201, "{answer}");
    let url = answer["url"].as_str().unwrap();
    url[url.find("/portal/start/").unwrap()..].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_manages_their_own_keys_in_the_portal() {
    let app = spawn_app().await;
    let Some(b) = browser(&app.base).await else {
        return;
    };
    let (_, ks) = app
        .send(
            Method::POST,
            "/v1/keyspaces",
            Some(&json!({
                "name": "Acme live", "prefix": "acme_live", "default_grace_seconds": 3600,
                "branding": {"name": "Acme", "accent_color": "#0f766e"}
            })),
        )
        .await;
    let ks_id = ks["id"].as_str().unwrap().to_owned();
    let (_, a) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "cus_a"})),
        )
        .await;
    let (_, other) = app
        .send(
            Method::POST,
            "/v1/owners",
            Some(&json!({"external_id": "cus_b"})),
        )
        .await;
    let b_key = app
        .create_key(json!({"keyspace_id": ks_id, "owner_id": other["id"], "name": "B's key"}))
        .await;
    let link = portal_path(
        &app,
        json!({"owner_id": a["id"], "return_url": "https://acme.example/account"}),
    )
    .await;

    b.go(&link).await;
    assert_eq!(b.path().await, "/portal/");
    assert_eq!(b.heading().await, "Your API keys");
    assert!(b.has("Back to Acme").await);
    assert!(!b.body().await.contains("B's key"));
    let accent = b
        .client
        .execute(
            "return getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(accent, json!("#0f766e"), "the keyspace's accent colour");

    // Create a key: shown once, with its copy button.
    b.fill("name", "My laptop").await;
    b.click("Create key").await;
    assert_eq!(b.heading().await, "Your new key");
    let plaintext = b.text("#plaintext").await;
    assert!(b.has("Copy").await);
    assert_eq!(verify_code(&app, &plaintext).await, "VALID");
    let verified = app.verify(&plaintext).await;
    assert_eq!(
        verified.owner.as_ref().map(|o| o.id.as_str()),
        a["id"].as_str(),
        "the key is the customer's"
    );
    b.shot("17-portal-key-created").await;
    b.click("I have copied it").await;
    assert!(!b.client.source().await.unwrap().contains(&plaintext));

    // Revoke it.
    b.click("Revoke…").await;
    b.click("Revoke key").await;
    assert!(b.body().await.contains("The key was revoked"));
    assert_eq!(verify_code(&app, &plaintext).await, "REVOKED");
    b.go("/portal/").await;
    b.shot("18-portal").await;

    // Another owner's key id typed into the URL: the same page as a key that does not exist.
    b.go(&format!("/portal/keys/{}", b_key.record.key_id)).await;
    let theirs = b.body().await;
    b.go("/portal/keys/Abcdefghijkm").await;
    let nobody = b.body().await;
    assert_eq!(theirs, nobody);
    assert!(theirs.contains("Not found"));
    b.shot("19-portal-not-found").await;

    // The link was single-use: opening it again starts nothing.
    b.client.delete_all_cookies().await.unwrap();
    b.go(&link).await;
    assert_eq!(
        b.heading().await,
        "This link has expired or was already used"
    );
    b.shot("20-portal-link-used").await;
    b.go("/portal/").await;
    assert_eq!(b.heading().await, "Your session has ended");

    let (_, audit) = app
        .send(
            Method::GET,
            &format!(
                "/v1/audit-events?actor=portal:{}",
                a["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["key.revoke", "key.create", "portal.session.start"]
    );
    b.client.clone().close().await.unwrap();
}
