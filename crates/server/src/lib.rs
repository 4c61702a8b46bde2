//! Keyhaven's HTTP server: the admin API (`/v1/keyspaces`, `/v1/owners`, `/v1/keys`,
//! `/v1/audit-events`, `/v1/events`, `/v1/webhooks`, usage), the verify API
//! (`POST /v1/keys/verify`), health and metrics.
//!
//! Where to look:
//! - the verify path: [`verify::check`] (shared with root-key authentication in
//!   [`auth`]) and its handler in [`routes::verify`];
//! - the record cache and its invalidation rule: [`cache`]; other nodes' changes
//!   (PostgreSQL): [`coherence`];
//! - errors and their problem+json shape: [`error`];
//! - the accept loop (connection cap, header, body and idle timeouts): [`connections`];
//! - usage counting: [`usage`]; anomaly alerts: [`alerts`]; webhook delivery:
//!   [`webhooks`];
//! - configuration layers: [`config`].

pub mod app;
pub mod auth;
pub mod connections;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod respond;
pub mod routes;
pub mod state;
mod web;

pub use app::{router, serve, shutdown_signal};
pub use keyhaven_service::Config;
pub use state::AppState;
