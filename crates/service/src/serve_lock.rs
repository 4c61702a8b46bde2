//! One server per SQLite database. Two `keyhaven serve` processes on one SQLite file
//! would each keep their own verify cache and rate-limit buckets, so a key revoked
//! through one would keep verifying on the other until its cache entry expired. The
//! first server holds an exclusive lock on `<data dir>/serve.lock` (released by the
//! kernel when the process ends, however it ends); a second is refused and told what
//! to do. PostgreSQL deployments share changes through the change feed and take no lock.
//! Other commands (`root-key create`, `operator …`, `import`) still write beside a running
//! server: each change reaches the database in its own transaction, and the server
//! re-reads a changed key within `cache_ttl_ms`.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::Context as _;
use rustix::fs::{FlockOperation, flock};

use crate::config::Config;

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "serve.lock";

/// Held for as long as this process serves the SQLite database.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

/// Takes the data directory's serving lock when the database is SQLite (`None` on
/// PostgreSQL); fails, naming the other server's process id, when another server holds
/// it.
pub fn acquire(config: &Config) -> anyhow::Result<Option<ServeLock>> {
    let sqlite = config
        .database_url
        .as_deref()
        .is_none_or(|url| url.starts_with("sqlite:"));
    if !sqlite {
        return Ok(None);
    }
    let path = config.data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.flush()?;
            Ok(Some(ServeLock { _file: file }))
        }
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            anyhow::bail!(
                "another `keyhaven serve` (process {}) is already serving the SQLite database in \
                 {}: one SQLite database has one server, or a key revoked through one would \
                 keep verifying on the other. Stop the other server, or, to run several nodes, \
                 move to PostgreSQL (`keyhaven copy`; README, \"Several nodes on PostgreSQL\").",
                pid.trim(),
                config.data_dir.display()
            )
        }
        Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_server_on_one_sqlite_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let first = acquire(&config);
        assert!(matches!(first, Ok(Some(_))));
        let second = acquire(&config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(second.contains("already serving"), "{second}");
        assert!(second.contains(&std::process::id().to_string()), "{second}");
        drop(first);
        assert!(
            matches!(acquire(&config), Ok(Some(_))),
            "free again once released"
        );
        let postgres = Config {
            database_url: Some("postgres://db/keyhaven".into()),
            ..config
        };
        assert!(matches!(acquire(&postgres), Ok(None)));
    }
}
