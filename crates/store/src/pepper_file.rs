//! Where the pepper comes from: the `KEYHAVEN_PEPPER` environment variable if set,
//! otherwise the file `pepper` in the data directory, created with mode 0600 on first
//! start. The format is [`keyhaven_core::pepper`]'s text form.
//!
//! Nothing here ever prints, logs or returns pepper material; errors name the source
//! and the entry number only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use keyhaven_core::{PepperError, PepperSet, PepperVersion, RandomError};
use zeroize::Zeroizing;

/// Name of the environment variable that, when set, replaces the pepper file.
pub const PEPPER_ENV: &str = "KEYHAVEN_PEPPER";
/// Name of the pepper file inside the data directory.
pub const PEPPER_FILE_NAME: &str = "pepper";

/// Where the peppers in use were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PepperSource {
    Environment,
    File(PathBuf),
    /// The file did not exist and was created with a fresh version 1.
    Created(PathBuf),
}

impl std::fmt::Display for PepperSource {
    /// Where the pepper came from, in words (never the pepper itself).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Environment => write!(f, "the {PEPPER_ENV} environment variable"),
            Self::File(path) => write!(f, "the file {}", path.display()),
            Self::Created(path) => write!(f, "the file {} (created now)", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PepperFileError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid pepper in {origin}: {source}")]
    Invalid { origin: String, source: PepperError },
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("{0}")]
    Refused(String),
    #[error(
        "{path} is missing, but this database was already used with one: restore the file \
         from your backup or copy it from another node of this deployment (or set {env}). A \
         new one would not match, so none is created."
    )]
    Missing { path: PathBuf, env: String },
}

