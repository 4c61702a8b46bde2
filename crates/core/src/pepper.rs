//! The pepper: a 32-byte secret kept outside the database and mixed into every stored
//! verifier, so a stolen database alone cannot confirm a single guessed key.
//!
//! Peppers are versioned. New verifiers use the newest version; a key verified under an
//! older version is re-hashed to the newest. The HMAC key schedule is done once per
//! version when the set is built, so verifying a key costs two SHA-256 compressions and
//! no key setup.
//!
//! Text form (used by the pepper file and the `KEYHAVEN_PEPPER` environment variable):
//! entries `<version>:<64 hex digits>`, separated by newlines or commas; `#` starts a
//! comment that runs to the end of the line. Reading and writing files lives in the store
//! crate; this module only parses and formats.

use std::fmt;

use zeroize::Zeroizing;

use crate::mac::PrecomputedHmac;
use crate::random::{self, RandomError};

/// Length of a pepper in bytes.
pub const PEPPER_LEN: usize = 32;

/// A pepper version number (1, 2, …). Stored beside every verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PepperVersion(u32);

impl PepperVersion {
    /// Versions start at 1; 0 is refused so an unset column can never look valid.
    pub fn new(v: u32) -> Option<Self> {
        (v > 0).then_some(Self(v))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PepperVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Problems with pepper configuration. No variant ever carries pepper material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PepperError {
    #[error("no pepper is configured")]
    Empty,
    #[error("pepper entry {entry}: {reason}")]
    Syntax { entry: usize, reason: &'static str },
    #[error("pepper version {0} is configured twice")]
    Duplicate(u32),
    #[error(
        "pepper version {0} is needed by stored keys but is not configured; \
         restore it (file or KEYHAVEN_PEPPER) rather than starting without it"
    )]
    Missing(u32),
}

/// One pepper version, with its HMAC key schedule already computed.
#[derive(Clone)]
pub struct Pepper {
    version: PepperVersion,
    pub(crate) mac: PrecomputedHmac,
}

impl Pepper {
    /// Builds a pepper from its raw bytes. The bytes are only used to key the HMAC.
    pub fn new(version: PepperVersion, bytes: &[u8; PEPPER_LEN]) -> Self {
        Self {
            version,
            mac: PrecomputedHmac::new(bytes),
        }
    }

