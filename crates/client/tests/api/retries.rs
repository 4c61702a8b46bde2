//! The transport's retries against fake servers on 127.0.0.1: a call that gets no
//! answer is sent again, up to the configured attempts; a call that gets any HTTP
//! answer, even a 500, is sent once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keyhaven_client::types::CreateKeyspace;
use keyhaven_client::{CacheOptions, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROOT_KEY: &str = "kh_root_test_secret";

fn client(url: &str, attempts: u32) -> Client {
    Client::builder(url, ROOT_KEY)
        .attempts(attempts)
        .backoff(Duration::from_millis(1))
        .cache(CacheOptions::disabled())
        .build()
        .unwrap()
}

/// Waits (briefly) until `counter` reaches `expected`, then reads it.
async fn settle(counter: &AtomicUsize, expected: usize) -> usize {
    let start = Instant::now();
    while counter.load(Ordering::SeqCst) < expected && start.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    counter.load(Ordering::SeqCst)
}

/// A listener that accepts every connection and drops it at once, counting them.
async fn hang_up_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn calls_without_an_answer_are_retried_up_to_the_attempts() {
    for attempts in [1, 3, 5] {
        let (url, accepted) = hang_up_server().await;
        let client = client(&url, attempts);
        let error = client.keyspaces().get("ks_1").await.unwrap_err();
        assert!(error.is_unreachable(), "{error:?}");
        assert!(!error.to_string().contains(ROOT_KEY));
        let expected = usize::try_from(attempts).unwrap();
        assert_eq!(
            settle(&accepted, expected).await,
            expected,
            "{attempts} attempts"
        );
    }
    // Verification and calls with a body go the same way.
    let (url, accepted) = hang_up_server().await;
    let client = client(&url, 2);
    let error = client.verify("acme_live_secret").await.unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    assert!(!format!("{error} {error:?}").contains("acme_live_secret"));
    assert_eq!(settle(&accepted, 2).await, 2);
    let (url, accepted) = hang_up_server().await;
    let error = (self::client(&url, 2).keyspaces())
        .create(&CreateKeyspace::new("n", "n"))
        .await
        .unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    assert_eq!(settle(&accepted, 2).await, 2);
}

/// Reads one request (its head, and its body by `content-length`); false at the end of
/// the stream.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while seen.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// A server that answers every request with a 500 problem document, counting requests.
async fn failing_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                while read_request(&mut stream).await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"type":"urn:keyhaven:problem:internal","title":"Internal Server Error","status":500,"detail":"Something went wrong.","code":"internal"}"#;
                    let answer = format!(
                        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, requests)
}

#[tokio::test]
async fn answers_are_never_retried_even_a_500() {
    let (url, requests) = failing_server().await;
    let client = client(&url, 5);
    let error = client.keyspaces().get("ks_1").await.unwrap_err();
    assert_eq!(error.status(), Some(500), "{error:?}");
    assert_eq!(error.code(), Some("internal"));
    assert_eq!(settle(&requests, 1).await, 1);

    let error = client
        .keyspaces()
        .create(&CreateKeyspace::new("n", "n"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(500), "{error:?}");
    let error = client.verify("acme_live_secret").await.unwrap_err();
    assert_eq!(error.status(), Some(500), "{error:?}");
    // A retry would have been sent before the call returned.
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

/// A server that reads each request's head, keeps its `Idempotency-Key` (or "none"), and
/// hangs up without answering.
async fn forgetful_server() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keys = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut chunk = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("idempotency-key:"))
                .map_or_else(|| "none".to_owned(), |v| v.trim().to_owned());
            keys.lock().unwrap().push(key);
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_retried_create_carries_one_idempotency_key_and_a_verify_none() {
    let (url, seen) = forgetful_server().await;
    let client = client(&url, 3);
    let create = CreateKeyspace::new("n", "n");
    for _ in 0..2 {
        let error = client.keyspaces().create(&create).await.unwrap_err();
        assert!(error.is_unreachable(), "{error:?}");
    }
    let keys = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(keys.len(), 6, "{keys:?}");
    let (first, second) = keys.split_at(3);
    for call in [first, second] {
        assert_eq!(call[0].len(), 32, "{call:?}");
        assert!(call.iter().all(|k| *k == call[0]), "{call:?}");
    }
    assert_ne!(first[0], second[0], "each call has its own");

    let error = client.verify("acme_live_secret").await.unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    assert_eq!(*seen.lock().unwrap(), vec!["none"; 3]);
}

#[tokio::test]
async fn a_write_the_server_would_apply_twice_is_not_sent_again_once_connected() {
    // A new root key: a second one, unseen, could hold every scope.
    let (url, accepted) = hang_up_server().await;
    let client = client(&url, 3);
    let create = keyhaven_client::types::CreateRootKey {
        scopes: vec!["keys:read".into()],
        ..Default::default()
    };
    let error = client.root_keys().create(&create).await.unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    assert_eq!(settle(&accepted, 1).await, 1, "sent once");
    // The same call the server deduplicates is sent again: a new keyspace.
    let (url, accepted) = hang_up_server().await;
    let error = self::client(&url, 3)
        .keyspaces()
        .create(&CreateKeyspace::new("n", "n"))
        .await
        .unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    assert_eq!(settle(&accepted, 3).await, 3);
}
