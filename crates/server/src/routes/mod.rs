//! HTTP handlers, one module per resource. Each handler extracts its input, checks the
//! root key's scope, calls one operation of the service and shapes the answer; shared
//! answer shapes are in [`crate::respond`] and [`crate::pagination`].

pub mod audit;
pub mod changes;
pub mod credits;
pub mod forward_auth;
pub mod health;
pub mod keys;
pub mod keyspaces;
pub mod leaks;
pub mod owners;
pub mod plans;
pub mod portal;
pub mod ratelimits;
pub mod roles;
pub mod root_keys;
pub mod tokens;
pub mod usage;
pub mod verify;
pub mod webhooks;
