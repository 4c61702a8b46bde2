//! Connections that never finish a request, stall a body or sit idle cost the server
//! nothing it can run out of: stalled heads and idle keep-alives are closed by their
//! timeouts, a flood of them under a small descriptor limit cannot keep a real client
//! out, and metric labels come from a closed set whatever the client sends.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{free_port, http_client, spawn_app_with, spawn_process_limited};

/// The value of the series `name` (labels included, exactly as rendered) in `/metrics`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// The server's `/metrics` text.
async fn metrics_text(base: &str) -> String {
    let r = http_client().get(format!("{base}/metrics")).send().await;
    r.unwrap().text().await.unwrap()
}

/// Reads until the peer closes (EOF or reset), or `limit` passes: whether it closed.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn two_thousand_stalled_connections_under_1024_descriptors_keep_healthz_answering() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let server = spawn_process_limited(
        dir.path(),
        logs.path(),
        &[("KEYHAVEN_HTTP_HEADER_TIMEOUT_MS", "3000")],
        Some(1024),
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    // A probe on a fresh connection every 100 ms for the whole attack, on a thread of its
    // own so the attack loop below cannot starve it. Each is given 5 s: more than the
    // attack needs on a quiet machine (well under 1 s), less than a locked-out client
    // would wait (the 3 s header timeout, then the queue behind 2,000 sockets).
    let probe = {
        let url = format!("{}/healthz", server.base);
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let (mut ok, mut failed, mut slowest) = (0u32, Vec::new(), Duration::ZERO);
                loop {
                    let start = Instant::now();
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == StatusCode::OK => ok += 1,
                        Ok(r) => failed.push(format!("status {}", r.status())),
                        Err(e) => failed.push(format!(
                            "{e:?} (timeout: {}) after {:?}",
                            e.is_timeout(),
                            start.elapsed()
                        )),
                    }
                    slowest = slowest.max(start.elapsed());
                    tokio::select! {
                        _ = &mut stop_rx => return (ok, failed, slowest),
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            })
        });
        (stop_tx, task)
    };

    // 2,000 sockets that each start a request head and stop.
    let opened = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..2_000 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nX: ").await.unwrap();
        stalled.push(s);
    }
    // Every one is closed: evicted for a newer one, or by the 3 s header timeout.
    let closing = stalled.into_iter().map(|mut s| {
        tokio::spawn(async move { closed_within(&mut s, Duration::from_secs(15)).await })
    });
    let mut still_open = 0;
    for c in closing {
        if !c.await.unwrap() {
            still_open += 1;
        }
    }
    let all_closed_after = opened.elapsed();
    let (stop, task) = probe;
    stop.send(()).unwrap();
    let (ok, failed, slowest) = task.join().unwrap();
    eprintln!("probes: {ok} answered, slowest {slowest:?}");
    assert_eq!(
        still_open, 0,
        "stalled connections left open (probes: {ok} ok, failed {failed:?})"
    );
    assert!(
        failed.is_empty(),
        "/healthz failed during the attack: {failed:?}"
    );
    assert!(ok >= 10, "too few probes ran: {ok}");
    assert!(all_closed_after < Duration::from_secs(15));

    let text = metrics_text(&server.base).await;
    let timed_out = metric(
        &text,
        "keyhaven_http_connections_closed_total{listener=\"api\",reason=\"header_timeout\"}",
    )
    .unwrap_or(0.0);
    let evicted = metric(
        &text,
        "keyhaven_http_connections_closed_total{listener=\"api\",reason=\"evicted\"}",
    )
    .unwrap_or(0.0);
    assert!(timed_out >= 1.0, "no header timeout counted:\n{text}");
    assert!(
        timed_out + evicted >= 2_000.0,
        "timed out {timed_out} + evicted {evicted}"
    );
    let log = std::fs::read_to_string(&server.log_path).unwrap();
    let exhausted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Too many open files"))
        .take(5)
        .collect();
    assert!(
        exhausted.is_empty(),
        "the server ran out of descriptors: {exhausted:#?}"
    );
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_an_idle_keep_alive_is_closed() {
    let app = spawn_app_with(|c| {
        c.http_body_timeout_ms = 300;
        c.http_header_timeout_ms = 500;
        c.http_idle_timeout_ms = 500;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    // A body that promises 100 bytes, sends 8 and stops.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/keyspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        app.root_key
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer to a stalled body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");

    // A keep-alive connection that goes quiet after one request is closed.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);

    // So is one that never sends a byte.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_takes_the_place_of_the_oldest_idle_one() {
    let app = spawn_app_with(|c| {
        c.max_connections = 4;
        c.http_header_timeout_ms = 60_000;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..4 {
        let s = TcpStream::connect(&addr).await.unwrap();
        idle.push(s);
        // Accepted in this order.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut fresh = TcpStream::connect(&addr).await.unwrap();
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), fresh.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut idle[0], Duration::from_secs(2)).await);
    for s in &mut idle[1..] {
        assert!(!closed_within(s, Duration::from_millis(200)).await);
    }
}

#[tokio::test]
async fn metric_labels_come_from_a_closed_set_whatever_the_method() {
    let app = spawn_app_with(|_| {}).await;
    let http = http_client();
    for i in 0..20 {
        let method =
            reqwest::Method::from_bytes(format!("XMETH{i}{}", "A".repeat(900)).as_bytes()).unwrap();
        let r = http
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let text = metrics_text(&app.base).await;
    assert!(!text.contains("XMETH"), "a request's method became a label");
    assert!(
        text.contains("method=\"other\""),
        "unknown methods are counted as other"
    );
}

#[tokio::test]
async fn metrics_can_move_to_a_listener_of_their_own() {
    let port = free_port();
    let app = spawn_app_with(|c| {
        c.metrics_listen = keyhaven_service::config::MetricsListen::Address(
            format!("127.0.0.1:{port}").parse().unwrap(),
        );
    })
    .await;
    let http = http_client();
    assert_eq!(
        http.get(app.url("/metrics")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let separate = format!("http://127.0.0.1:{port}");
    let mut answered = None;
    for _ in 0..50 {
        if let Ok(r) = http.get(format!("{separate}/metrics")).send().await {
            answered = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = answered.expect("the metrics listener never answered");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("keyhaven_"));
    assert_eq!(
        http.get(format!("{separate}/v1/keys"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}
