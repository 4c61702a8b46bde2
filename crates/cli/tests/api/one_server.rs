//! One `keyhaven serve` per SQLite database: a second one on the same data directory is
//! refused, saying which process holds it and what to do instead.

use std::process::Stdio;

use crate::helpers::{free_port, keyhaven, on_postgres, spawn_process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_sqlite_data_dir_is_refused() {
    if on_postgres() {
        return; // several nodes on one PostgreSQL database are the point there
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = spawn_process(&data, dir.path(), &[]).await;
    let second = keyhaven(&data)
        .await
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(
        message.contains("already serving the SQLite database"),
        "{message}"
    );
    assert!(
        message.contains(&first.child.id().to_string()),
        "names the other process: {message}"
    );
    assert!(message.contains("PostgreSQL"), "{message}");
    // The first one serves on, and once it is gone the data directory is free again.
    let http = crate::helpers::http_client();
    assert_eq!(
        http.get(format!("{}/healthz", first.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(first);
    let _again = spawn_process(&data, dir.path(), &[]).await;
}
