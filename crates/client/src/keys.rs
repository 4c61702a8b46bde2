//! Keyhaven's key format, without a server: generate keys, split them into their parts,
//! check their checksum, show them safely. These are `keyhaven-core`'s own functions
//! (the server uses the same), so a key this says is well-formed is one the server
//! parses.
//!
//! `<prefix>_<key id>_<secret><checksum>`: a prefix of 1–20 characters
//! `[a-z][a-z0-9_]*`, a 12-character base58 key id, a 30-character base58 secret from
//! the operating system's CSPRNG (44 characters in keyspaces with `secret_bytes = 32`),
//! and a 6-character base58 CRC-32 of everything before it.

pub use keyhaven_core::format::{
    CHECKSUM_LEN, GeneratedKey, KEY_ID_LEN, LONG_SECRET_LEN, MAX_KEY_LEN, MAX_PREFIX_LEN,
    MIN_KEY_LEN, ParseError, ParsedKey, Prefix, PrefixError, SECRET_LEN, SecretLength, checksum,
    parse, split,
};

/// Why a key could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid prefix: {0}")]
    Prefix(#[from] PrefixError),
    #[error("the operating system's random number generator failed")]
    Random,
}

/// A new key under `prefix` (`acme_live`). The plaintext is in
/// [`GeneratedKey::key`], a secret type that is wiped when dropped.
pub fn generate(prefix: &str) -> Result<GeneratedKey, GenerateError> {
    generate_with(prefix, SecretLength::Standard)
}

/// [`generate`], with a secret of `length` (`SecretLength::Long`: 44 characters).
pub fn generate_with(prefix: &str, length: SecretLength) -> Result<GeneratedKey, GenerateError> {
    let prefix = Prefix::new(prefix)?;
    keyhaven_core::format::generate_with(&prefix, length).map_err(|_| GenerateError::Random)
}

/// Whether `key` is well-formed: lengths, alphabet, separators, prefix, and a checksum
/// that matches.
pub fn checksum_valid(key: &str) -> bool {
    parse(key).is_ok()
}

/// The public key id of a well-formed key.
pub fn key_id(key: &str) -> Option<&str> {
    parse(key).ok().map(|p| p.key_id())
}

/// The form that identifies a key without revealing it, as the server shows it
/// (`start`): `acme_live_7Gx9QbWkP2mZ_…aB3c`. `None` for a malformed key.
pub fn display(key: &str) -> Option<String> {
    parse(key).ok().map(|p| p.display_form())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        let generated = generate("acme_live").unwrap();
        let key = generated.key().expose_secret();
        assert!(checksum_valid(key));
        assert_eq!(key_id(key), Some(generated.key_id().as_str()));
        assert_eq!(display(key).unwrap(), generated.display_form());
        assert!(matches!(
            generate("Acme"),
            Err(GenerateError::Prefix(PrefixError::BadStart))
        ));
        assert!(!format!("{generated:?}").contains(key));
    }
}