fn io_err<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> PepperFileError + 'p {
    move |source| PepperFileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Loads the peppers: from `env_value` (the value of [`PEPPER_ENV`], passed in so tests
/// need not touch the process environment) if given, else from `<data_dir>/pepper`,
/// creating that file if it is absent.
pub fn load_or_create(
    data_dir: &Path,
    env_value: Option<&str>,
) -> Result<(PepperSet, PepperSource), PepperFileError> {
    load_named(data_dir, PEPPER_FILE_NAME, PEPPER_ENV, env_value, true)
}

/// Loads the peppers like [`load_or_create`], creating the file only when `may_create`
/// (the database holds nothing hashed with a pepper); otherwise a missing file is
/// [`PepperFileError::Missing`].
pub fn load(
    data_dir: &Path,
    env_value: Option<&str>,
    may_create: bool,
) -> Result<(PepperSet, PepperSource), PepperFileError> {
    load_named(
        data_dir,
        PEPPER_FILE_NAME,
        PEPPER_ENV,
        env_value,
        may_create,
    )
}

/// Name of the environment variable that, when set, replaces the master key file.
pub const MASTER_KEY_ENV: &str = "KEYHAVEN_MASTER_KEY";
/// Name of the master key file inside the data directory. The master key wraps the data
/// keys of recoverable keys; it has the pepper's versioned text format and handling
/// (mode 0600, created on first start, never printed) but is a separate secret, so the
/// two can be stored and rotated apart.
pub const MASTER_KEY_FILE_NAME: &str = "master.key";

/// Loads the master keys like [`load_or_create`] loads the pepper.
pub fn load_or_create_master(
    data_dir: &Path,
    env_value: Option<&str>,
) -> Result<(PepperSet, PepperSource), PepperFileError> {
    load_named(
        data_dir,
        MASTER_KEY_FILE_NAME,
        MASTER_KEY_ENV,
        env_value,
        true,
    )
}

/// Name of the environment variable that, when set, replaces the signing keys file.
pub const SIGNING_KEYS_ENV: &str = "KEYHAVEN_SIGNING_KEYS";
/// Name of the token signing keys file inside the data directory: the Ed25519 seeds
/// tokens are signed with, in the pepper's versioned text format (the newest version
/// signs; every version in the file verifies), mode 0600, created on first start.
pub const SIGNING_KEYS_FILE_NAME: &str = "signing-keys";

/// Loads the token signing keys like [`load`] loads the pepper.
pub fn load_signing_keys(
    data_dir: &Path,
    env_value: Option<&str>,
    may_create: bool,
) -> Result<(PepperSet, PepperSource), PepperFileError> {
    load_named(
        data_dir,
        SIGNING_KEYS_FILE_NAME,
        SIGNING_KEYS_ENV,
        env_value,
        may_create,
    )
}

/// Loads the master keys like [`load`] loads the pepper.
pub fn load_master(
    data_dir: &Path,
    env_value: Option<&str>,
    may_create: bool,
) -> Result<(PepperSet, PepperSource), PepperFileError> {
    load_named(
        data_dir,
        MASTER_KEY_FILE_NAME,
        MASTER_KEY_ENV,
        env_value,
        may_create,
    )
}

fn load_named(
    data_dir: &Path,
    file_name: &str,
    env_name: &str,
    env_value: Option<&str>,
    may_create: bool,
) -> Result<(PepperSet, PepperSource), PepperFileError> {
    if let Some(value) = env_value {
        let set = PepperSet::parse(value).map_err(|source| PepperFileError::Invalid {
            origin: env_name.to_owned(),
            source,
        })?;
        return Ok((set, PepperSource::Environment));
    }
    let path = data_dir.join(file_name);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            warn_if_readable_by_others(&path);
            let set = PepperSet::parse(&text).map_err(|source| PepperFileError::Invalid {
                origin: path.display().to_string(),
                source,
            })?;
            Ok((set, PepperSource::File(path)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !may_create => {
            Err(PepperFileError::Missing {
                path,
                env: env_name.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let set = create(&path)?;
            Ok((set, PepperSource::Created(path)))
        }
        Err(e) => Err(io_err("cannot read pepper file", &path)(e)),
    }
}

/// Creates the pepper file with mode 0600 and one fresh version, durably: the file and
/// its directory are synced before the pepper is used for anything.
fn create(path: &Path) -> Result<PepperSet, PepperFileError> {
    let (_, entry) = PepperSet::new_entry(None)?;
    let what = if path.file_name().is_some_and(|n| n == MASTER_KEY_FILE_NAME) {
        "master key. Keep this file secret and back it up: without it no recoverable\n\
         # key can be revealed"
    } else if path
        .file_name()
        .is_some_and(|n| n == SIGNING_KEYS_FILE_NAME)
    {
        "token signing keys (Ed25519 seeds). Keep this file secret; every node\n\
         # needs the same one"
    } else {
        "pepper. Keep this file secret and back it up: without it no stored key\n\
         # can be verified"
    };
    let contents = Zeroizing::new(format!(
        "# Keyhaven {what}. One version per line, <version>:<64 hex digits>; newest wins.\n\
         {}\n",
        entry.as_str()
    ));
    let set = PepperSet::parse(&contents).map_err(|source| PepperFileError::Invalid {
        origin: path.display().to_string(),
        source,
    })?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("cannot create data directory", dir))?;
    }
    // create_new: if two processes race on first start, one wins and the other fails
    // rather than overwriting a pepper that may already be in use.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("cannot create pepper file", path))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("cannot write pepper file", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot sync data directory", dir))?;
    }
    Ok(set)
}

/// Adds a new pepper version to the file in `data_dir` (one above the newest) and returns
/// it. New keys use it from the next server start; keys hashed under older versions keep
/// verifying and are re-hashed to the newest on their next successful verify.
pub fn rotate(data_dir: &Path) -> Result<PepperVersion, PepperFileError> {
    rotate_file(&data_dir.join(PEPPER_FILE_NAME))
}

/// Adds a new signing key version to the file in `data_dir`, like [`rotate`].
pub fn rotate_signing_keys(data_dir: &Path) -> Result<PepperVersion, PepperFileError> {
    rotate_file(&data_dir.join(SIGNING_KEYS_FILE_NAME))
}

fn rotate_file(path: &Path) -> Result<PepperVersion, PepperFileError> {
    let path = path.to_owned();
    let text = read_existing(&path)?;
    let set = parse_file(&path, &text)?;
    let (version, entry) = PepperSet::new_entry(Some(&set))?;
    let mut next = Zeroizing::new(text.trim_end().to_owned());
    next.push('\n');
    next.push_str(entry.as_str());
    next.push('\n');
    parse_file(&path, &next)?;
    replace(&path, &next)?;
    Ok(version)
}

/// Removes `version` from the file in `data_dir`. The caller checks that no stored key
/// uses it any more; the newest version cannot be retired.
pub fn retire(data_dir: &Path, version: PepperVersion) -> Result<(), PepperFileError> {
    retire_file(&data_dir.join(PEPPER_FILE_NAME), version)
}

/// Removes a signing key version from the file in `data_dir`, like [`retire`].
pub fn retire_signing_key(data_dir: &Path, version: PepperVersion) -> Result<(), PepperFileError> {
    retire_file(&data_dir.join(SIGNING_KEYS_FILE_NAME), version)
}

fn retire_file(path: &Path, version: PepperVersion) -> Result<(), PepperFileError> {
    let path = path.to_owned();
    let text = read_existing(&path)?;
    let set = parse_file(&path, &text)?;
    if set.get(version).is_none() {
        return Err(PepperFileError::Refused(format!(
            "version {version} is not in {}",
            path.display()
        )));
    }
    if set.newest().version() == version {
        return Err(PepperFileError::Refused(format!(
            "version {version} is the newest (it is in use); rotate first"
        )));
    }
    let mut kept = Zeroizing::new(String::with_capacity(text.len()));
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            kept.push_str(line);
            kept.push('\n');
            continue;
        }
        let entries: Vec<&str> = line
            .split(',')
            .filter(|entry| {
                let v = entry.split(':').next().unwrap_or_default().trim();
                v.parse::<u32>().ok() != Some(version.get())
            })
            .collect();
        if !entries.is_empty() && entries.iter().any(|e| !e.trim().is_empty()) {
            kept.push_str(&entries.join(","));
            kept.push('\n');
        }
    }
    parse_file(&path, &kept)?;
    replace(&path, &kept)
}

