//! Keyhaven's persistent state: the [`Store`] trait the server is written against, its
//! two engines (SQLite, the zero-setup default, and PostgreSQL, for several nodes on one
//! database: both run the same queries, from `engine/`), and the pepper file that lives
//! beside the database in the data directory.
//!
//! Rules every engine keeps (and the conformance suite in `tests/conformance/` checks):
//! - lookups are by key id; no secret or verifier ever appears in a `WHERE` clause;
//! - every mutation writes its audit event, and its idempotent response when given, in
//!   the same transaction: if either write fails, the mutation is undone;
//! - an acknowledged write is durable (SQLite: WAL with `synchronous=FULL`; PostgreSQL:
//!   the engine refuses a server with `fsync` or `synchronous_commit` off).

pub mod activity;
pub mod copy;
pub mod counters;
mod error;
mod group;
pub mod leak;
pub mod model;
pub mod pepper_file;
pub mod postgres;
pub mod sqlite;
mod store;
pub mod web;
pub mod webhook;

pub use activity::*;
pub use error::{Conflict, StoreError};
pub use leak::*;
pub use model::*;
pub use postgres::{PgOptions, PgStore};
pub use sqlite::{SqliteStore, Workload};
pub use store::{ChangeFeed, Store};
pub use web::*;
pub use webhook::*;