    pub fn version(&self) -> PepperVersion {
        self.version
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pepper")
            .field("version", &self.version.0)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// All configured pepper versions; the highest is used for new verifiers.
#[derive(Clone)]
pub struct PepperSet {
    /// The highest version, kept apart so the hot path never searches.
    newest: Pepper,
    /// Every version including the newest, sorted ascending.
    peppers: Vec<Pepper>,
}

impl PepperSet {
    /// Builds a set from peppers; refuses an empty set and duplicate versions.
    pub fn new(mut peppers: Vec<Pepper>) -> Result<Self, PepperError> {
        peppers.sort_by_key(|p| p.version);
        let mut previous = None;
        for p in &peppers {
            if previous == Some(p.version) {
                return Err(PepperError::Duplicate(p.version.0));
            }
            previous = Some(p.version);
        }
        let newest = peppers.last().cloned().ok_or(PepperError::Empty)?;
        Ok(Self { newest, peppers })
    }

    /// Parses the text form described in the module documentation.
    pub fn parse(text: &str) -> Result<Self, PepperError> {
        let entries = text
            .lines()
            .map(|line| line.split_once('#').map_or(line, |(before, _)| before))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        let mut peppers = Vec::new();
        for (i, entry) in entries.enumerate() {
            let entry_no = i + 1;
            let syntax = |reason| PepperError::Syntax {
                entry: entry_no,
                reason,
            };
            let (version, hex_bytes) = entry
                .split_once(':')
                .ok_or(syntax("expected <version>:<64 hex digits>"))?;
            let version = version
                .trim()
                .parse::<u32>()
                .ok()
                .and_then(PepperVersion::new)
                .ok_or(syntax("version must be a whole number from 1"))?;
            let mut bytes = Zeroizing::new([0u8; PEPPER_LEN]);
            hex::decode_to_slice(hex_bytes.trim(), bytes.as_mut_slice())
                .map_err(|_| syntax("pepper must be exactly 64 hex digits (32 bytes)"))?;
            peppers.push(Pepper::new(version, &bytes));
        }
        Self::new(peppers)
    }

    /// A new text entry `<version>:<64 hex digits>` with fresh random bytes, for a version
    /// one above the newest (or 1 for a new deployment).
    pub fn new_entry(
        after: Option<&PepperSet>,
    ) -> Result<(PepperVersion, Zeroizing<String>), RandomError> {
        let next = after.map_or(1, |set| set.newest().version.0.saturating_add(1));
        let mut bytes = Zeroizing::new([0u8; PEPPER_LEN]);
        random::fill(bytes.as_mut_slice())?;
        let hex_bytes = Zeroizing::new(hex::encode(bytes.as_slice()));
        let version = PepperVersion(next);
        Ok((
            version,
            Zeroizing::new(format!("{next}:{}", hex_bytes.as_str())),
        ))
    }

    /// The pepper that new verifiers use.
    pub fn newest(&self) -> &Pepper {
        &self.newest
    }

    /// The pepper of `version`, if configured.
    pub fn get(&self, version: PepperVersion) -> Option<&Pepper> {
        self.peppers
            .binary_search_by_key(&version, |p| p.version)
            .ok()
            .and_then(|i| self.peppers.get(i))
    }

    /// Configured versions, ascending.
    pub fn versions(&self) -> impl Iterator<Item = PepperVersion> + '_ {
        self.peppers.iter().map(|p| p.version)
    }

    /// Fails with [`PepperError::Missing`] naming the first of `needed` that is not
    /// configured. Servers call this at start with every version their store still uses.
    pub fn require(
        &self,
        needed: impl IntoIterator<Item = PepperVersion>,
    ) -> Result<(), PepperError> {
        match needed.into_iter().find(|v| self.get(*v).is_none()) {
            Some(v) => Err(PepperError::Missing(v.0)),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for PepperSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PepperSet")
            .field(
                "versions",
                &self.versions().map(|v| v.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretStr;

    fn hex32(b: u8) -> String {
        hex::encode([b; 32])
    }

    #[test]
    fn parses_versions_comments_and_separators() {
        let text = format!(
            "# a comment, with a comma and a 1:{x}\n1:{a}, 3:{b} # trailing\n\n2:{c}\n",
            x = hex32(9),
            a = hex32(1),
            b = hex32(3),
            c = hex32(2)
        );
        let set = PepperSet::parse(&text).unwrap();
        let versions: Vec<u32> = set.versions().map(PepperVersion::get).collect();
        assert_eq!(versions, [1, 2, 3]);
        assert_eq!(set.newest().version().get(), 3);
    }

    #[test]
    fn rejects_bad_entries_without_echoing_them() {
        let secretish = "cafebabe".repeat(8);
        for (text, want) in [
            ("".to_owned(), PepperError::Empty),
            ("# only a comment".to_owned(), PepperError::Empty),
            (
                format!("0:{secretish}"),
                PepperError::Syntax {
                    entry: 1,
                    reason: "version must be a whole number from 1",
                },
            ),
            (
                secretish.clone(),
                PepperError::Syntax {
                    entry: 1,
                    reason: "expected <version>:<64 hex digits>",
                },
            ),
            (
                format!("1:{}", &secretish[..62]),
                PepperError::Syntax {
                    entry: 1,
                    reason: "pepper must be exactly 64 hex digits (32 bytes)",
                },
            ),
            (
                format!("1:{secretish},1:{secretish}"),
                PepperError::Duplicate(1),
            ),
        ] {
            let err = PepperSet::parse(&text).err().unwrap();
            assert_eq!(err, want, "{text}");
            assert!(!err.to_string().contains("cafebabe"));
        }
    }

    #[test]
    fn require_names_the_missing_version() {
        let set = PepperSet::parse(&format!("1:{}\n2:{}", hex32(1), hex32(2))).unwrap();
        let v = |n| PepperVersion::new(n).unwrap();
        assert!(set.require([v(1), v(2)]).is_ok());
        let err = set.require([v(2), v(5)]).unwrap_err();
        assert_eq!(err, PepperError::Missing(5));
        assert!(err.to_string().contains("pepper version 5"));
    }

    #[test]
    fn new_entry_follows_the_newest_version_and_parses_back() {
        let (v1, e1) = PepperSet::new_entry(None).unwrap();
        assert_eq!(v1.get(), 1);
        let set = PepperSet::parse(&e1).unwrap();
        let (v2, e2) = PepperSet::new_entry(Some(&set)).unwrap();
        assert_eq!(v2.get(), 2);
        let both = PepperSet::parse(&format!("{}\n{}", e1.as_str(), e2.as_str())).unwrap();
        assert_eq!(both.newest().version(), v2);
        // Two fresh peppers differ, so their MACs differ.
        let s = SecretStr::new("secret");
        assert_ne!(
            both.get(v1).unwrap().mac("id", s),
            both.get(v2).unwrap().mac("id", s)
        );
    }

    #[test]
    fn debug_hides_pepper_bytes() {
        let set = PepperSet::parse(&format!("1:{}", hex32(0xAB))).unwrap();
        let dbg = format!("{set:?} {:?}", set.newest());
        assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
        assert!(!dbg.contains("171"), "{dbg}");
    }
}
