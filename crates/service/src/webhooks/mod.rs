//! Webhooks: endpoints that receive events, and their delivery.
//!
//! Operations: [`endpoints`] (create, with its signing secret shown once; update,
//! delete, reads) and [`deliveries`] (the delivery log, manual re-sends).
//!
//! Delivery: events are stored in the same transaction as the change that causes them;
//! a background worker on every node turns them into deliveries (the outbox, one row
//! per event and endpoint), sends each signed per the Standard Webhooks specification,
//! and retries with exponential backoff and jitter until it is delivered or its retry
//! period runs out. Delivery never runs on a request's path, and what is waiting lives
//! in the database, not in memory.
//!
//! - [`signing`]: secrets (`whsec_…`) and the `webhook-*` headers.
//! - [`retry`]: when the next attempt is due.
//! - [`target`]: which URLs may be called (no private addresses unless allowed).
//! - [`delivery`]: the loop: fan out, claim, send, record.

pub mod deliveries;
pub mod delivery;
pub mod endpoints;
pub mod retry;
pub mod signing;
pub mod target;

pub use self::endpoints::{
    CreateWebhook, MAX_EVENT_TYPES, UpdateWebhook, create, delete, find, list, update,
};

/// Purpose of the key that seals endpoint secrets in the database.
pub const SECRET_PURPOSE: &str = "webhook-secrets/v1";
