//! What the in-process benches share: a service on a fresh SQLite database with an
//! unrestricted root key, and JSON calls through the router without sockets.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use keyhaven_server::AppState;
use keyhaven_service::config::Config;
use keyhaven_service::root_keys;
use keyhaven_store::{SqliteStore, Store, pepper_file};
use secrecy::ExposeSecret;
use serde_json::Value;
use tower::ServiceExt;

/// A service on a new SQLite database (and pepper) in `config.data_dir`, and a root key
/// with every scope, made as `keyhaven root-key create` makes it.
pub async fn sqlite_service(config: Config) -> (AppState, String) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.database_path()).await.unwrap());
    let (peppers, _) = pepper_file::load_or_create(&config.data_dir, None).unwrap();
    let root = root_keys::create(
        store.as_ref(),
        &peppers,
        vec!["*".into()],
        None,
        None,
        root_keys::CLI_ACTOR,
    )
    .await
    .unwrap();
    let root = root.key().expose_secret().to_owned();
    (AppState::new(store, peppers, config).unwrap(), root)
}

/// A JSON `POST path` with `root` as the bearer token.
pub fn post(root: &str, path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {root}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// POSTs `body` to `path` through `app` with `root`; asserts a 2xx; the JSON answer.
pub async fn call(app: &Router, root: &str, path: &str, body: &Value) -> Value {
    let response = app.clone().oneshot(post(root, path, body)).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The median time per call of each of `bodies`, over `rounds` rounds of `calls` calls
/// of `run` each, the bodies taking turns within each round so a busy machine slows
/// them alike.
#[allow(dead_code)] // not every bench compares
pub fn interleaved_medians<const N: usize>(
    bodies: &[String; N],
    rounds: usize,
    calls: u32,
    mut run: impl FnMut(&str),
) -> [std::time::Duration; N] {
    let mut times: [Vec<std::time::Duration>; N] = std::array::from_fn(|_| Vec::new());
    for _ in 0..rounds {
        for (i, body) in bodies.iter().enumerate() {
            let start = std::time::Instant::now();
            for _ in 0..calls {
                run(body);
            }
            times[i].push(start.elapsed() / calls);
        }
    }
    times.map(|mut t| {
        t.sort_unstable();
        t[rounds / 2]
    })
}

/// One line of a summary: time per call and calls per second.
#[allow(dead_code)] // not every bench compares
pub fn rate_line(label: &str, per_call: std::time::Duration) -> String {
    format!(
        "{label:<26} {:>8.2} µs/call  {:>9.0} calls/s",
        per_call.as_secs_f64() * 1e6,
        1.0 / per_call.as_secs_f64()
    )
}
