//! The stylesheet and the script, compiled into the binary (no CDN, no build step), and
//! the portal's accent colour as a stylesheet of its own (so no page needs inline
//! styles).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .route("/assets/accent/{color}", get(accent))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `/assets/accent/a1b2c3.css`: the accent colour of a portal's branding.
async fn accent(Path(file): Path<String>) -> Response {
    let hex = file.strip_suffix(".css").unwrap_or("");
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        format!(":root {{ --accent: #{hex}; }}\n"),
    )
        .into_response()
}
