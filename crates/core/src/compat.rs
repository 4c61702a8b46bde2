//! Verifiers for keys Keyhaven did not issue, so a deployment can import the keys its
//! customers already hold. Each is checked once with its original scheme and then
//! re-hashed to the native peppered HMAC by the caller.
//!
//! - `prefix_shortToken_longToken` (the "prefixed API key" format): the stored value is
//!   the hex SHA-256 of the long token; the short token is the lookup id.
//! - `prefix.secret` whose stored value is `sha512$$<hex SHA-512 of the whole key>`; the
//!   prefix (before the first `.`) is the lookup id.
//! - Any string whose hex SHA-256 is stored; looked up through a peppered tag of the
//!   digest ([`Pepper::index_tag`]), so the raw digest is never a lookup value.
//!
//! Imported keys are found by a *lookup* string ([`lookups`]) instead of a key id.
//!
//! Nothing stored for an imported key is usable without the pepper: the lookup is a
//! peppered tag of the key's public id (or of its digest), and the stored digest is
//! `HMAC(pepper, old digest)` ([`peppered_digest`]). So write access to the database
//! alone can neither make a row findable for a chosen key nor make it match one. (Before
//! this, lookups were the plain public ids and digests the plain old ones: rows in that
//! shape are converted once by [`upgraded_lookup`] and otherwise never matched.)
//!
//! Comparisons are constant-time.

use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::pepper::{Pepper, PepperSet};
use crate::secret::SecretStr;

/// The schemes an imported key's stored value can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// `prefix_shortToken_longToken`, stored SHA-256 of the long token.
    PrefixedSha256,
    /// `prefix.secret`, stored SHA-512 of the whole key.
    DottedSha512,
    /// Any string, stored SHA-256 of the whole key.
    Sha256,
}

impl ImportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrefixedSha256 => "prefixed_sha256",
            Self::DottedSha512 => "dotted_sha512",
            Self::Sha256 => "sha256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::PrefixedSha256, Self::DottedSha512, Self::Sha256]
            .into_iter()
            .find(|f| f.as_str() == s)
    }

    /// Length in bytes of the stored digest.
    pub fn digest_len(self) -> usize {
        match self {
            Self::DottedSha512 => 64,
            Self::PrefixedSha256 | Self::Sha256 => 32,
        }
    }

    /// Whether `key` matches `stored`, the peppered digest ([`peppered_digest`]) of its
    /// old digest under this scheme, with `pepper` (constant-time comparison).
    pub fn matches(self, key: &str, stored: &[u8], pepper: &Pepper) -> bool {
        let Some(old) = self.old_digest(key) else {
            return false;
        };
        let computed = peppered_digest(pepper, &old);
        stored.len() == computed.len() && bool::from(computed.as_slice().ct_eq(stored))
    }

    /// The digest the old system stored for `key`, or `None` if `key` has not this
    /// scheme's shape.
    fn old_digest(self, key: &str) -> Option<Vec<u8>> {
        Some(match self {
            Self::PrefixedSha256 => {
                let t = parse_prefixed(key)?;
                Sha256::digest(t.long_token.expose_secret().as_bytes()).to_vec()
            }
            Self::DottedSha512 => Sha512::digest(key.as_bytes()).to_vec(),
            Self::Sha256 => Sha256::digest(key.as_bytes()).to_vec(),
        })
    }
}

/// Tag purposes: the peppered index of each shape, and the peppered digest.
const SHA256_INDEX: &str = "import-sha256";
const PREFIXED_INDEX: &str = "import-prefixed";
const DOTTED_INDEX: &str = "import-dotted";
const DIGEST: &str = "import-digest";

fn tagged(kind: &str, pepper: &Pepper, purpose: &str, data: &[u8]) -> String {
    format!(
        "i{kind}{}:{}",
        pepper.version(),
        hex::encode(pepper.index_tag(purpose, data))
    )
}

/// The lookup string of a prefixed key (its prefix and short token are public ids, so
/// they are stored only as a peppered tag).
pub fn prefixed_lookup(pepper: &Pepper, prefix: &str, short_token: &str) -> String {
    prefixed_public_lookup(pepper, &format!("{prefix}_{short_token}"))
}

