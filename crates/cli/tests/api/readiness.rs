//! `/readyz` says whether the node can serve: 200 while its database accepts writes, 503
//! `not_ready` (with why) on a read-only database, where every change would fail.

use crate::helpers::{http_client, on_postgres, spawn_process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_on_a_database_that_takes_no_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = http_client();
    if on_postgres() {
        // Several nodes: ready once the change feed has delivered this node's heartbeat.
        let server = spawn_process(&data, dir.path(), &[]).await;
        let mut status = 0;
        for _ in 0..100 {
            status = http
                .get(format!("{}/readyz", server.base))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(status, 200);
        return; // a read-only SQLite file is the rest of this test's database
    }
    let server = spawn_process(&data, dir.path(), &[]).await;
    let ready = http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    drop(server);

    // The same database, opened read-only: reads work, writes cannot.
    let url = format!("sqlite://{}?mode=ro", data.join("keyhaven.db").display());
    let server = spawn_process(&data, dir.path(), &[("KEYHAVEN_DATABASE_URL", &url)]).await;
    let ready = http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let problem: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(problem["code"], "not_ready");
    assert_eq!(problem["detail"], "The database does not accept writes.");
    let alive = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.status(), 200, "alive, just not ready");

    // `keyhaven healthcheck` (the container health check) says the same, with exit codes.
    let check = |url: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyhaven"))
            .args(["healthcheck", "--url", &url])
            .output()
            .unwrap()
    };
    let out = check(server.base.clone());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("503") && stderr.contains("does not accept writes"),
        "{stderr}"
    );
    drop(server);
    let out = check(format!("http://127.0.0.1:{}", crate::helpers::free_port()));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no answer from"));
    let server = spawn_process(&data, dir.path(), &[]).await;
    let out = check(server.base.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ready"));
}
