//! HMAC-SHA256 for the verify hot path.
//!
//! A key's MAC input (`key_id ":" secret`, 43 bytes) fits in one SHA-256 block, so with
//! the inner and outer key states computed once per pepper, a MAC is exactly two
//! compressions. The `hmac` crate does the same arithmetic but spends about half as much
//! again on buffer bookkeeping, which matters when the target is "a verify costs no more
//! than 1.5 SHA-256s". This module drives RustCrypto's own compression function
//! (`sha2::block_api::compress256`, SHA-NI when the CPU has it) and falls back to the
//! `hmac` crate for inputs longer than one block. Tests check it against `hmac` for
//! every input length either side of that boundary.

use std::fmt;

use hmac::{KeyInit, Mac};
use sha2::block_api::compress256;
use zeroize::Zeroizing;

/// HMAC-SHA-256, as RustCrypto computes it.
pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// SHA-256 initial hash value (FIPS 180-4 §5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
const BLOCK: usize = 64;
/// Longest message that fits in one block with its padding (0x80 and a 64-bit length).
const ONE_BLOCK_MAX: usize = BLOCK - 1 - 8;

/// HMAC-SHA256 keyed once: the states after absorbing `key ⊕ ipad` and `key ⊕ opad`.
#[derive(Clone)]
pub(crate) struct PrecomputedHmac {
    inner: [u32; 8],
    outer: [u32; 8],
    fallback: HmacSha256,
}

impl PrecomputedHmac {
    /// `key` must be at most one block long (peppers are 32 bytes).
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let mut ipad = Zeroizing::new([0x36u8; BLOCK]);
        let mut opad = Zeroizing::new([0x5cu8; BLOCK]);
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(key) {
            *i ^= k;
            *o ^= k;
        }
        let mut inner = IV;
        compress256(&mut inner, std::slice::from_ref(&*ipad));
        let mut outer = IV;
        compress256(&mut outer, std::slice::from_ref(&*opad));
        // HMAC takes keys of any length, so this cannot fail.
        let fallback = <HmacSha256 as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
        Self {
            inner,
            outer,
            fallback,
        }
    }

    /// HMAC of the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > ONE_BLOCK_MAX {
            return self.mac_slow(parts);
        }
        // Inner hash: message, 0x80, zeros, bit length of (ipad block + message).
        let mut block = [0u8; BLOCK];
        let mut at = 0;
        for part in parts {
            if let Some(dst) = block.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        if let Some(b) = block.get_mut(len) {
            *b = 0x80;
        }
        let bits = ((BLOCK + len) as u64) * 8;
        if let Some(dst) = block.get_mut(BLOCK - 8..) {
            dst.copy_from_slice(&bits.to_be_bytes());
        }
        let mut state = self.inner;
        compress256(&mut state, std::slice::from_ref(&block));

        // Outer hash: the 32-byte inner digest, padded the same way. It is written over
        // the same buffer, every byte of it, so no secret byte outlives the inner hash;
        // the outer compression reads the buffer, so the writes cannot be optimised away.
        block = [0u8; BLOCK];
        for (dst, word) in block.chunks_exact_mut(4).zip(state) {
            dst.copy_from_slice(&word.to_be_bytes());
        }
        block[32] = 0x80;
        block[BLOCK - 2] = 0x03; // (64 + 32) * 8 = 768 = 0x0300
        let mut out_state = self.outer;
        compress256(&mut out_state, std::slice::from_ref(&block));

        let mut out = [0u8; 32];
        for (dst, word) in out.chunks_exact_mut(4).zip(out_state) {
            dst.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn mac_slow(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.fallback.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for PrecomputedHmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrecomputedHmac(<redacted>)")
    }
}

/// Constant-time equality of two 32-byte values: XOR-OR folded into one word, then one
/// `subtle` comparison. (`subtle`'s slice comparison is also constant-time but costs a
/// barrier per byte.)
pub(crate) fn ct_eq_32(a: &[u8; 32], b: &[u8; 32]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    let diff = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .fold(0u64, |acc, (x, y)| acc | (word(x) ^ word(y)));
    diff.ct_eq(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap();
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    #[test]
    fn matches_the_hmac_crate_for_every_length_around_one_block() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let h = PrecomputedHmac::new(&key);
        let msg: Vec<u8> = (0..200u8).collect();
        for len in 0..=msg.len() {
            let m = &msg[..len];
            let (a, b) = m.split_at(len / 3);
            assert_eq!(h.mac(&[a, b]), reference(&key, m), "length {len}");
        }
    }

    #[test]
    fn rfc4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe" (zero-padded to 32 bytes gives the same HMAC, since
        // HMAC pads short keys with zeros), data "what do ya want for nothing?".
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let h = PrecomputedHmac::new(&key);
        assert_eq!(
            hex::encode(h.mac(&[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn ct_eq_32_compares_every_byte() {
        let a = [9u8; 32];
        assert!(bool::from(ct_eq_32(&a, &a)));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 1;
            assert!(!bool::from(ct_eq_32(&a, &b)), "byte {i}");
        }
    }
}
