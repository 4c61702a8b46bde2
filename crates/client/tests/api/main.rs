//! The client against a real Keyhaven: one test binary (see `helpers` for where the
//! server comes from).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests fail loudly

mod cache;
mod embedded;
mod helpers;
mod layer;
mod schema;
mod secrets;
mod vectors;
mod verify;
mod version;
