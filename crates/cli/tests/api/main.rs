//! The server's integration tests: one binary, real sockets, a real database per test
//! (SQLite, or PostgreSQL with `KEYHAVEN_TEST_STORE=postgres`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod alerts;
mod audit;
mod batch_create;
mod batch_verify;
mod changes;
mod connections;
mod copy;
mod credits;
mod durability;
mod envoy;
mod forward_auth;
mod gateway;
mod gateway_node;
mod gateway_rules;
mod gateway_streams;
mod gateway_upstream;
mod helpers;
mod hostile;
mod import;
mod ip_allowlists;
mod keys;
mod leaks;
mod lifecycle;
mod limits;
mod logs;
mod multinode;
mod one_server;
mod openapi;
mod pepper;
mod permissions;
mod plans;
mod ratelimits;
mod readiness;
mod readme;
mod recoverable;
mod root_keys;
mod shared_limits;
mod tenancy;
mod tokens;
mod usage;
mod web;
mod webhooks;
