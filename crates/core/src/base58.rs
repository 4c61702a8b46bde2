//! Base58 with the Bitcoin alphabet, as far as Keyhaven needs it: one table to draw
//! characters from, one to recognise them, and the fixed-width number encoding used by
//! the checksum. Arbitrary-length byte encoding is not needed anywhere in the format.

use crate::table::ByteTable;

/// The Bitcoin base58 alphabet: no `0`, `O`, `I` or `l`, so keys survive being read aloud
/// or retyped from a screenshot.
pub const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

const INVALID: u8 = 0xFF;

/// Whether `byte` is in [`ALPHABET`]; usable in const tables.
#[allow(
    non_snake_case,
    clippy::indexing_slicing,
    reason = "const fn over a fixed array"
)]
pub(crate) const fn ALPHABET_CONTAINS(byte: u8) -> bool {
    let mut i = 0;
    while i < ALPHABET.len() {
        if ALPHABET[i] == byte {
            return true;
        }
        i += 1;
    }
    false
}

/// Digit value of every byte, or `INVALID`.
#[allow(
    clippy::indexing_slicing,
    reason = "const construction; ALPHABET bytes are < 256"
)]
const DIGIT_VALUE: ByteTable = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    ByteTable::new(table)
};

/// The value of `byte` as a base58 digit, if it is one.
#[inline]
pub fn digit_value(byte: u8) -> Option<u8> {
    match DIGIT_VALUE.get(byte) {
        INVALID => None,
        v => Some(v),
    }
}

/// Whether `byte` belongs to the base58 alphabet.
#[inline]
pub fn is_digit(byte: u8) -> bool {
    DIGIT_VALUE.get(byte) != INVALID
}

/// The character for digit value `value`, if `value < 58`.
#[inline]
pub fn digit(value: u8) -> Option<u8> {
    ALPHABET.get(usize::from(value)).copied()
}

/// Writes `value` as a big-endian base58 number of exactly `N` digits, left-padded with
/// `1` (base58's zero). Returns `None` if the value does not fit in `N` digits.
pub fn encode_fixed<const N: usize>(mut value: u64) -> Option<[u8; N]> {
    let mut out = [ALPHABET[0]; N];
    for slot in out.iter_mut().rev() {
        *slot = digit((value % 58) as u8)?;
        value /= 58;
    }
    (value == 0).then_some(out)
}

/// Reads a big-endian base58 number. Returns `None` for a non-digit or on overflow.
pub fn decode_number(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(58)?.checked_add(u64::from(digit_value(b)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_has_58_distinct_ascii_alphanumerics_without_lookalikes() {
        let mut seen = std::collections::HashSet::new();
        for &c in ALPHABET {
            assert!(c.is_ascii_alphanumeric());
            assert!(seen.insert(c));
        }
        for c in [b'0', b'O', b'I', b'l', b'_'] {
            assert!(!is_digit(c), "{} must not be a digit", c as char);
        }
    }

    #[test]
    fn fixed_width_encoding_pads_with_ones_and_round_trips() {
        assert_eq!(&encode_fixed::<6>(0).unwrap(), b"111111");
        assert_eq!(&encode_fixed::<6>(57).unwrap(), b"11111z");
        assert_eq!(&encode_fixed::<6>(58).unwrap(), b"111121");
        let max = u64::from(u32::MAX);
        let enc = encode_fixed::<6>(max).unwrap();
        assert_eq!(decode_number(&enc), Some(max));
        assert_eq!(encode_fixed::<2>(58 * 58), None);
    }

    #[test]
    fn decode_rejects_non_digits_and_overflow() {
        assert_eq!(decode_number(b"1O"), None);
        assert_eq!(decode_number(&[b'z'; 20]), None);
    }
}
