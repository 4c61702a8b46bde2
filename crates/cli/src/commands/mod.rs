pub mod generate;
pub mod inspect;

use std::io;

/// Treats a closed pipe (`keyhaven generate | head`) as a normal end, not an error.
pub(crate) fn ignore_broken_pipe(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
