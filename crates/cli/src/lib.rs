//! The `keyhaven` command. `main.rs` only parses arguments; `cli.rs` defines them and
//! hands each subcommand to its file in `commands/`, which returns an exit code. The
//! commands that open a deployment share `setup.rs` (flags, configuration, runtime, store).
//! This root only declares and re-exports, so the modules below it can use its items
//! without a cycle.
#![allow(clippy::print_stderr)] // a CLI reports errors on stderr

mod cli;
pub mod commands;
pub mod setup;

pub use cli::{Cli, Command, run};

/// Exit status for input that is not a well-formed key (usage errors exit 2, via clap).
pub const EXIT_INVALID: u8 = 1;
