//! Pepper rotation end to end: rotate, old keys keep verifying and move to the newest
//! version on use, the old version is retired once unused.

use std::path::Path;

use serde_json::{Value, json};

use crate::helpers::*;

async fn pepper_version(data: &Path, key_id: &str) -> i64 {
    let store = store_for(data).await;
    let key = store.key_for_verify(key_id).await.unwrap().unwrap();
    i64::from(key.key.verifier.version().get())
}

#[tokio::test]
async fn rotated_pepper_keeps_old_keys_working_and_migrates_them_on_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    let ks = post_to(
        &server.base,
        &root,
        "/v1/keyspaces",
        json!({"name": "p", "prefix": "pep"}),
    )
    .await;
    let old = post_to(
        &server.base,
        &root,
        "/v1/keys",
        json!({"keyspace_id": ks["id"]}),
    )
    .await;
    let old_id = old["key_id"].as_str().unwrap().to_owned();
    drop(server);
    assert_eq!(pepper_version(&data, &old_id).await, 1);

    let (ok, stdout, stderr) = run_keyhaven(&data, &["pepper", "rotate"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("pepper version 2"), "{stdout}");
    let (ok, _, stderr) = run_keyhaven(&data, &["pepper", "retire", "1"]).await;
    assert!(!ok, "version 1 is still in use");
    assert!(stderr.contains("still use pepper version 1"), "{stderr}");

    let server = spawn_process(&data, dir.path(), &[]).await;
    let v = post_to(
        &server.base,
        &root,
        "/v1/keys/verify",
        json!({"key": old["key"]}),
    )
    .await;
    assert_eq!(v["code"], "VALID");
    let new = post_to(
        &server.base,
        &root,
        "/v1/keys",
        json!({"keyspace_id": ks["id"]}),
    )
    .await;
    assert_eq!(
        pepper_version(&data, new["key_id"].as_str().unwrap()).await,
        2,
        "new keys use the newest"
    );
    let mut migrated = 0;
    for _ in 0..100 {
        migrated = pepper_version(&data, &old_id).await;
        if migrated == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        migrated, 2,
        "a verified key is re-hashed to the newest pepper"
    );
    let v = post_to(
        &server.base,
        &root,
        "/v1/keys/verify",
        json!({"key": old["key"]}),
    )
    .await;
    assert_eq!(v["code"], "VALID", "and still verifies after the re-hash");
    drop(server);

    let (ok, status, _) = run_keyhaven(&data, &["pepper", "status"]).await;
    assert!(ok);
    assert!(
        status.starts_with(&format!(
            "pepper from the file {}\n",
            data.join("pepper").display()
        )),
        "in words, not Rust Debug: {status}"
    );
    let line = |v: &str| {
        status
            .lines()
            .find(|l| l.split_whitespace().next() == Some(v))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(line("1").split_whitespace().nth(2), Some("0"), "{status}");
    assert!(line("2").contains("(newest)"), "{status}");
    let (ok, _, stderr) = run_keyhaven(&data, &["pepper", "retire", "2"]).await;
    assert!(!ok && stderr.contains("newest"), "{stderr}");
    let (ok, _, stderr) = run_keyhaven(&data, &["pepper", "retire", "1"]).await;
    assert!(ok, "{stderr}");
    let pepper_file = std::fs::read_to_string(data.join("pepper")).unwrap();
    assert!(!pepper_file.lines().any(|l| l.starts_with("1:")));

    // Without version 1 the server starts (nothing needs it) and every key verifies.
    let server = spawn_process(&data, dir.path(), &[]).await;
    for key in [&old["key"], &new["key"]] {
        let v = post_to(
            &server.base,
            &root,
            "/v1/keys/verify",
            json!({ "key": key }),
        )
        .await;
        assert_eq!(v["code"], "VALID");
    }
}

/// `keyhaven serve` on `data`, expected to refuse: its exit status and log.
async fn refused_start(data: &Path) -> (bool, String) {
    let out = keyhaven(data)
        .await
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_missing_or_different_pepper_or_master_key_is_refused_on_a_populated_database() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let server = spawn_process(data.path(), logs.path(), &[]).await;
    let root = server.first_root_key();
    drop(server);
    let pepper = data.path().join("pepper");
    let master = data.path().join("master.key");
    let original_pepper = std::fs::read_to_string(&pepper).unwrap();
    let original_master = std::fs::read_to_string(&master).unwrap();

    // Missing pepper: refused, naming the file; no new pepper is written.
    std::fs::remove_file(&pepper).unwrap();
    let (ok, log) = refused_start(data.path()).await;
    assert!(!ok, "started without its pepper:\n{log}");
    assert!(log.contains("pepper is missing"), "{log}");
    assert!(!pepper.exists(), "a new pepper was created");

    // Another pepper under the same version: refused.
    let other: String = original_pepper
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                l.to_owned()
            } else {
                format!("1:{}", "ab".repeat(32))
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&pepper, other).unwrap();
    let (ok, log) = refused_start(data.path()).await;
    assert!(!ok, "started with another pepper:\n{log}");
    assert!(
        log.contains("not the one this database was used with"),
        "{log}"
    );

    // Missing or different master key: refused too.
    std::fs::write(&pepper, &original_pepper).unwrap();
    std::fs::remove_file(&master).unwrap();
    let (ok, log) = refused_start(data.path()).await;
    assert!(!ok && log.contains("master.key is missing"), "{log}");
    std::fs::write(&master, original_pepper.replace("pepper", "master key")).unwrap();
    let (ok, log) = refused_start(data.path()).await;
    assert!(!ok && log.contains("master key for version 1"), "{log}");

    // With both restored it starts, and the old root key works.
    std::fs::write(&master, &original_master).unwrap();
    let server = spawn_process(data.path(), logs.path(), &[]).await;
    let status = server.get_status(&root, "/v1/keyspaces").await;
    assert_eq!(status, reqwest::StatusCode::OK);
}

