//! Signing keys for the token modules' tests.

use super::{SigningKey, VerifyingKeys};

/// The signing key of `version` whose seed is 32 times `byte`.
pub(crate) fn key(version: u32, byte: u8) -> SigningKey {
    SigningKey::from_seed(version, &[byte; 32]).unwrap()
}

/// A verifier holding the public halves of `of`.
pub(crate) fn keys(of: &[&SigningKey]) -> VerifyingKeys {
    VerifyingKeys::new(of.iter().map(|k| k.public().clone()).collect())
}
