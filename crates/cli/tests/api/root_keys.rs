//! `/v1/root-keys`: root keys listed, created no broader than their creator, revoked
//! (refused on their next call) and rotated with a grace period.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

async fn verify_status(app: &crate::helpers::TestApp, root: &str) -> StatusCode {
    let (status, _) = app
        .send_as(
            root,
            Method::POST,
            "/v1/keys/verify",
            Some(&json!({"key": "acme_x"})),
        )
        .await;
    status
}

#[tokio::test]
async fn root_keys_are_created_no_broader_than_their_creator() {
    let app = spawn_app().await;
    let (status, list) = app.send(Method::GET, "/v1/root-keys", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "the first key");
    assert!(
        list["data"][0]["start"]
            .as_str()
            .unwrap()
            .starts_with("kh_root_")
    );
    assert!(
        !list.to_string().contains(&app.root_key[12..]),
        "never the secret"
    );

    let (status, created) = app
        .send(
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify", "root_keys:*"], "name": "billing"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let narrow = created["key"].as_str().unwrap().to_owned();
    assert!(narrow.starts_with("kh_root_"));
    assert_eq!(created["scopes"], json!(["keys:verify", "root_keys:*"]));
    assert_eq!(verify_status(&app, &narrow).await, StatusCode::OK);
    let (status, _) = app
        .send_as(&narrow, Method::GET, "/v1/keyspaces", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only its scopes");

    // It may hand out its own scopes, and nothing more.
    for scopes in [
        json!(["*"]),
        json!(["keys:reveal"]),
        json!(["keys:read"]),
        json!(["keys:*"]),
    ] {
        let (status, body) = app
            .send_as(
                &narrow,
                Method::POST,
                "/v1/root-keys",
                Some(&json!({"scopes": scopes})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{scopes}: {body}");
    }
    let (status, _) = app
        .send_as(
            &narrow,
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // A key limited to keyspaces manages no root keys; one without the scope neither.
    let ks = app.create_keyspace("acme").await;
    let limited = app.root_key(&["*"], Some(&[&ks.id])).await;
    let verify_only = app.root_key(&["keys:verify"], None).await;
    for key in [&limited, &verify_only] {
        let (status, _) = app.send_as(key, Method::GET, "/v1/root-keys", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Bad input: a clear 400 and nothing stored.
    for body in [
        json!({"scopes": []}),
        json!({"scopes": ["keys:everything"]}),
        json!({"scopes": ["keys:verify"], "expires_at": "2000-01-01T00:00:00Z"}),
        json!({"scopes": ["keys:verify"], "keyspace_ids": ["ks_nope"]}),
        json!({"scopes": ["keys:verify"], "nope": 1}),
    ] {
        let (status, _) = app.send(Method::POST, "/v1/root-keys", Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(app.store.count_root_keys().await.unwrap(), 5);
}

#[tokio::test]
async fn a_revoked_root_key_is_refused_on_its_next_call() {
    let app = spawn_app().await;
    let (_, created) = app
        .send(
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify"]})),
        )
        .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["key_id"].as_str().unwrap().to_owned();
    assert_eq!(
        verify_status(&app, &key).await,
        StatusCode::OK,
        "cached as valid"
    );
    let (status, revoked) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{id}/revoke"),
            Some(&json!({"reason": "left the team"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["revoked_reason"], "left the team");
    assert_eq!(verify_status(&app, &key).await, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{id}/revoke"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "already revoked");
    // A normal key's id is no root key's.
    let ks = app.create_keyspace("acme").await;
    let normal = app.create_key(json!({"keyspace_id": ks.id})).await;
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{}/revoke", normal.record.key_id),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, audit) = app
        .send(
            Method::GET,
            &format!("/v1/audit-events?target_id={id}"),
            None,
        )
        .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["root_key.revoke", "root_key.create"]);
}

#[tokio::test]
async fn rotation_keeps_the_old_root_key_for_its_grace_period_and_expiry_ends_a_key() {
    let app = spawn_app_with(|c| c.usage_flush_interval_ms = 100).await;
    let (_, created) = app
        .send(
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify"], "name": "ci"})),
        )
        .await;
    let old = created["key"].as_str().unwrap().to_owned();
    let id = created["key_id"].as_str().unwrap().to_owned();
    let (status, rotated) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{id}/rotate"),
            Some(&json!({"grace_period_seconds": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["name"], "ci");
    assert_eq!(rotated["scopes"], json!(["keys:verify"]));
    assert_eq!(rotated["rotated_from"], Value::String(id.clone()));
    assert_eq!(verify_status(&app, &new).await, StatusCode::OK);
    assert_eq!(
        verify_status(&app, &old).await,
        StatusCode::OK,
        "within the grace period"
    );
    app.clock.advance(3601);
    assert_eq!(
        verify_status(&app, &old).await,
        StatusCode::UNAUTHORIZED,
        "after it"
    );
    assert_eq!(verify_status(&app, &new).await, StatusCode::OK);

    // Last use is recorded.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let new_id = rotated["key_id"].as_str().unwrap();
    let (_, got) = app
        .send(Method::GET, &format!("/v1/root-keys/{new_id}"), None)
        .await;
    assert!(got["last_used_at"].is_string(), "{got}");

    // An expiring root key stops at its expiry.
    let at = keyhaven_service::validate::rfc3339(app.clock.now() + time::Duration::seconds(60));
    let (_, brief) = app
        .send(
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify"], "expires_at": at})),
        )
        .await;
    let brief = brief["key"].as_str().unwrap().to_owned();
    assert_eq!(verify_status(&app, &brief).await, StatusCode::OK);
    app.clock.advance(61);
    assert_eq!(verify_status(&app, &brief).await, StatusCode::UNAUTHORIZED);
}

/// Under a service manager or in a container stdout is often kept in a log: the first
/// root key goes to a private file in the data directory, and stdout says where.
#[tokio::test]
async fn the_first_root_key_goes_to_a_private_file_when_stdout_is_not_a_terminal() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = crate::helpers::spawn_process(&data, logs.path(), &[]).await;
    let file = data.join("initial-root-key");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let root = server.first_root_key();

    let welcome = wait_for_text(&server.stdout_path, "ROOT_KEY=").await;
    assert!(
        !welcome.contains(&root),
        "stdout never holds the key:\n{welcome}"
    );
    assert!(!welcome.contains("kh_root_"), "{welcome}");
    assert!(welcome.contains(&file.display().to_string()), "{welcome}");
    assert!(
        welcome.contains(&format!("ROOT_KEY=$(cat '{}')", file.display())),
        "{welcome}"
    );
    let log = std::fs::read_to_string(&server.log_path).unwrap();
    assert!(log.contains("first root key written"), "{log}");
    assert!(!log.contains(&root[8..]), "{log}");

    let status = server.get_status(&root, "/v1/keyspaces").await;
    assert_eq!(status, StatusCode::OK, "the key in the file works");

    // A restart makes no new key and leaves the file alone.
    drop(server);
    let again = crate::helpers::spawn_process(&data, logs.path(), &[]).await;
    assert_eq!(again.first_root_key(), root);
    let out = std::fs::read_to_string(&again.stdout_path).unwrap();
    assert!(!out.contains("ROOT_KEY"), "{out}");
}

/// On a terminal the key is shown once, and no file is written.
#[tokio::test]
async fn on_a_terminal_the_first_root_key_is_shown_and_not_saved() {
    if crate::helpers::on_postgres() {
        return; // the file-or-terminal choice does not depend on the engine
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out_path = dir.path().join("terminal.out");
    let port = crate::helpers::free_port();
    // `script` runs the server on a pseudo-terminal and copies what it prints.
    let command = format!(
        "exec '{}' serve --data-dir '{}' --listen 127.0.0.1:{port}",
        env!("CARGO_BIN_EXE_keyhaven"),
        data.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-q", "-e", "-f", "-c", &command])
        .arg(&out_path)
        .env_remove("KEYHAVEN_DATABASE_URL")
        .env_remove("KEYHAVEN_PEPPER")
        .env_remove("KEYHAVEN_MASTER_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("script (util-linux) runs the server on a pseudo-terminal");
    let shown = wait_for_text(&out_path, "ROOT_KEY=kh_root_").await;
    let _ = child.kill();
    let _ = std::process::Command::new("pkill")
        .args(["-f", &data.display().to_string()])
        .status();
    let _ = child.wait();
    assert!(shown.contains("It is shown once"), "{shown}");
    assert!(
        !data.join("initial-root-key").exists(),
        "nothing saved when the key was shown"
    );
}

/// What `path` holds once it contains `needle` (within 15 s).
async fn wait_for_text(path: &std::path::Path, needle: &str) -> String {
    for _ in 0..300 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "{} never held {needle:?}: {}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

#[tokio::test]
async fn a_mandatory_maximum_age_ends_every_root_key_and_caps_new_ones() {
    let app = spawn_app_with(|c| c.root_key_max_age_seconds = Some(3600)).await;
    let (status, created) = app
        .send(
            Method::POST,
            "/v1/root-keys",
            Some(&json!({"scopes": ["keys:verify"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let capped = keyhaven_service::validate::rfc3339(app.clock.now() + time::Duration::hours(1));
    assert_eq!(created["expires_at"], capped.as_str(), "{created}");
    let made = created["key"].as_str().unwrap().to_owned();
    assert_eq!(verify_status(&app, &made).await, StatusCode::OK);
    // A rotation's successor is capped from its own creation.
    let id = created["key_id"].as_str().unwrap();
    let (status, rotated) = app
        .send(
            Method::POST,
            &format!("/v1/root-keys/{id}/rotate"),
            Some(&json!({"grace_period_seconds": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["expires_at"], capped.as_str(), "{rotated}");
    assert_eq!(verify_status(&app, &app.root_key).await, StatusCode::OK);
    app.clock.advance(3601);
    // The first root key had no expiry of its own: the deployment's maximum ends it.
    assert_eq!(
        verify_status(&app, &app.root_key).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(verify_status(&app, &made).await, StatusCode::UNAUTHORIZED);
}
