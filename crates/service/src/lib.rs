//! Keyhaven's application layer: every rule about keys lives here, free of HTTP, so each
//! front door (the HTTP API, the command line, and the dashboard, portal and gateway to
//! come) calls the same operations instead of copying them.
//!
//! Where to look:
//! - the verify decision, top to bottom: [`verify`];
//! - operations, one module per resource: [`keys`], [`keyspaces`], [`owners`],
//!   [`webhooks`]; each takes the [`Actor`] and the time, validates, writes through the
//!   store with its audit event, invalidates the cache, and returns typed results or a
//!   [`ServiceError`];
//! - what every operation reaches: [`Service`]; who is asking: [`actor`];
//! - the record cache and its invalidation rule: [`cache`]; other nodes' changes:
//!   [`coherence`]; the change stream remote caches follow: [`changes`]; limits and
//!   quotas: [`limits`]; usage counting: [`usage`], and reading it back:
//!   [`usage_report`]; the audit and event logs: [`audit`]; alerts: [`alerts`];
//!   background work: [`background`];
//! - starting up (data directory, peppers, master keys, store): [`bootstrap`];
//!   configuration layers: [`config`].

pub mod actor;
pub mod alerts;
pub mod audit;
pub mod background;
pub mod bootstrap;
pub mod branding;
pub mod cache;
pub mod changes;
pub mod clock;
pub mod coherence;
pub mod config;
pub mod credits;
pub mod error;
pub mod gateway;
pub mod github_keys;
pub mod idempotency;
pub mod ids;
pub mod import;
pub mod keys;
pub mod keyspaces;
pub mod leaks;
pub mod limits;
pub mod metrics;
pub mod operators;
pub mod owners;
pub mod patch;
pub mod plans;
pub mod portal;
pub mod ratelimits;
pub mod recoverable;
pub mod roles;
pub mod root_keys;
pub mod serve_lock;
pub mod service;
pub mod sessions;
pub mod signing_keys;
pub mod streams;
pub mod tokens;
pub mod usage;
pub mod usage_report;
pub mod validate;
pub mod verify;
pub mod webhooks;

pub use actor::{Actor, Scope};
pub use config::Config;
pub use error::{Result, ServiceError};
pub use service::Service;
