//! Opening what a server (or a CLI command acting on its data) needs: the data
//! directory, the pepper and the store.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use keyhaven_core::PepperSet;
use keyhaven_store::pepper_file::{self, PepperSource};
use keyhaven_store::{PgOptions, PgStore, SqliteStore, Store, Timestamp, Workload};
use subtle::ConstantTimeEq as _;

use crate::config::Config;

/// Creates the data directory (mode 0700) if it is missing.
pub fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

/// The file in the data directory that receives the first root key when it cannot be
/// shown on a terminal.
pub const FIRST_ROOT_KEY_FILE_NAME: &str = "initial-root-key";

/// Writes the first root key to `<data dir>/initial-root-key`, mode 0600, durably (file and
/// directory synced), replacing a file left by an earlier database. Returns its path.
pub fn write_first_root_key(data_dir: &Path, key: &str) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data_dir.join(FIRST_ROOT_KEY_FILE_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("replacing {}", path.display())),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(key.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Tries to reach PostgreSQL when opening the store.
const CONNECT_ATTEMPTS: u32 = 4;

/// The names under which the database keeps each secret's check values.
const PEPPER: &str = "pepper";
const MASTER_KEY: &str = "master_key";

/// The pepper for `store`, from `KEYHAVEN_PEPPER` or `<data dir>/pepper`, checked against
/// the database before anything uses it:
/// - the file is created only while the database holds no key and no pepper check value
///   (a new pepper for a populated database would fail every key, root keys included);
/// - a version whose check value differs from the stored one (another pepper under the
///   same version) is refused; a version without one has its value stored;
/// - every pepper version a stored key uses must be configured;
/// - imported keys already on the native verifier get peppered lookups if they still
///   have old ones ([`crate::import::upgrade_stored`]).
pub async fn load_peppers(
    data_dir: &Path,
    store: &dyn Store,
) -> anyhow::Result<(PepperSet, PepperSource)> {
    let in_use = store.holds_keys().await? || !store.secret_checks(PEPPER).await?.is_empty();
    let env = zeroize::Zeroizing::new(std::env::var(pepper_file::PEPPER_ENV).ok());
    let (peppers, source) =
        pepper_file::load(data_dir, env.as_deref(), !in_use).context("loading the pepper")?;
    check_secret(store, PEPPER, &peppers).await?;
    require_peppers(store, &peppers).await?;
    let upgrade = crate::import::upgrade_stored(store, &peppers, false).await?;
    if upgrade.waiting > 0 {
        tracing::warn!(
            keys = upgrade.waiting,
            "imported keys stored by an older version and never verified since do not verify \
             until `keyhaven migrate --upgrade-imports` converts them (once)"
        );
    }
    Ok((peppers, source))
}

/// The pepper as configured, without creating, checking or changing anything: for
/// diagnostics (`keyhaven pepper status`).
pub fn read_peppers(data_dir: &Path) -> anyhow::Result<(PepperSet, PepperSource)> {
    let env = zeroize::Zeroizing::new(std::env::var(pepper_file::PEPPER_ENV).ok());
    pepper_file::load(data_dir, env.as_deref(), false).context("loading the pepper")
}

/// The master keys for recoverable keys, from `KEYHAVEN_MASTER_KEY` or
/// `<data dir>/master.key`, checked like the pepper: created only while no recoverable
/// key and no master key check value is stored, refused when different. So every node
/// on one database needs the same master key, as it needs the same pepper (a node with
/// its own would seal keys the others cannot reveal).
pub async fn load_master_keys(data_dir: &Path, store: &dyn Store) -> anyhow::Result<PepperSet> {
    let in_use =
        store.holds_sealed_keys().await? || !store.secret_checks(MASTER_KEY).await?.is_empty();
    let env = zeroize::Zeroizing::new(std::env::var(pepper_file::MASTER_KEY_ENV).ok());
    let (set, _) = pepper_file::load_master(data_dir, env.as_deref(), !in_use)
        .context("loading the master key")?;
    check_secret(store, MASTER_KEY, &set).await?;
    Ok(set)
}

const SIGNING_KEY: &str = "signing_key";

/// The token signing keys, from `KEYHAVEN_SIGNING_KEYS` or `<data dir>/signing-keys`,
/// checked like the pepper: the file is created only while the database has recorded
/// no signing key, and a version that differs from the one recorded is refused (a node
/// with its own keys would mint tokens the others' JWKS does not list). A version the
/// database knows but the file lacks (rotated on another node, or retired) is warned
/// about: tokens it signed do not verify here.
pub async fn load_signing_keys(
    data_dir: &Path,
    store: &dyn Store,
) -> anyhow::Result<crate::tokens::SigningKeys> {
    let recorded = store.secret_checks(SIGNING_KEY).await?;
    let env = zeroize::Zeroizing::new(std::env::var(pepper_file::SIGNING_KEYS_ENV).ok());
    let (secrets, source) =
        pepper_file::load_signing_keys(data_dir, env.as_deref(), recorded.is_empty())
            .context("loading the token signing keys")?;
    check_secret(store, SIGNING_KEY, &secrets).await?;
    for (version, _) in &recorded {
        let known = keyhaven_core::PepperVersion::new(*version).and_then(|v| secrets.get(v));
        if known.is_none() {
            tracing::warn!(
                version,
                "token signing key version {version} was used on this database but is not \
                 configured here: its tokens do not verify on this node (copy the signing \
                 keys file from the node that rotated, or ignore this if it was retired)"
            );
        }
    }
    crate::tokens::SigningKeys::from_secrets(&secrets, source)
}

/// The token signing keys as configured, without creating, checking or recording
/// anything: for diagnostics (`keyhaven signing-key status`), which must not start a
/// rotated version's clock before a server uses it.
pub fn read_signing_keys(data_dir: &Path) -> anyhow::Result<crate::tokens::SigningKeys> {
    let env = zeroize::Zeroizing::new(std::env::var(pepper_file::SIGNING_KEYS_ENV).ok());
    let (secrets, source) = pepper_file::load_signing_keys(data_dir, env.as_deref(), false)
        .context("loading the token signing keys")?;
    crate::tokens::SigningKeys::from_secrets(&secrets, source)
}

/// When each signing key version was first used by a server on this database: a
/// version stopped signing when the next one was first used.
pub async fn signing_key_times(store: &dyn Store) -> anyhow::Result<Vec<(u32, Timestamp)>> {
    Ok(store.secret_check_times(SIGNING_KEY).await?)
}

/// Compares each configured version of the secret `name` with its stored check value
/// (constant-time), and stores the values of versions that have none yet.
async fn check_secret(store: &dyn Store, name: &str, secrets: &PepperSet) -> anyhow::Result<()> {
    // `None`: no value stored for the version; else whether the stored one is `value`.
    let agrees = |stored: &[(u32, Vec<u8>)], version: u32, value: &[u8]| {
        stored
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, check)| bool::from(value.ct_eq(check.as_slice())))
    };
    let stored = store.secret_checks(name).await?;
    for version in secrets.versions() {
        let Some(secret) = secrets.get(version) else {
            continue;
        };
        let value = secret.check_value();
        match agrees(&stored, version.get(), &value) {
            Some(true) => {}
            Some(false) => bail!(
                "the {} for version {version} is not the one this database was used with \
                 (a different file or environment value?): refusing to start, since every \
                 key it protects would fail",
                name.replace('_', " ")
            ),
            None => {
                store
                    .record_secret_check(name, version.get(), &value, crate::clock::now())
                    .await?;
                // Another process may have stored its value first: the stored one rules.
                let now_stored = store.secret_checks(name).await?;
                if agrees(&now_stored, version.get(), &value) != Some(true) {
                    bail!(
                        "another process started on this database at the same time with a \
                         different {} for version {version}: refusing to start",
                        name.replace('_', " ")
                    );
                }
            }
        }
    }
    Ok(())
}

