//! An axum API protected by Keyhaven.
//!
//! ```sh
//! keyhaven serve                      # prints a root key on first start
//! KEYHAVEN_URL=http://127.0.0.1:8080 KEYHAVEN_ROOT_KEY=kh_root_... \
//!     cargo run -p keyhaven-client --example axum_app
//! curl -H "Authorization: Bearer $KEY" http://127.0.0.1:3000/orders
//! ```
//!
//! `/health` is public; `/orders` needs any valid key; `/reports` needs the scope
//! `reports:read` and counts 5 units against the key's limits.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use keyhaven_client::Client;
use keyhaven_client::layer::{KeyhavenLayer, VerifiedKey};

/// The application: what the tests serve too.
pub fn app(keyhaven: Client) -> Router {
    let orders = Router::new()
        .route("/orders", get(orders))
        .layer(KeyhavenLayer::new(keyhaven.clone()));
    let reports = Router::new()
        .route("/reports", get(reports))
        .layer(KeyhavenLayer::new(keyhaven).scope("reports:read").cost(5));
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(orders)
        .merge(reports)
}

async fn orders(key: VerifiedKey) -> String {
    let owner = key.owner_external_id().unwrap_or("nobody");
    format!("orders of {owner} (key {})\n", key.key_id())
}

async fn reports(key: VerifiedKey) -> String {
    format!("reports for key {}\n", key.key_id())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("KEYHAVEN_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let root_key = std::env::var("KEYHAVEN_ROOT_KEY")?;
    let keyhaven = Client::new(url, root_key)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let service = app(keyhaven).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}