fn read_existing(path: &Path) -> Result<Zeroizing<String>, PepperFileError> {
    fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(io_err("cannot read pepper file", path))
}

fn parse_file(path: &Path, text: &str) -> Result<PepperSet, PepperFileError> {
    PepperSet::parse(text).map_err(|source| PepperFileError::Invalid {
        origin: path.display().to_string(),
        source,
    })
}

/// Replaces the file atomically and durably: a private temporary file, synced, renamed
/// over the old one, then the directory synced. A crash leaves the old or the new file.
fn replace(path: &Path, contents: &str) -> Result<(), PepperFileError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("cannot create", &tmp))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("cannot replace pepper file", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot sync data directory", dir))?;
    }
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "pepper file is readable by other users; run chmod 600 on it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_load_creates_a_private_file_and_later_loads_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (first, source) = load_or_create(&data, None).unwrap();
        let path = data.join(PEPPER_FILE_NAME);
        assert_eq!(source, PepperSource::Created(path.clone()));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let (second, source) = load_or_create(&data, None).unwrap();
        assert_eq!(source, PepperSource::File(path));
        // Both loads must yield the same MAC: same pepper.
        let id = "7Gx9QbWkP2mZ";
        let s = keyhaven_core::SecretStr::new("same-secret");
        assert_eq!(first.verifier(id, s), second.verifier(id, s));
    }

    #[test]
    fn environment_wins_over_the_file_and_bad_values_are_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let value = format!("1:{}", "ab".repeat(32));
        let (_, source) = load_or_create(dir.path(), Some(&value)).unwrap();
        assert_eq!(source, PepperSource::Environment);
        assert!(!dir.path().join(PEPPER_FILE_NAME).exists());

        let err = load_or_create(dir.path(), Some("1:deadbeef"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(PEPPER_ENV), "{err}");
        assert!(!err.contains("deadbeef"), "{err}");
    }

    #[test]
    fn rotate_adds_a_version_and_retire_removes_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = load_or_create(dir.path(), None).unwrap();
        let v2 = rotate(dir.path()).unwrap();
        assert_eq!(v2.get(), 2);
        let (both, _) = load_or_create(dir.path(), None).unwrap();
        assert_eq!(
            both.versions().map(PepperVersion::get).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let v1 = PepperVersion::new(1).unwrap();
        let s = keyhaven_core::SecretStr::new("x");
        // Version 1 is unchanged by the rotation.
        assert_eq!(
            both.get(v1).unwrap().mac("id", s),
            first.newest().mac("id", s)
        );
        let path = dir.path().join(PEPPER_FILE_NAME);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        assert!(matches!(
            retire(dir.path(), v2),
            Err(PepperFileError::Refused(_))
        ));
        assert!(matches!(
            retire(dir.path(), PepperVersion::new(7).unwrap()),
            Err(PepperFileError::Refused(_))
        ));
        retire(dir.path(), v1).unwrap();
        let (only, _) = load_or_create(dir.path(), None).unwrap();
        assert_eq!(
            only.versions().map(PepperVersion::get).collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(only.newest().mac("id", s), both.newest().mac("id", s));
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with("# Keyhaven pepper")
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_new_pepper() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PEPPER_FILE_NAME);
        fs::write(&path, "1:nothex\n").unwrap();
        let err = load_or_create(dir.path(), None).unwrap_err();
        assert!(matches!(err, PepperFileError::Invalid { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "1:nothex\n");
    }
}
