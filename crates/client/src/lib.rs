#![doc = include_str!("../README.md")]
//!
//! # Where things are
//!
//! - [`Client`]: [`Client::verify`] / [`Client::verify_with`] /
//!   [`Client::verify_batch`], the admin handles ([`Client::keyspaces`],
//!   [`Client::keys`], [`Client::owners`], [`Client::usage`], [`Client::audit`],
//!   [`Client::roles`], [`Client::plans`], [`Client::root_keys`], [`Client::webhooks`],
//!   [`Client::events`], [`Client::ratelimits`], [`Client::leaks`], [`Client::portal`];
//!   the few routes without one are listed in `src/admin.rs`) and
//!   [`Client::request`] for anything else; built by [`Client::new`] /
//!   [`Client::builder`] (timeout, retries, [`CacheOptions`]).
//! - The verify cache and its rules: [`CacheOptions`] (module `cache`, mirrored from
//!   the `keyhaven proxy` node); its stream follower follows `GET /v1/changes`.
//! - [`layer`] (feature `axum`): [`layer::KeyhavenLayer`] and [`layer::VerifiedKey`].
//! - [`keys`]: generate, parse, check and display keys without a server.
//! - Embedded mode (feature `embedded`): `Client::embedded`.
//! - Errors: [`Error`]; no key and no root key ever appears in one, nor in any `Debug`.

mod admin;
mod cache;
mod client;
#[cfg(feature = "embedded")]
mod embedded;
mod error;
mod follow;
pub mod keys;
#[cfg(feature = "axum")]
pub mod layer;
mod tokens;
mod transport;
pub mod types;

pub use admin::{
    Audit, Events, Keys, Keyspaces, Leaks, Owners, Plans, Portal, Ratelimits, Roles, RootKeys,
    Usage, Webhooks,
};
pub use cache::{CacheOptions, CacheStats};
pub use client::{Client, ClientBuilder};
pub use error::{Error, Problem, Result};
#[cfg(feature = "embedded")]
pub use keyhaven_service;
pub use reqwest::Method;
pub use secrecy::{ExposeSecret, SecretString};
pub use types::{NamedCost, VerifyCode, VerifyOptions, VerifyResponse};
