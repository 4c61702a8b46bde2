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
