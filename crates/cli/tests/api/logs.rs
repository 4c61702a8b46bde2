//! What `keyhaven serve` writes to its log: one access line per request (route template,
//! status, latency, the presented key's public id, never a secret), plain text when the
//! log is not a terminal, and a warning for a mistyped `KEYHAVEN_*` variable.

use serde_json::json;

use crate::helpers::{http_client, post_json, spawn_process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_an_access_line_per_request_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(
        &data,
        dir.path(),
        &[("KEYHAVEN_WEBHOOK_ALLOW_PRIVAT_TARGETS", "true")],
    )
    .await;
    let root = server.printed_root_key();
    let http = http_client();
    post_json(
        &http,
        &format!("{}/v1/keyspaces", server.base),
        &root,
        &json!({"name": "a", "prefix": "acme"}),
    )
    .await;
    let wrong = format!("{}X", &root[..root.len() - 1]);
    let refused = http
        .get(format!("{}/v1/keyspaces", server.base))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(&server.log_path).unwrap();
    let root_id = keyhaven_core::parse(&root).unwrap().key_id().to_owned();
    let created = log
        .lines()
        .find(|l| {
            l.contains("request")
                && l.contains("route=\"/v1/keyspaces\"")
                && l.contains("status=201")
        })
        .unwrap_or_else(|| panic!("no access line:\n{log}"));
    assert!(
        created.contains("method=POST") && created.contains(&format!("key_id=\"{root_id}\"")),
        "{created}"
    );
    assert!(created.contains("latency_us="), "{created}");
    assert!(
        log.lines()
            .any(|l| l.contains("route=\"/v1/keyspaces\"") && l.contains("status=401")),
        "{log}"
    );
    let secret = &root[root.len() - 20..];
    assert!(!log.contains(secret), "the log holds a secret");
    assert!(!log.contains('\u{1b}'), "no colour codes in a file");
    assert!(
        log.contains("unknown KEYHAVEN_* environment variable ignored")
            && log.contains("KEYHAVEN_WEBHOOK_ALLOW_PRIVAT_TARGETS"),
        "the typo is reported:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_webhook_delivery_is_logged_as_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(
        &data,
        dir.path(),
        &[("KEYHAVEN_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")],
    )
    .await;
    let root = server.printed_root_key();
    let http = http_client();
    let closed = crate::helpers::free_port();
    let hook = post_json(
        &http,
        &format!("{}/v1/webhooks", server.base),
        &root,
        &json!({"url": format!("http://127.0.0.1:{closed}/hook")}),
    )
    .await;
    let ks = post_json(
        &http,
        &format!("{}/v1/keyspaces", server.base),
        &root,
        &json!({"name": "a", "prefix": "acme"}),
    )
    .await;
    post_json(
        &http,
        &format!("{}/v1/keys", server.base),
        &root,
        &json!({"keyspace_id": ks["id"]}),
    )
    .await;
    let mut log = String::new();
    for _ in 0..200 {
        log = std::fs::read_to_string(&server.log_path).unwrap();
        if log.contains("webhook delivery failed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = log
        .lines()
        .find(|l| l.contains("webhook delivery failed"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(hook["id"].as_str().unwrap()), "{line}");
    assert!(
        !line.contains(hook["secret"].as_str().unwrap()),
        "never the signing secret"
    );
}
