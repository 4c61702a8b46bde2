//! The command line: its definition, and the dispatch to each subcommand's `run`.

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::EXIT_INVALID;
use crate::commands;

/// Keyhaven: API keys done right. Serve, generate and inspect keys.
#[derive(Debug, Parser)]
#[command(name = "keyhaven", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (admin API, verify API, metrics).
    Serve(commands::serve::Args),
    /// Run a stateless gateway node: check each request's key through a central
    /// Keyhaven (cached, kept coherent by its change stream) and forward it upstream.
    Proxy(commands::proxy::Args),
    /// Manage root keys (the keys that call Keyhaven's own API).
    #[command(subcommand)]
    RootKey(commands::root_key::Command),
    /// Manage operators (the people who sign in to the dashboard at /dashboard/).
    #[command(subcommand)]
    Operator(commands::operator::Command),
    /// Apply pending database migrations and exit.
    Migrate(commands::migrate::Args),
    /// Copy a SQLite deployment into an empty PostgreSQL database.
    Copy(commands::copy::Args),
    /// Import existing keys (JSON Lines or CSV) into the database.
    Import(commands::import::Args),
    /// Rotate, inspect and retire pepper versions.
    #[command(subcommand)]
    Pepper(commands::pepper::Command),
    /// Rotate, inspect and retire the keys signed tokens are signed with.
    #[command(subcommand)]
    SigningKey(commands::signing_key::Command),
    Generate(commands::generate::Args),
    Inspect(commands::inspect::Args),
    Hash(commands::hash::Args),
    /// Find Keyhaven keys in files or git history (never printing a secret), and
    /// optionally report them to a server to be revoked.
    #[command(after_long_help = commands::scan::AFTER_LONG_HELP)]
    Scan(commands::scan::Args),
    /// Exit 0 if a running server answers ready (for container health checks).
    Healthcheck(commands::healthcheck::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::docs::CompletionsArgs),
    /// Print the man page (roff), or write every command's page into a directory.
    Man(commands::docs::ManArgs),
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(&args),
        Command::Proxy(args) => commands::proxy::run(&args),
        Command::RootKey(command) => commands::root_key::run(&command),
        Command::Operator(command) => commands::operator::run(&command),
        Command::Migrate(args) => commands::migrate::run(&args),
        Command::Copy(args) => commands::copy::run(&args),
        Command::Pepper(command) => commands::pepper::run(&command),
        Command::SigningKey(command) => commands::signing_key::run(&command),
        Command::Import(args) => commands::import::run(&args),
        Command::Generate(args) => commands::generate::run(&args),
        Command::Inspect(args) => commands::inspect::run(&args),
        Command::Hash(args) => commands::hash::run(&args),
        Command::Scan(args) => commands::scan::run(&args),
        Command::Healthcheck(args) => commands::healthcheck::run(&args),
        Command::Completions(args) => commands::docs::completions(&args, Cli::command()),
        Command::Man(args) => commands::docs::man(&args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// `--help` explains every command and every argument (a command or flag without a
    /// description is a defect, as `migrate`, `import` and `pepper` once were).
    #[test]
    fn every_command_and_argument_has_a_description() {
        use clap::CommandFactory;
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            if command.get_about().is_none() {
                missing.push(format!("{path}: no description"));
            }
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}: no help", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &path, missing);
                }
            }
        }
        let mut missing = Vec::new();
        let mut command = super::Cli::command();
        command.build();
        walk(&command, "", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
