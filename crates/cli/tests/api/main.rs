//! The server's integration tests: one binary, real sockets, a real SQLite file per test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod audit;
mod durability;
mod helpers;
mod hostile;
mod import;
mod keys;
mod lifecycle;
mod limits;
mod openapi;
mod pepper;
mod recoverable;
mod shared_limits;
mod tenancy;
