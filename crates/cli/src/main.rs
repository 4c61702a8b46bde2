use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under verify load glibc's arenas cost 12% of the
/// server's CPU and contended on their locks (see the README's performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    keyhaven::run(keyhaven::Cli::parse())
}
