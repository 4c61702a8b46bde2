//! The browser front doors: the operator dashboard (`/dashboard/`) and the customer
//! portal (`/portal/`). Server-rendered HTML (maud), one stylesheet and one small script
//! compiled into the binary, no external asset. Pages call the same operations as the
//! API ([`keyhaven_service`]); what differs is only how input arrives (forms) and how
//! answers look (pages).
//!
//! - `session.rs`: cookies, the signed-in operator or portal customer, CSRF-checked
//!   forms;
//! - `html.rs`: the page frame, error pages and the small pieces every page shares;
//! - `chart.rs`: usage charts as inline SVG;
//! - `dashboard/`, `portal/`: the pages.
//!
//! Every answer carries a strict `Content-Security-Policy` (no inline script),
//! `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` and `Cache-Control: no-store`.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

mod assets;
mod chart;
mod dashboard;
mod html;
mod once;
mod portal;
mod session;

/// The dashboard, the portal and their assets.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .merge(dashboard::router())
        .merge(portal::router())
        .merge(assets::router())
        .layer(middleware::from_fn(security_headers))
}

/// The policy of every page: scripts and styles from this server only, never inline (the
/// portal's accent colour is a stylesheet of its own, `/assets/accent/{color}.css`),
/// images also from `https:` (portal logos), no framing, no plugins, forms posting only
/// here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' https: data:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
