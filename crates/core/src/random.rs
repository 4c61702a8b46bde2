//! The one place Keyhaven draws randomness: the operating system's CSPRNG through
//! `getrandom`. There is deliberately no seedable or injectable generator here, so no
//! test or configuration can swap in a weak one; tests check distributions instead.

use zeroize::Zeroizing;

use crate::base58;

/// The operating system could not provide random bytes. Generation fails rather than
/// falling back to anything weaker.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(getrandom::Error);

/// Fills `buf` with bytes from the operating system's CSPRNG.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(RandomError)
}

/// Fills `out` with base58 characters, each uniform over the 58-character alphabet.
///
/// Each character comes from one random byte by rejection sampling: the low six bits give
/// a value in `0..64`; values `58..64` are thrown away and another byte is drawn. No
/// value is reduced modulo 58, so no character is more likely than another.
pub fn fill_base58(out: &mut [u8]) -> Result<(), RandomError> {
    // 58/64 of the bytes are kept, so 64 bytes cover a 42-character draw almost always;
    // the loop tops up when they don't.
    let mut pool = Zeroizing::new([0u8; 64]);
    let mut slots = out.iter_mut();
    let mut next = slots.next();
    while next.is_some() {
        fill(pool.as_mut_slice())?;
        for &byte in pool.iter() {
            let Some(c) = base58::digit(byte & 0x3F) else {
                continue;
            };
            match next {
                Some(slot) => {
                    *slot = c;
                    next = slots.next();
                }
                None => break,
            }
        }
    }
    Ok(())
}
