//! Byte classes for the key alphabet, as 256-entry tables so that checking a key is one
//! table load per byte with no branches.

use crate::table::ByteTable;

/// Base58 digit (Bitcoin alphabet).
pub(crate) const BASE58: u8 = 1;
/// Allowed after the first character of a prefix: `[a-z0-9_]`.
pub(crate) const PREFIX: u8 = 2;
/// Allowed as the first character of a prefix: `[a-z]`.
pub(crate) const PREFIX_START: u8 = 4;
/// Allowed anywhere in a key: `[A-Za-z0-9_]`.
pub(crate) const KEY: u8 = 8;

/// Class bits of every byte.
#[allow(clippy::indexing_slicing, reason = "const construction over 0..256")]
pub(crate) const CLASSES: ByteTable = {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let mut bits = 0;
        if crate::base58::ALPHABET_CONTAINS(c) {
            bits |= BASE58;
        }
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' {
            bits |= PREFIX;
        }
        if c.is_ascii_lowercase() {
            bits |= PREFIX_START;
        }
        if c.is_ascii_alphanumeric() || c == b'_' {
            bits |= KEY;
        }
        t[b] = bits;
        b += 1;
    }
    ByteTable::new(t)
};

/// AND of the class bits of every byte in `bytes` (all bits set for an empty slice).
/// Branch-free, so the compiler can unroll it; callers test the bit they need.
#[inline(always)]
pub(crate) fn all_classes(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0xFF, |acc, &b| acc & CLASSES.get(b))
}