/// Refuses to go on when a stored key was hashed with a pepper version that is not
/// configured: such keys could never verify, and falling back would be worse.
pub async fn require_peppers(store: &dyn Store, peppers: &PepperSet) -> anyhow::Result<()> {
    let stored = store.pepper_versions().await?;
    let versions = stored
        .iter()
        .map(|&v| keyhaven_core::PepperVersion::new(v).context("stored pepper version 0"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    peppers
        .require(versions)
        .context("the database holds keys hashed with a pepper version that is not configured")?;
    Ok(())
}

/// The store named by the configuration, for a server: `database_url` if set, else the
/// SQLite file in the data directory. Migrations are applied on open.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    open_store_for(config, Workload::Serve).await
}

/// [`open_store`] for `workload` (which sizes SQLite's page cache).
pub async fn open_store_for(config: &Config, workload: Workload) -> anyhow::Result<Arc<dyn Store>> {
    match config.database_url.as_deref() {
        None => Ok(Arc::new(
            SqliteStore::open_for(&config.database_path(), workload).await?,
        )),
        Some(url) if url.starts_with("sqlite:") => {
            Ok(Arc::new(SqliteStore::open_url_for(url, workload).await?))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let options = PgOptions {
                max_connections: config.database_max_connections,
                allow_unsafe_durability: config.allow_unsafe_durability,
            };
            // A server starting beside its database may be a little early: a few tries,
            // each said, with growing pauses (0.5, 1, 2 s), then the last error.
            let mut pause = std::time::Duration::from_millis(500);
            for attempt in 1..=CONNECT_ATTEMPTS {
                match PgStore::open(url, &options).await {
                    Ok(store) => return Ok(Arc::new(store)),
                    Err(e)
                        if attempt < CONNECT_ATTEMPTS
                            && e.to_string().starts_with("cannot connect to PostgreSQL") =>
                    {
                        tracing::warn!(
                            error = %e,
                            attempt,
                            retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                            "PostgreSQL is not reachable yet; trying again"
                        );
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            bail!("PostgreSQL could not be reached")
        }
        Some(url) => {
            let scheme = url.split(':').next().unwrap_or_default();
            bail!("unsupported database URL scheme `{scheme}:` (use sqlite: or postgres://)")
        }
    }
}
