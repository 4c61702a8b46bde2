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
    let root = server.first_root_key();
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
    let root = server.first_root_key();
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

/// A 500 is logged at ERROR with what was asked (method, route template) and the request's
/// id, which the client also gets in `X-Request-Id` to quote in a report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_is_logged_with_its_method_route_and_request_id() {
    if crate::helpers::on_postgres() {
        return; // a read-only SQLite file is how this test makes writes fail
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    drop(server);
    let url = format!("sqlite://{}?mode=ro", data.join("keyhaven.db").display());
    let server = spawn_process(&data, dir.path(), &[("KEYHAVEN_DATABASE_URL", &url)]).await;
    let http = http_client();
    let failed = http
        .post(format!("{}/v1/keyspaces", server.base))
        .bearer_auth(&root)
        .header("x-request-id", "support-case-42")
        .json(&json!({"name": "a", "prefix": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    assert_eq!(failed.headers()["x-request-id"], "support-case-42");
    let problem: serde_json::Value = failed.json().await.unwrap();
    assert!(
        !problem.to_string().contains("readonly"),
        "the cause stays in the log: {problem}"
    );

    // Ids a client sends that are not plain tokens are replaced, never echoed.
    let other = http
        .get(format!("{}/v1/keyspaces", server.base))
        .bearer_auth(&root)
        .header("x-request-id", "a b\"<script>")
        .send()
        .await
        .unwrap();
    let generated = other.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        !generated.is_empty() && !generated.contains(' ') && generated != "a b\"<script>",
        "{generated}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(&server.log_path).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("request failed"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("method=POST"), "{line}");
    assert!(line.contains("route=\"/v1/keyspaces\""), "{line}");
    assert!(line.contains("status=500"), "{line}");
    assert!(line.contains("request_id=\"support-case-42\""), "{line}");
    assert!(line.contains("readonly"), "the cause: {line}");
    assert!(
        !log.contains(&root[root.len() - 20..]),
        "no secret in the log"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("request_id=\"{generated}\""))),
        "the access line names the generated id:\n{log}"
    );
}

/// `verify_log_every`: one line per sampled verification with the key id, keyspace,
/// outcome and client address, never the secret; off by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_log_names_key_outcome_and_client_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[("KEYHAVEN_VERIFY_LOG_EVERY", "1")]).await;
    let root = server.first_root_key();
    let http = http_client();
    let base = &server.base;
    let ks = post_json(
        &http,
        &format!("{base}/v1/keyspaces"),
        &root,
        &json!({"name": "a", "prefix": "acme"}),
    )
    .await;
    let created = post_json(
        &http,
        &format!("{base}/v1/keys"),
        &root,
        &json!({"keyspace_id": ks["id"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    let wrong = crate::helpers::with_wrong_secret(&key, "acme");
    for (presented, ip) in [(&key, "203.0.113.7"), (&wrong, "198.51.100.9")] {
        post_json(
            &http,
            &format!("{base}/v1/keys/verify"),
            &root,
            &json!({"key": presented, "client_ip": ip}),
        )
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(&server.log_path).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("keyhaven::verify") && l.contains("verification"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains(&format!("key_id=\"{key_id}\"")),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(&format!("keyspace_id=\"{}\"", ks["id"].as_str().unwrap())));
    assert!(lines[0].contains("outcome=\"VALID\""), "{}", lines[0]);
    assert!(
        lines[0].contains("client_ip=\"203.0.113.7\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&format!("key_id=\"{key_id}\"")),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("outcome=\"NOT_FOUND\""), "{}", lines[1]);
    assert!(
        lines[1].contains("client_ip=\"198.51.100.9\""),
        "{}",
        lines[1]
    );
    for secret in [&key[key.len() - 20..], &wrong[wrong.len() - 20..]] {
        assert!(!log.contains(secret), "no secret in the log");
    }
    drop(server);

    // Off by default.
    let server = spawn_process(&data, dir.path(), &[]).await;
    post_json(
        &http,
        &format!("{}/v1/keys/verify", server.base),
        &root,
        &json!({"key": key}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(&server.log_path).unwrap();
    assert!(!log.contains("keyhaven::verify"), "{log}");
}
