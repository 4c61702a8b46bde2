//! Turning a secret into the value we store, and checking a presented secret against it.
//!
//! `verifier = HMAC-SHA256(pepper[v], key_id ‖ ":" ‖ secret)`, stored with `v`. A fast
//! keyed hash is right for keys: secrets carry ~175 random bits, so there is nothing for
//! a slow hash to protect (NIST SP 800-63B §5.1.2), and a slow hash on every request
//! would hand attackers a CPU denial of service. The pepper means a copy of the database
//! alone cannot confirm any guess.
//!
//! Comparisons are constant-time (how much of a secret matched never shows in timing:
//! `bench/timing.sh` measures it), and checking a key id we do not know costs the same
//! MAC as checking one we do. End to end the server does take longer for a key id that
//! exists (a store row is read and usage counted), which tells only what the public id
//! already says; key ids are ~70 random bits, so they cannot be found by probing.

use std::fmt;

use subtle::Choice;

use crate::mac::ct_eq_32;

use crate::pepper::{Pepper, PepperError, PepperSet, PepperVersion};
use crate::secret::SecretStr;

/// Length of a verifier MAC in bytes.
pub const VERIFIER_LEN: usize = 32;

/// What the store keeps for a key: the pepper version and the MAC. Not a secret in the
/// sense that it cannot be used as a key, but never logged either: `Debug` hides the MAC.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    version: PepperVersion,
    mac: [u8; VERIFIER_LEN],
}

impl Verifier {
    pub fn from_parts(version: PepperVersion, mac: [u8; VERIFIER_LEN]) -> Self {
        Self { version, mac }
    }

    pub fn version(&self) -> PepperVersion {
        self.version
    }

    pub fn mac(&self) -> &[u8; VERIFIER_LEN] {
        &self.mac
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("version", &self.version.get())
            .field("mac", &"<redacted>")
            .finish()
    }
}

/// The outcome of checking a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The secret matches. `rehash` is true when the stored verifier uses an older
    /// pepper version and should be replaced by [`PepperSet::verifier`].
    Valid { rehash: bool },
    /// The secret does not match, or the key id is unknown.
    Invalid,
}

impl Pepper {
    /// The MAC of `key_id ‖ ":" ‖ secret` under this pepper.
    pub fn mac(&self, key_id: &str, secret: SecretStr<'_>) -> [u8; VERIFIER_LEN] {
        self.mac
            .mac(&[key_id.as_bytes(), b":", secret.expose_secret().as_bytes()])
    }

    /// A keyed tag of `data` for an index that must not reveal `data` (for example the
    /// SHA-256 digests of imported keys): lookups use the tag, never the digest itself.
    pub fn index_tag(&self, purpose: &str, data: &[u8]) -> [u8; VERIFIER_LEN] {
        self.mac
            .mac(&[b"keyhaven/index/", purpose.as_bytes(), b"/", data])
    }

    /// A value that identifies this pepper without revealing it (a tag of a fixed
    /// label), stored in the database so a server given a different pepper under the same
    /// version refuses to start.
    pub fn check_value(&self) -> [u8; VERIFIER_LEN] {
        self.index_tag("secret-check", b"keyhaven")
    }

    /// A 32-byte key for `purpose`, derived from this pepper (HMAC of a label that no key
    /// id can produce, since key ids never contain `/`). Used to seal data the server must
    /// store but not be able to read without the pepper, such as replayable responses.
    pub fn derive_key(&self, purpose: &str) -> zeroize::Zeroizing<[u8; VERIFIER_LEN]> {
        zeroize::Zeroizing::new(self.mac.mac(&[b"keyhaven/derive/", purpose.as_bytes()]))
    }
}

impl PepperSet {
    /// A verifier for a new (or re-hashed) key, under the newest pepper.
    pub fn verifier(&self, key_id: &str, secret: SecretStr<'_>) -> Verifier {
        let pepper = self.newest();
        Verifier::from_parts(pepper.version(), pepper.mac(key_id, secret))
    }