fn prefixed_public_lookup(pepper: &Pepper, public: &str) -> String {
    tagged("p", pepper, PREFIXED_INDEX, public.as_bytes())
}

/// The lookup string of a dotted key: a peppered tag of its prefix.
pub fn dotted_lookup(pepper: &Pepper, prefix: &str) -> String {
    tagged("d", pepper, DOTTED_INDEX, prefix.as_bytes())
}

/// The lookup string of a whole-key SHA-256 digest under one pepper version.
pub fn sha256_lookup(pepper: &Pepper, digest: &[u8]) -> String {
    tagged("h", pepper, SHA256_INDEX, digest)
}

/// What is stored for an old system's digest: its HMAC under the pepper.
pub fn peppered_digest(pepper: &Pepper, old_digest: &[u8]) -> [u8; 32] {
    pepper.index_tag(DIGEST, old_digest)
}

/// The peppered lookup for a row stored in the old, unpeppered shape (`p:prefix_short`,
/// `d:prefix`, or `h<v>:<tag>`), or `None` if it has none of those shapes. A whole-key
/// SHA-256 lookup was already a peppered tag: it keeps its tag and version (so two
/// imports of one key under different versions stay two distinct lookups).
pub fn upgraded_lookup(format: ImportFormat, old_lookup: &str, pepper: &Pepper) -> Option<String> {
    match format {
        ImportFormat::PrefixedSha256 => {
            let id = old_lookup.strip_prefix("p:")?;
            lookup_of_public(format, id, pepper)
        }
        ImportFormat::DottedSha512 => {
            let prefix = old_lookup.strip_prefix("d:")?;
            lookup_of_public(format, prefix, pepper)
        }
        ImportFormat::Sha256 => {
            let rest = old_lookup.strip_prefix('h')?;
            let (version, tag) = rest.split_once(':')?;
            let well_formed = version.parse::<u32>().is_ok() && hex::decode(tag).is_ok();
            well_formed.then(|| format!("i{old_lookup}"))
        }
    }
}

/// The lookup of a prefixed or dotted key from its public part (`prefix_short`, or the
/// dotted prefix) under `pepper`; `None` for whole-key SHA-256 imports, whose lookup
/// needs the digest.
pub fn lookup_of_public(format: ImportFormat, public: &str, pepper: &Pepper) -> Option<String> {
    match format {
        ImportFormat::PrefixedSha256 => Some(prefixed_public_lookup(pepper, public)),
        ImportFormat::DottedSha512 => Some(dotted_lookup(pepper, public)),
        ImportFormat::Sha256 => None,
    }
}

/// The public part an old-shape lookup names (`prefix_short` or a dotted prefix).
pub fn public_of_old_lookup(old_lookup: &str) -> Option<&str> {
    old_lookup
        .strip_prefix("p:")
        .or_else(|| old_lookup.strip_prefix("d:"))
}

/// Splits `prefix.secret` at the first `.`; the prefix is `[A-Za-z0-9_-]+`.
pub fn parse_dotted(key: &str) -> Option<&str> {
    let (prefix, secret) = key.split_once('.')?;
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !secret.is_empty();
    ok.then_some(prefix)
}

/// Every lookup string under which an imported key matching `key` could be stored, for
/// each configured pepper version (newest first), most specific shape first.
pub fn lookups(key: &str, peppers: &PepperSet) -> Vec<(ImportFormat, String)> {
    let mut out = Vec::new();
    let prefixed = parse_prefixed(key);
    let dotted = parse_dotted(key);
    let digest = Sha256::digest(key.as_bytes());
    for version in peppers.versions().collect::<Vec<_>>().into_iter().rev() {
        let Some(pepper) = peppers.get(version) else {
            continue;
        };
        if let Some(t) = prefixed {
            out.push((
                ImportFormat::PrefixedSha256,
                prefixed_lookup(pepper, t.prefix, t.short_token),
            ));
        }
        if let Some(prefix) = dotted {
            out.push((ImportFormat::DottedSha512, dotted_lookup(pepper, prefix)));
        }
        out.push((ImportFormat::Sha256, sha256_lookup(pepper, &digest)));
    }
    out
}