#[tokio::test]
async fn data_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let server = spawn_process(data.path(), logs.path(), &[]).await;
    let root = server.first_root_key();
    // A write, so the WAL and shared-memory files exist.
    post_to(
        &server.base,
        &root,
        "/v1/keyspaces",
        json!({"name": "m", "prefix": "modes"}),
    )
    .await;
    let mode = |name: &str| {
        std::fs::metadata(data.path().join(name))
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
    };
    if !on_postgres() {
        for name in ["keyhaven.db", "keyhaven.db-wal", "keyhaven.db-shm"] {
            assert_eq!(mode(name), Some(0o600), "{name}");
        }
    }
    for name in ["pepper", "master.key"] {
        assert_eq!(mode(name), Some(0o600), "{name}");
    }
    drop(server);

    // A database left readable by an older version is narrowed on the next start.
    if !on_postgres() {
        let db = data.path().join("keyhaven.db");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _server = spawn_process(data.path(), logs.path(), &[]).await;
        assert_eq!(mode("keyhaven.db"), Some(0o600));
    }
}

/// `keyhaven hash`, as an operator checking a row: for a key the server made, it prints
/// exactly the verifier and pepper version the store holds, under the server's own
/// pepper file, and never the secret or the pepper.
#[tokio::test]
async fn hash_prints_the_verifier_the_store_holds_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    let ks = post_to(
        &server.base,
        &root,
        "/v1/keyspaces",
        json!({"name": "h", "prefix": "hash"}),
    )
    .await;
    let created = post_to(
        &server.base,
        &root,
        "/v1/keys",
        json!({"keyspace_id": ks["id"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    drop(server);
    let stored = store_for(&data)
        .await
        .key_for_verify(&key_id)
        .await
        .unwrap()
        .unwrap()
        .key
        .verifier;

    let pepper_file = data.join("pepper");
    let mut child = keyhaven(&data)
        .await
        .args(["hash", "--json", "--pepper-file"])
        .arg(&pepper_file)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        writeln!(child.stdin.take().unwrap(), "{key}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["key_id"], key_id.as_str());
    assert_eq!(printed["pepper_version"], i64::from(stored.version().get()));
    assert_eq!(printed["verifier"], hex::encode(stored.mac()));

    let text = String::from_utf8_lossy(&out.stdout);
    let secret = keyhaven_core::parse(&key)
        .unwrap()
        .secret()
        .expose_secret()
        .to_owned();
    assert!(!text.contains(&secret), "the secret was printed: {text}");
    let pepper_hex = std::fs::read_to_string(&pepper_file).unwrap();
    let pepper_hex = pepper_hex
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(_, hex)| hex.trim().to_owned())
        .next()
        .unwrap();
    assert!(!text.contains(&pepper_hex), "the pepper was printed");

    // A key changed by one character (another secret, checksum fixed) hashes to
    // something else: the operator can tell a wrong copy from the right one.
    let other = with_wrong_secret(&key, "hash");
    let out = keyhaven(&data)
        .await
        .args(["hash", "--json", "--pepper-file"])
        .arg(&pepper_file)
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(printed["verifier"], hex::encode(stored.mac()));
}