    /// Checks `secret` for `key_id` against the stored verifier, or against nothing when
    /// the key id is unknown (`stored = None`): that path computes the same MAC and the
    /// same comparison and answers [`Verification::Invalid`].
    ///
    /// Errors only if the stored verifier names a pepper version that is not configured,
    /// which a server refuses at start (see [`PepperSet::require`]).
    pub fn verify(
        &self,
        key_id: &str,
        secret: SecretStr<'_>,
        stored: Option<&Verifier>,
    ) -> Result<Verification, PepperError> {
        const NO_KEY: [u8; VERIFIER_LEN] = [0; VERIFIER_LEN];
        let (pepper, expected, known) = match stored {
            Some(v) => match self.get(v.version) {
                Some(p) => (p, &v.mac, Choice::from(1)),
                None => {
                    let _ = self.newest().mac(key_id, secret);
                    return Err(PepperError::Missing(v.version.get()));
                }
            },
            None => (self.newest(), &NO_KEY, Choice::from(0)),
        };
        let computed = pepper.mac(key_id, secret);
        let matches: bool = (ct_eq_32(&computed, expected) & known).into();
        Ok(if matches {
            Verification::Valid {
                rehash: pepper.version() != self.newest().version(),
            }
        } else {
            Verification::Invalid
        })
    }
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, KeyInit};
    use sha2::Sha256;

    use super::*;

    fn set(entries: &[(u32, u8)]) -> PepperSet {
        PepperSet::new(
            entries
                .iter()
                .map(|&(v, b)| Pepper::new(PepperVersion::new(v).unwrap(), &[b; 32]))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_pepper() {
        let set = set(&[(1, 1), (2, 2)]);
        let p1 = set.get(PepperVersion::new(1).unwrap()).unwrap();
        let p2 = set.newest();
        assert_ne!(*p1.derive_key("a"), *p1.derive_key("b"));
        assert_ne!(*p1.derive_key("a"), *p2.derive_key("a"));
        assert_eq!(*p1.derive_key("a"), *p1.derive_key("a"));
    }

    #[test]
    fn verifier_is_hmac_sha256_of_id_colon_secret() {
        let peppers = set(&[(1, 0x11)]);
        let v = peppers.verifier("KEYID", SecretStr::new("SECRET"));
        // Independent computation with a freshly keyed HMAC, no precomputed state.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x11; 32]).unwrap();
        hmac::Mac::update(&mut mac, b"KEYID:SECRET");
        let expected: [u8; 32] = hmac::Mac::finalize(mac).into_bytes().into();
        assert_eq!(v.mac(), &expected);
        assert_eq!(v.version().get(), 1);
    }

    #[test]
    fn verify_accepts_the_right_secret_only() {
        let peppers = set(&[(1, 1)]);
        let stored = peppers.verifier("id", SecretStr::new("right"));
        let ok = peppers
            .verify("id", SecretStr::new("right"), Some(&stored))
            .unwrap();
        assert_eq!(ok, Verification::Valid { rehash: false });
        for (id, secret) in [
            ("id", "wrong"),
            ("other", "right"),
            ("id", "righ"),
            ("id", "right "),
        ] {
            assert_eq!(
                peppers
                    .verify(id, SecretStr::new(secret), Some(&stored))
                    .unwrap(),
                Verification::Invalid
            );
        }
    }

    #[test]
    fn unknown_key_id_is_invalid_even_if_the_mac_were_all_zeros() {
        let peppers = set(&[(1, 1)]);
        assert_eq!(
            peppers
                .verify("id", SecretStr::new("anything"), None)
                .unwrap(),
            Verification::Invalid
        );
    }

    #[test]
    fn older_pepper_versions_verify_and_ask_for_a_rehash() {
        let old = set(&[(1, 1)]);
        let stored = old.verifier("id", SecretStr::new("s"));
        let rotated = set(&[(1, 1), (2, 2)]);
        assert_eq!(
            rotated
                .verify("id", SecretStr::new("s"), Some(&stored))
                .unwrap(),
            Verification::Valid { rehash: true }
        );
        let fresh = rotated.verifier("id", SecretStr::new("s"));
        assert_eq!(fresh.version().get(), 2);
        assert_ne!(fresh.mac(), stored.mac());
    }

    #[test]
    fn a_missing_pepper_version_is_an_error_not_a_mismatch() {
        let stored = set(&[(3, 3)]).verifier("id", SecretStr::new("s"));
        let err = set(&[(1, 1)])
            .verify("id", SecretStr::new("s"), Some(&stored))
            .unwrap_err();
        assert_eq!(err, PepperError::Missing(3));
    }

    #[test]
    fn debug_hides_the_mac() {
        let v = Verifier::from_parts(PepperVersion::new(1).unwrap(), [0xCD; 32]);
        let dbg = format!("{v:?}");
        assert!(
            !dbg.contains("205") && !dbg.to_lowercase().contains("cd"),
            "{dbg}"
        );
    }
}
