//! Operators: the people who sign in to the dashboard. Each has an email address, a role
//! (`admin` changes things, `viewer` only reads) and a password kept as an Argon2id hash
//! (OWASP's parameters: 19 MiB, 2 passes, 1 lane). Managed from the command line
//! (`keyhaven operator …`); signing in is [`login`].
//!
//! Sign-in failures are counted per email address and per client address in the
//! database, so the limits hold across nodes; an unknown email costs the same hash as a
//! known one, so timing does not tell which addresses exist.

use std::net::IpAddr;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use keyhaven_store::{AuditEvent, Change, Operator, OperatorRole, Store, Timestamp};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::ids;

/// Shortest password accepted (characters).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (bytes): hashing cost must not be the caller's to choose.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest email address accepted.
pub const MAX_EMAIL: usize = 254;

/// An email address as operators are keyed by it: trimmed, lower-case, one `@` with
/// something on each side, no spaces or control characters.
pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && email.matches('@').count() == 1
        && !email.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';')
        });
    if valid {
        Ok(email)
    } else {
        Err(ServiceError::invalid(
            "the email address must look like name@example.com (at most 254 characters)",
        ))
    }
}

fn check_password(password: &SecretString) -> Result<()> {
    let text = password.expose_secret();
    if text.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ServiceError::invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if text.len() > MAX_PASSWORD_BYTES {
        return Err(ServiceError::invalid(format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// An Argon2id hash of `password` (a PHC string with a fresh salt). Slow on purpose
/// (tens of milliseconds): call it off the async threads.
pub fn hash_password(password: &SecretString) -> Result<String> {
    let hash = Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        .map_err(|e| ServiceError::Unexpected(anyhow::anyhow!("hashing a password: {e}")))?;
    Ok(hash.to_string())
}

/// Whether `password` matches `hash` (constant-time inside argon2). A malformed hash
/// matches nothing.
pub fn password_matches(hash: &str, password: &SecretString) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Argon2 computations allowed at once: each takes 19 MiB for tens of milliseconds, so a
/// flood of sign-ins (from many addresses, with many emails, past the throttles) waits
/// here instead of growing memory without bound.
const CONCURRENT_HASHES: usize = 4;

/// Runs `work` (an Argon2 hash or check) on a blocking thread once one of the
/// [`CONCURRENT_HASHES`] permits is free.
async fn argon2_off_thread<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    static PERMITS: std::sync::LazyLock<tokio::sync::Semaphore> =
        std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(CONCURRENT_HASHES));
    let _permit = PERMITS
        .acquire()
        .await
        .map_err(|e| ServiceError::Unexpected(anyhow::anyhow!("{what}: {e}")))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Unexpected(anyhow::anyhow!("{what}: {e}")))
}

async fn hash_off_thread(password: SecretString) -> Result<String> {
    argon2_off_thread("hashing a password", move || hash_password(&password)).await?
}

fn operator_event(
    actor: &Actor,
    action: &str,
    operator: &Operator,
    changes: serde_json::Map<String, serde_json::Value>,
    now: Timestamp,
) -> Result<AuditEvent> {
    audit::event(
        actor,
        action,
        ("operator", &operator.id),
        None,
        changes,
        now,
    )
}

/// Creates an operator. The email must be free (`email_taken`).
pub async fn create(
    store: &dyn Store,
    actor: &Actor,
    email: &str,
    role: OperatorRole,
    password: SecretString,
    now: Timestamp,
) -> Result<Operator> {
    let email = normalize_email(email)?;
    check_password(&password)?;
    let operator = Operator {
        id: ids::new_id("op")?,
        email,
        role,
        password_hash: hash_off_thread(password).await?,
        created_at: now,
        updated_at: now,
    };
    let event = operator_event(
        actor,
        "operator.create",
        &operator,
        audit::created(&[
            ("email", json!(operator.email)),
            ("role", json!(role.as_str())),
        ]),
        now,
    )?;
    store
        .create_operator(&operator, Change::audited(&event))
        .await?;
    Ok(operator)
}

pub async fn list(store: &dyn Store) -> Result<Vec<Operator>> {
    Ok(store.list_operators().await?)
}

async fn by_email(store: &dyn Store, email: &str) -> Result<Operator> {
    let email = normalize_email(email)?;
    store
        .operator_by_email(&email)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// Deletes the operator with this email; its sessions end.
pub async fn delete(store: &dyn Store, actor: &Actor, email: &str, now: Timestamp) -> Result<()> {
    let operator = by_email(store, email).await?;
    let event = operator_event(
        actor,
        "operator.delete",
        &operator,
        audit::created(&[("email", json!(operator.email))]),
        now,
    )?;
    Ok(store
        .delete_operator(&operator.id, Change::audited(&event))
        .await?)
}

/// Gives the operator with this email a new password; its sessions end.
pub async fn reset_password(
    store: &dyn Store,
    actor: &Actor,
    email: &str,
    password: SecretString,
    now: Timestamp,
) -> Result<()> {
    let operator = by_email(store, email).await?;
    check_password(&password)?;
    let hash = hash_off_thread(password).await?;
    let event = operator_event(
        actor,
        "operator.reset_password",
        &operator,
        serde_json::Map::new(),
        now,
    )?;
    Ok(store
        .set_operator_password(&operator.id, &hash, now, Change::audited(&event))
        .await?)
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong email or password (never says which).
    #[error("wrong email address or password")]
    Wrong,
    /// Too many failures for this email or from this address; try again later.
    #[error("too many failed sign-ins; try again in {retry_after_minutes} minutes")]
    Throttled { retry_after_minutes: u64 },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// The limits [`login`] applies.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_email: u32,
    pub per_ip: u32,
    pub window: time::Duration,
}

/// A hash of a random password nobody knows: checked when the email is unknown, so a
/// miss costs what a hit costs.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut bytes = [0u8; 24];
        let _ = keyhaven_core::random::fill(&mut bytes);
        hash_password(&SecretString::from(hex::encode(bytes))).unwrap_or_default()
    })
}

