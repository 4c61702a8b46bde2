//! The client against a real Keyhaven: one test binary (see `helpers` for where the
//! server comes from).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests fail loudly

mod access;
mod batch;
mod cache;
mod embedded;
mod helpers;
mod layer;
mod lifecycle;
mod ratelimits;
mod retries;
mod root_keys;
mod schema;
mod secrets;
mod tokens;
mod vectors;
mod verify;
mod version;
mod webhooks;