/// A key in the `prefix_shortToken_longToken` format, split from the right (the prefix may
/// contain `_`). Tokens are base58 in the original format, but any `[A-Za-z0-9]` token is
/// accepted here, since we verify what was issued rather than re-validate it.
#[derive(Debug, Clone, Copy)]
pub struct PrefixedToken<'a> {
    pub prefix: &'a str,
    pub short_token: &'a str,
    pub long_token: SecretStr<'a>,
}

/// Splits `key` as `prefix_shortToken_longToken`, or `None` if it has not that shape.
pub fn parse_prefixed(key: &str) -> Option<PrefixedToken<'_>> {
    let mut parts = key.rsplitn(3, '_');
    let long_token = parts.next()?;
    let short_token = parts.next()?;
    let prefix = parts.next()?;
    let token_ok = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric());
    (!prefix.is_empty() && token_ok(short_token) && token_ok(long_token)).then_some(PrefixedToken {
        prefix,
        short_token,
        long_token: SecretStr::new(long_token),
    })
}

/// Whether SHA-256 of `secret` equals the stored hex digest (either case). A malformed
/// stored digest never matches.
pub fn sha256_hex_matches(secret: SecretStr<'_>, stored_hex: &str) -> bool {
    let mut expected = [0u8; 32];
    let well_formed = hex::decode_to_slice(stored_hex, &mut expected).is_ok();
    let computed: [u8; 32] = Sha256::digest(secret.expose_secret().as_bytes()).into();
    well_formed && bool::from(computed.ct_eq(&expected))
}

/// Checks a `prefix_shortToken_longToken` key against the stored hex SHA-256 of its long
/// token.
pub fn verify_prefixed(key: &str, stored_hex: &str) -> bool {
    parse_prefixed(key).is_some_and(|t| sha256_hex_matches(t.long_token, stored_hex))
}