/// Checks an operator's password, unless this email or address has failed too often
/// lately. The attempt is noted in both buckets before the (slow) password check, so
/// guesses sent in parallel all count; a throttled attempt is not counted, a successful
/// one is forgotten and clears the email's failures.
pub async fn login(
    store: &dyn Store,
    email: &str,
    password: SecretString,
    ip: Option<IpAddr>,
    limits: LoginLimits,
    now: Timestamp,
) -> std::result::Result<Operator, LoginError> {
    let email = normalize_email(email).map_err(|_| LoginError::Wrong)?;
    if password.expose_secret().len() > MAX_PASSWORD_BYTES {
        return Err(LoginError::Wrong);
    }
    let email_bucket = format!("email:{email}");
    let mut buckets = vec![email_bucket.clone()];
    if let Some(ip) = ip {
        buckets.push(format!("ip:{}", crate::limits::failures::client_block(ip)));
    }
    let attempt = ids::new_id("att").map_err(ServiceError::Unexpected)?;
    store
        .record_login_failure(&attempt, &buckets, now)
        .await
        .map_err(ServiceError::from)?;
    let since = now - limits.window;
    for (bucket, limit) in buckets.iter().zip([limits.per_email, limits.per_ip]) {
        let attempts = store
            .login_failures(bucket, since)
            .await
            .map_err(ServiceError::from)?;
        if attempts > u64::from(limit) {
            store
                .forget_login_attempt(&attempt)
                .await
                .map_err(ServiceError::from)?;
            return Err(LoginError::Throttled {
                retry_after_minutes: u64::try_from(limits.window.whole_minutes()).unwrap_or(15),
            });
        }
    }
    let operator = store
        .operator_by_email(&email)
        .await
        .map_err(ServiceError::from)?;
    let hash = operator
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |o| o.password_hash.clone());
    let matched = argon2_off_thread("checking a password", move || {
        password_matches(&hash, &password)
    })
    .await?;
    match operator {
        Some(operator) if matched => {
            store
                .forget_login_attempt(&attempt)
                .await
                .map_err(ServiceError::from)?;
            store
                .clear_login_failures(&email_bucket)
                .await
                .map_err(ServiceError::from)?;
            Ok(operator)
        }
        _ => Err(LoginError::Wrong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_a_few_password_hashes_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                tokio::spawn(argon2_off_thread("test", || {
                    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                    MOST.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    RUNNING.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let most = MOST.load(Ordering::SeqCst);
        assert!(most <= CONCURRENT_HASHES, "{most} at once");
        assert!(most > 1, "they do run side by side: {most}");
    }

    /// Addresses of one IPv6 /64 share the per-address throttle (rotating through a
    /// subscriber's block gains nothing); another /64 has its own.
    #[tokio::test]
    async fn sign_in_failures_count_an_ipv6_client_by_its_64() {
        let dir = tempfile::tempdir().unwrap();
        let store = keyhaven_store::SqliteStore::open(&dir.path().join("k.db"))
            .await
            .unwrap();
        let limits = LoginLimits {
            per_email: 100,
            per_ip: 2,
            window: time::Duration::minutes(15),
        };
        let now = crate::clock::now();
        let attempt = |n: u32, ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            let email = format!("who{n}@example.com");
            let store = &store;
            async move {
                login(
                    store,
                    &email,
                    SecretString::from("wrong"),
                    Some(ip),
                    limits,
                    now,
                )
                .await
            }
        };
        for (n, ip) in [(1, "2001:db8:1:2::1"), (2, "2001:db8:1:2:ffff::9")] {
            assert!(
                matches!(attempt(n, ip).await, Err(LoginError::Wrong)),
                "{ip}"
            );
        }
        let third = attempt(3, "2001:db8:1:2:abcd::3").await;
        assert!(
            matches!(third, Err(LoginError::Throttled { .. })),
            "a third address of the same /64"
        );
        let other = attempt(4, "2001:db8:1:3::1").await;
        assert!(matches!(other, Err(LoginError::Wrong)), "another /64");
    }

    #[test]
    fn passwords_hash_with_argon2id_and_owasp_parameters() {
        let password = SecretString::from("correct horse battery");
        let hash = hash_password(&password).unwrap_or_default();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(password_matches(&hash, &password));
        assert!(!password_matches(
            &hash,
            &SecretString::from("correct horse battery!")
        ));
        assert!(!password_matches("not a hash", &password));
        assert_ne!(hash, hash_password(&password).unwrap_or_default(), "salted");
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").ok().as_deref(),
            Some("ann@example.com")
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
            "ann@.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(check_password(&SecretString::from("short")).is_err());
        assert!(check_password(&SecretString::from("x".repeat(MAX_PASSWORD_BYTES + 1))).is_err());
        assert!(check_password(&SecretString::from("twelve chars")).is_ok());
    }
}
