//! Verifiers for keys Keyhaven did not issue, so a deployment can import the keys its
//! customers already hold. Each is checked once with its original scheme and then
//! re-hashed to the native peppered HMAC by the caller.
//!
//! - `prefix_shortToken_longToken` (the "prefixed API key" format): the stored value is
//!   the hex SHA-256 of the long token; the short token is the lookup id.
//! - Any string whose hex SHA-256 is stored.
//!
//! Stored hex may be lower- or upper-case. Comparisons are constant-time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::SecretStr;

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