/// Checks a whole key string against its stored hex SHA-256.
pub fn verify_whole_key_sha256(key: &str, stored_hex: &str) -> bool {
    sha256_hex_matches(SecretStr::new(key), stored_hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pepper::PepperVersion;

    fn pepper(v: u32, byte: u8) -> Pepper {
        Pepper::new(PepperVersion::new(v).unwrap(), &[byte; 32])
    }

    #[test]
    fn import_formats_match_their_peppered_digests_and_nothing_else() {
        let p = pepper(1, 1);
        let key = "myapp_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgG";
        let digest = peppered_digest(&p, &hex::decode(EXAMPLE_HASH).unwrap());
        assert!(ImportFormat::PrefixedSha256.matches(key, &digest, &p));
        assert!(!ImportFormat::PrefixedSha256.matches("myapp_BRTRKFsL_x", &digest, &p));
        // The same row under another pepper matches nothing.
        assert!(!ImportFormat::PrefixedSha256.matches(key, &digest, &pepper(1, 2)));
        // A row holding the plain old digest (what a database writer could insert) never
        // matches.
        let plain = hex::decode(EXAMPLE_HASH).unwrap();
        assert!(!ImportFormat::PrefixedSha256.matches(key, &plain, &p));
        let dotted = "abc123.s3cr3tvalue";
        let d512 = peppered_digest(&p, &Sha512::digest(dotted.as_bytes()));
        assert!(ImportFormat::DottedSha512.matches(dotted, &d512, &p));
        assert!(!ImportFormat::DottedSha512.matches("abc123.other", &d512, &p));
        let d256 = peppered_digest(&p, &Sha256::digest(b"any string at all"));
        assert!(ImportFormat::Sha256.matches("any string at all", &d256, &p));
        assert!(!ImportFormat::Sha256.matches("any string at all", &d512, &p));
        for f in [
            ImportFormat::PrefixedSha256,
            ImportFormat::DottedSha512,
            ImportFormat::Sha256,
        ] {
            assert_eq!(ImportFormat::parse(f.as_str()), Some(f));
        }
    }

    #[test]
    fn lookups_are_peppered_and_cover_each_shape_and_every_pepper_version() {
        let peppers = PepperSet::new(vec![pepper(1, 1), pepper(2, 2)]).unwrap();
        let l = lookups("myapp_BRTRKFsL_51Fwq", &peppers);
        assert_eq!(l.len(), 4);
        assert_eq!(
            l[0],
            (
                ImportFormat::PrefixedSha256,
                prefixed_lookup(&pepper(2, 2), "myapp", "BRTRKFsL")
            )
        );
        assert!(l[0].1.starts_with("ip2:") && l[1].1.starts_with("ih2:"));
        assert!(l[2].1.starts_with("ip1:") && l[3].1.starts_with("ih1:"));
        // No lookup shows the public id or the digest.
        let digest = hex::encode(Sha256::digest(b"myapp_BRTRKFsL_51Fwq"));
        assert!(
            l.iter()
                .all(|(_, s)| !s.contains(&digest) && !s.contains("BRTRKFsL"))
        );
        let d = lookups("abc.def", &peppers);
        assert_eq!(
            d[0],
            (
                ImportFormat::DottedSha512,
                dotted_lookup(&pepper(2, 2), "abc")
            )
        );
        assert_eq!(lookups("plain", &peppers).len(), 2);
    }

    #[test]
    fn old_shaped_lookups_upgrade_to_the_peppered_ones() {
        let p = pepper(3, 3);
        let plain = hex::decode(EXAMPLE_HASH).unwrap();
        assert_eq!(
            upgraded_lookup(ImportFormat::PrefixedSha256, "p:myapp_BRTRKFsL", &p),
            Some(prefixed_lookup(&p, "myapp", "BRTRKFsL"))
        );
        assert_eq!(
            upgraded_lookup(ImportFormat::DottedSha512, "d:abc", &p),
            Some(dotted_lookup(&p, "abc"))
        );
        // The old whole-key lookup was a peppered tag already: same tag, same version.
        let old = format!(
            "h1:{}",
            hex::encode(pepper(1, 1).index_tag(SHA256_INDEX, &plain))
        );
        let peppers = PepperSet::new(vec![pepper(1, 1), p.clone()]).unwrap();
        let upgraded = upgraded_lookup(ImportFormat::Sha256, &old, &p).unwrap();
        assert_eq!(upgraded, sha256_lookup(&pepper(1, 1), &plain));
        assert!(lookups("x", &peppers).len() == 2);
        assert_eq!(
            upgraded_lookup(ImportFormat::PrefixedSha256, "ip3:00", &p),
            None
        );
        assert_eq!(upgraded_lookup(ImportFormat::Sha256, "ih1:00", &p), None);
        assert_eq!(
            public_of_old_lookup("p:myapp_BRTRKFsL"),
            Some("myapp_BRTRKFsL")
        );
    }

    /// The format's own documented example.
    const EXAMPLE_KEY: &str = "myapp_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgG";
    const EXAMPLE_HASH: &str = "d70d981d87b449c107327c2a2afbf00d4b58070d6ba571aac35d7ea3e7c79f37";

    #[test]
    fn documented_prefixed_example_verifies() {
        let t = parse_prefixed(EXAMPLE_KEY).unwrap();
        assert_eq!(t.prefix, "myapp");
        assert_eq!(t.short_token, "BRTRKFsL");
        assert!(verify_prefixed(EXAMPLE_KEY, EXAMPLE_HASH));
        assert!(verify_prefixed(EXAMPLE_KEY, &EXAMPLE_HASH.to_uppercase()));
    }

    #[test]
    fn prefixed_rejects_wrong_token_and_bad_digest() {
        assert!(!verify_prefixed(
            "myapp_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgH",
            EXAMPLE_HASH
        ));
        assert!(!verify_prefixed(EXAMPLE_KEY, &EXAMPLE_HASH[..62]));
        assert!(!verify_prefixed(
            EXAMPLE_KEY,
            &format!("{}zz", &EXAMPLE_HASH[..62])
        ));
        assert!(!verify_prefixed("noseparators", EXAMPLE_HASH));
        assert!(parse_prefixed("_short_long").is_none());
        assert!(parse_prefixed("p__long").is_none());
    }

    #[test]
    fn prefix_may_contain_underscores() {
        let t = parse_prefixed("my_app_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgG").unwrap();
        assert_eq!(t.prefix, "my_app");
        assert!(verify_prefixed(
            "my_app_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgG",
            EXAMPLE_HASH
        ));
    }

    #[test]
    fn whole_key_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(verify_whole_key_sha256("abc", abc));
        assert!(verify_whole_key_sha256("abc", &abc.to_uppercase()));
        assert!(!verify_whole_key_sha256("abd", abc));
    }
}
