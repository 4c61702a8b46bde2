//! The checked-in OpenAPI document is the one the code generates and serves.

use crate::helpers::*;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[tokio::test]
async fn checked_in_openapi_document_is_current() {
    let generated = keyhaven_server::openapi::document();
    if std::env::var_os("KEYHAVEN_UPDATE_OPENAPI").is_some() {
        std::fs::write(CHECKED_IN, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json is stale: run `KEYHAVEN_UPDATE_OPENAPI=1 cargo test -p keyhaven --test api openapi` and commit it"
    );
    let app = spawn_app().await;
    let served = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, generated);
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/keyspaces",
        "/v1/keys",
        "/v1/keys/verify",
        "/v1/keys/{key_id}/revoke",
        "/v1/audit-events",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
}
