//! Process-level tests: `kill -9` during writes, and no secret in any file, log or metric.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_keys_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = spawn_process(&data, dir.path(), &[]).await;
    let root = server.first_root_key();
    let http = http_client();
    let (status, ks) = try_post(
        &http,
        &server.base,
        &root,
        "/v1/keyspaces",
        &json!({"name": "c", "prefix": "crash"}),
    )
    .await;
    assert_eq!(status, 201);
    let ks_id = ks["id"].as_str().unwrap().to_owned();

    let done = Arc::new(AtomicUsize::new(0));
    let limit = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let (http, base, root, ks_id, done, limit) = (
            http.clone(),
            server.base.clone(),
            root.clone(),
            ks_id.clone(),
            done.clone(),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let r = try_post(
                &http,
                &base,
                &root,
                "/v1/keys",
                &json!({"keyspace_id": ks_id, "name": format!("k{i}")}),
            )
            .await;
            done.fetch_add(1, Ordering::SeqCst);
            r
        });
    }
    while done.load(Ordering::SeqCst) < 250 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            (201, body) => acknowledged.push(body["key"].as_str().unwrap().to_owned()),
            _ => failed += 1,
        }
    }
    println!(
        "{} acknowledged, {failed} cut off by the kill",
        acknowledged.len()
    );
    assert!(acknowledged.len() >= 200, "{}", acknowledged.len());
    assert!(failed > 0, "the kill should land mid-run");
    drop(server);

    let again = spawn_process(&data, dir.path(), &[]).await;
    for key in &acknowledged {
        let (status, v) = try_post(
            &http,
            &again.base,
            &root,
            "/v1/keys/verify",
            &json!({ "key": key }),
        )
        .await;
        assert_eq!((status, v["code"].as_str()), (200, Some("VALID")), "{key}");
    }
    drop(again);
    if on_postgres() {
        return; // the file check below is SQLite's
    }
    let db = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(data.join("keyhaven.db")))
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(check, "ok");
}

/// Every 8-byte window of every secret.
fn secret_windows(secrets: &[String]) -> HashSet<[u8; 8]> {
    secrets
        .iter()
        .flat_map(|s| {
            s.as_bytes()
                .windows(8)
                .map(|w| <[u8; 8]>::try_from(w).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn leaks(haystack: &[u8], windows: &HashSet<[u8; 8]>) -> usize {
    haystack
        .windows(8)
        .filter(|w| windows.contains(&<[u8; 8]>::try_from(*w).unwrap()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_database_wal_log_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = spawn_process(&data, dir.path(), &[("KEYHAVEN_LOG", "debug")]).await;
    let root = server.first_root_key();
    let http = http_client();
    let (_, ks) = try_post(
        &http,
        &server.base,
        &root,
        "/v1/keyspaces",
        &json!({"name": "s", "prefix": "scan"}),
    )
    .await;
    let ks_id = ks["id"].as_str().unwrap().to_owned();

    let limit = Arc::new(Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let (http, base, root, ks_id, limit) = (
            http.clone(),
            server.base.clone(),
            root.clone(),
            ks_id.clone(),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            // Every other creation carries an Idempotency-Key: its stored response holds
            // the key, sealed.
            let mut req = http.post(format!("{base}/v1/keys")).bearer_auth(&root);
            if i % 2 == 0 {
                req = req.header("Idempotency-Key", format!("scan-{i}"));
            }
            let created: Value = req
                .json(&json!({"keyspace_id": ks_id, "name": format!("k{i}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let key = created["key"].as_str().unwrap().to_owned();
            let (status, v) = try_post(
                &http,
                &base,
                &root,
                "/v1/keys/verify",
                &json!({ "key": key }),
            )
            .await;
            assert_eq!((status, v["code"].as_str()), (200, Some("VALID")));
            key
        });
    }
    let mut secrets = Vec::new();
    while let Some(key) = tasks.join_next().await {
        let key = key.unwrap();
        let parsed = keyhaven_core::parse(&key).unwrap();
        secrets.push(parsed.secret().expose_secret().to_owned());
    }
    assert_eq!(secrets.len(), 1000);
    let windows = secret_windows(&secrets);
    assert_eq!(
        windows.len(),
        1000 * 23,
        "secrets share no 8-character substring"
    );

    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("keyhaven_verifications_total"));
    let db_file = data.join("keyhaven.db");
    let wal_file = data.join("keyhaven.db-wal");
    let database = || async {
        match database_url_for(&data).await {
            // PostgreSQL's files are the server's: scan a full text dump instead.
            Some(url) => {
                let out = std::process::Command::new("pg_dump")
                    .args(["--data-only", "--inserts", &url])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "pg_dump failed");
                out.stdout
            }
            None => std::fs::read(&db_file).unwrap(),
        }
    };
    let mut scanned = vec![
        ("metrics", metrics.into_bytes()),
        ("database", database().await),
        ("log", std::fs::read(&server.log_path).unwrap()),
    ];
    if let Ok(wal) = std::fs::read(&wal_file) {
        scanned.push(("wal", wal));
    }
    // Stop cleanly (flushes usage, checkpoints the WAL), then scan the files again.
    let pid = server.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    scanned.push(("database after shutdown", database().await));
    scanned.push((
        "log after shutdown",
        std::fs::read(&server.log_path).unwrap(),
    ));
    if let Ok(wal) = std::fs::read(&wal_file) {
        scanned.push(("wal after shutdown", wal));
    }
    for (name, bytes) in &scanned {
        assert!(
            !bytes.is_empty() || name.starts_with("wal"),
            "{name} is empty"
        );
        assert_eq!(
            leaks(bytes, &windows),
            0,
            "a secret substring appears in the {name}"
        );
    }
    // The scan itself can find one: a planted secret is detected.
    let mut planted = scanned[1].1.clone();
    // After a byte no key holds: the file's last bytes (a database's may be anything)
    // and the planted ones never make a second window of the same secret.
    planted.push(b'\n');
    planted.extend_from_slice(&secrets[7].as_bytes()[3..11]);
    assert_eq!(leaks(&planted, &windows), 1);
}

/// A server nobody scrapes keeps its memory: latency samples wait in the Prometheus
/// recorder until an upkeep folds them into buckets, so `keyhaven serve` runs one on a
/// thread of its own (before, each request's samples stayed until `/metrics` was read:
/// about 2 MB a second under verify load, found by `bench/scale.sh`).
#[tokio::test]
async fn a_server_nobody_scrapes_folds_its_latency_samples_on_its_own() {
    if on_postgres() {
        return; // the recorder does not depend on the engine
    }
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_process(&dir.path().join("data"), dir.path(), &[]).await;
    let tasks = format!("/proc/{}/task", server.child.id());
    let names: Vec<String> = std::fs::read_dir(&tasks)
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "metrics-upkeep"),
        "no upkeep thread among {names:?}"
    );
}
