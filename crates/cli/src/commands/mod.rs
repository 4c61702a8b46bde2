pub mod copy;
pub mod docs;
pub mod generate;
pub mod hash;
pub mod healthcheck;
pub mod import;
pub mod inspect;
pub mod migrate;
pub mod operator;
pub mod pepper;
pub mod proxy;
pub mod root_key;
pub mod scan;
pub mod serve;
pub mod signing_key;

use std::io;

/// Treats a closed pipe (`keyhaven generate | head`) as a normal end, not an error.
pub(crate) fn ignore_broken_pipe(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Whether `e` is a closed pipe on stdout, which ends output normally.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|io_err| io_err.kind() == io::ErrorKind::BrokenPipe)
}
