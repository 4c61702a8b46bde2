use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keyhaven::run(keyhaven::Cli::parse())
}
