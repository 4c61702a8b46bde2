//! A real upstream API for the gateway tests, on 127.0.0.1: it echoes what it received,
//! answers fixed bytes, counts and streams large bodies without holding them, echoes
//! WebSocket messages, sends server-sent events, and can be slow. Every request it
//! receives is counted, so a test can show a refused request never reached it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// The fixed answer of `GET /fixed`: every byte value, so any rewriting shows.
pub fn fixed_body() -> Vec<u8> {
    (0..=255u8).cycle().take(4096).collect()
}

pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

pub async fn spawn_upstream() -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/fixed", get(fixed))
        .route("/count", post(count))
        .route("/bytes/{n}", get(bytes))
        .route("/slow", get(slow))
        .route("/ws", get(ws))
        .route("/sse", get(sse))
        .layer(middleware::from_fn_with_state(hits.clone(), count_hits))
        .with_state(());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Upstream {
        addr,
        hits,
        _stop: stop,
    }
}

async fn count_hits(
    State(hits): State<Arc<AtomicUsize>>,
    request: Request,
    next: Next,
) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

/// Method, URI, every header (name → values) and the body's length and SHA-256.
async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let answer = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body.len(),
        "body_sha256": hex::encode(Sha256::digest(&body)),
    });
    ([("x-upstream", "echo")], axum::Json(answer)).into_response()
}

async fn fixed() -> Response {
    (
        StatusCode::CREATED,
        [
            ("content-type", "application/octet-stream"),
            ("x-custom", "kept as sent"),
            ("set-cookie", "a=1; Path=/"),
        ],
        fixed_body(),
    )
        .into_response()
}

/// Reads the body as it arrives, keeping only its length and hash.
async fn count(request: Request) -> axum::Json<Value> {
    let mut stream = request.into_body().into_data_stream();
    let (mut n, mut hash) = (0u64, Sha256::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        hash.update(&chunk);
    }
    axum::Json(json!({"bytes": n, "sha256": hex::encode(hash.finalize())}))
}

/// `n` bytes, generated 64 KiB at a time.
async fn bytes(Path(n): Path<u64>) -> Response {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= n {
                return None;
            }
            let take = CHUNK.min(n - sent);
            let part = chunk.slice(..usize::try_from(take).unwrap());
            Some((Ok::<_, std::io::Error>(part), sent + take))
        }
    });
    Body::from_stream(stream).into_response()
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

async fn ws(upgrade: WebSocketUpgrade, headers: HeaderMap) -> Response {
    let key_id = headers
        .get("x-keyhaven-key-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    upgrade.on_upgrade(move |mut socket| async move {
        let _ = socket
            .send(Message::Text(format!("hello {key_id}").into()))
            .await;
        while let Some(Ok(message)) = socket.recv().await {
            let echo = matches!(message, Message::Text(_) | Message::Binary(_));
            if matches!(message, Message::Close(_)) || echo && socket.send(message).await.is_err() {
                return;
            }
        }
    })
}

/// Three events, 100 ms apart.
async fn sse() -> Response {
    let stream = futures_util::stream::unfold(0u32, |i| async move {
        if i >= 3 {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let event = Bytes::from(format!("id: {i}\ndata: tick {i}\n\n"));
        Some((Ok::<_, std::io::Error>(event), i + 1))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}
