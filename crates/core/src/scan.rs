//! Finding keys in arbitrary text: the pure part of `keyhaven scan`.
//!
//! A key's tail has a fixed shape: `_`, 12 base58 characters (the key id), `_`, 36 base58
//! characters (secret and checksum; 50 with a long secret), and then no further
//! `[A-Za-z0-9_]` character. The
//! finder looks for that shape at every `_`, then tries each possible prefix start to its
//! left (1–20 characters of `[a-z0-9_]` starting with `[a-z]`), longest first, and keeps
//! the first candidate whose checksum holds. Nothing is required to the left of the
//! prefix: in `my_config_acme_live_…` or in an escaped `\nacme_live_…` the key
//! `acme_live_…` is still found, and the checksum (one chance in 2^32 for a look-alike)
//! keeps random text from being reported.
//!
//! The work is linear in the input: each `_` costs at most two looks at the next 50 or
//! 64 bytes (and a shape check fails at the first byte out of place), and only a tail of
//! the right shape, rare in any real text, costs up to 20 checksum computations.

use std::ops::Range;

use crate::charset::{self, CLASSES};
use crate::format::{CHECKSUM_LEN, KEY_ID_LEN, LONG_SECRET_LEN, MAX_PREFIX_LEN, SECRET_LEN};
use crate::{ParsedKey, parse};

/// Everything after the prefix: `_`, key id, `_`, secret, checksum; with a standard or a
/// long secret.
const TAIL_LENS: [usize; 2] = [
    1 + KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN,
    1 + KEY_ID_LEN + 1 + LONG_SECRET_LEN + CHECKSUM_LEN,
];
/// Offset of the second `_` (between key id and secret) from the first.
const SECOND_SEPARATOR: usize = 1 + KEY_ID_LEN;

/// A well-formed key (checksum included) found in a text.
#[derive(Debug, Clone)]
pub struct Found<'a> {
    /// Byte range of the whole key in the text that was searched.
    pub range: Range<usize>,
    /// The key's parts, borrowing from that text. The secret is in a redacting type.
    pub key: ParsedKey<'a>,
}

/// Every well-formed key in `text`, in order of position, none overlapping. `text` need
/// not be UTF-8: keys are ASCII, and whatever surrounds them is never decoded.
pub fn find_keys(text: &[u8]) -> Keys<'_> {
    Keys { text, next: 0 }
}

/// The iterator [`find_keys`] returns.
#[derive(Debug, Clone)]
pub struct Keys<'a> {
    text: &'a [u8],
    /// Where to look for the next `_`.
    next: usize,
}

impl<'a> Iterator for Keys<'a> {
    type Item = Found<'a>;

    fn next(&mut self) -> Option<Found<'a>> {
        loop {
            let rest = self.text.get(self.next..)?;
            let separator = self.next + rest.iter().position(|&b| b == b'_')?;
            self.next = separator + 1;
            if let Some(found) = key_at(self.text, separator) {
                self.next = found.range.end;
                return Some(found);
            }
        }
    }
}

/// The key whose first separator (after the prefix) is the `_` at `separator`, if any.
fn key_at(text: &[u8], separator: usize) -> Option<Found<'_>> {
    // A key's end is never followed by a key character, so at most one length fits.
    TAIL_LENS
        .iter()
        .find_map(|&tail_len| key_with_tail(text, separator, tail_len))
}

/// [`key_at`] for a key whose tail is `tail_len` long.
fn key_with_tail(text: &[u8], separator: usize, tail_len: usize) -> Option<Found<'_>> {
    let end = separator.checked_add(tail_len)?;
    let tail = text.get(separator..end)?;
    // Cheapest test first: in ordinary text the byte 13 places on is rarely `_`.
    if tail.get(SECOND_SEPARATOR) != Some(&b'_') {
        return None;
    }
    let key_id = tail.get(1..SECOND_SEPARATOR)?;
    let rest = tail.get(SECOND_SEPARATOR + 1..)?;
    if charset::all_classes(key_id) & charset::all_classes(rest) & charset::BASE58 == 0 {
        return None;
    }
    if text
        .get(end)
        .is_some_and(|&b| CLASSES.get(b) & charset::KEY != 0)
    {
        return None;
    }
    // The run of prefix characters just before the separator, at most 20 long.
    let lowest = separator.saturating_sub(MAX_PREFIX_LEN);
    let mut run_start = separator;
    while run_start > lowest {
        let before = run_start - 1;
        match text.get(before) {
            Some(&b) if CLASSES.get(b) & charset::PREFIX != 0 => run_start = before,
            _ => break,
        }
    }
    (run_start..separator)
        .filter(|&start| {
            text.get(start)
                .is_some_and(|&b| CLASSES.get(b) & charset::PREFIX_START != 0)
        })
        .find_map(|start| {
            let candidate = std::str::from_utf8(text.get(start..end)?).ok()?;
            let key = parse(candidate).ok()?;
            Some(Found {
                range: start..end,
                key,
            })
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    use super::*;
    use crate::base58::ALPHABET;
    use crate::{Prefix, generate};

    fn key(prefix: &str) -> String {
        generate(&Prefix::new(prefix).unwrap())
            .unwrap()
            .key()
            .expose_secret()
            .to_owned()
    }

    fn found(text: &str) -> Vec<(Range<usize>, String)> {
        find_keys(text.as_bytes())
            .map(|f| (f.range, f.key.key_id().to_owned()))
            .collect()
    }

    /// A string shaped exactly like a key whose checksum is wrong.
    fn look_alike(k: &str) -> String {
        let mut bytes = k.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'z' { b'y' } else { b'z' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn finds_keys_in_ordinary_text_with_their_ranges() {
        let a = key("acme_live");
        let b = key("x");
        let text = format!("API_KEY={a}\nother: \"{b}\", done");
        let keys = found(&text);
        assert_eq!(keys.len(), 2);
        let start = text.find(&a).unwrap();
        assert_eq!(keys[0].0, start..start + a.len());
        assert_eq!(keys[0].1, parse(&a).unwrap().key_id());
        let start = text.find(&b).unwrap();
        assert_eq!(keys[1].0, start..start + b.len());
    }

    #[test]
    fn keys_with_long_secrets_are_found_beside_standard_ones() {
        let long = crate::generate_with(
            &Prefix::new("acme_live").unwrap(),
            crate::SecretLength::Long,
        )
        .unwrap()
        .key()
        .expose_secret()
        .to_owned();
        let short = key("acme_live");
        let text = format!("{long} {short}\n{long}");
        let keys = found(&text);
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert_eq!(keys[0].0, 0..long.len());
        assert_eq!(keys[1].1, parse(&short).unwrap().key_id());
        // Cut short, a long key is not a standard one.
        assert!(found(&long[..long.len() - 14]).is_empty());
    }

    #[test]
    fn a_key_glued_to_an_identifier_or_escape_on_its_left_is_found() {
        let k = key("acme_live");
        for before in [
            "my_config_",
            "\\n",
            "X",
            "%3D",
            "a1_",
            "zzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            let text = format!("{before}{k}");
            let keys = found(&text);
            assert_eq!(keys, vec![(before.len()..text.len(), keys[0].1.clone())]);
        }
    }

    #[test]
    fn a_key_glued_to_word_characters_on_its_right_is_not_a_key() {
        let k = key("acme_live");
        for after in ["a", "_", "9", "Z"] {
            assert!(found(&format!("{k}{after}")).is_empty(), "{after}");
        }
        for after in ["-", " ", ".", "\"", "\n", "é"] {
            assert_eq!(found(&format!("{k}{after}")).len(), 1, "{after}");
        }
    }

    #[test]
    fn look_alikes_with_a_wrong_checksum_are_not_reported() {
        let k = key("acme_live");
        let text = format!("{} {} {k}", look_alike(&k), look_alike(&key("acme")));
        let keys = found(&text);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].0.end, text.len());
    }

    #[test]
    fn longest_and_shortest_prefixes_and_adjacent_keys() {
        let long = key("abcdefghijklmnopqrst");
        let short = key("a");
        let text = format!("{long} {short}\t{long}");
        assert_eq!(found(&text).len(), 3);
        // Two keys separated by one non-word byte.
        let text = format!("{short},{short}");
        assert_eq!(found(&text).len(), 2);
    }

    #[test]
    fn non_utf8_surroundings_do_not_matter() {
        let k = key("acme_test");
        let mut text = vec![0xFF, 0xFE, b'='];
        text.extend_from_slice(k.as_bytes());
        text.extend_from_slice(&[0x00, 0xC3]);
        let keys: Vec<_> = find_keys(&text).collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].range, 3..3 + k.len());
    }

    #[test]
    fn ten_megabytes_of_base58_noise_with_separators_find_nothing_quickly() {
        // Deterministic noise: base58 runs broken by `_` at the key's own spacing, so
        // nearly every `_` starts a candidate of the right shape.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut text = Vec::with_capacity(10 << 20);
        while text.len() < 10 << 20 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let r = (state % 97) as usize;
            text.push(match r {
                0..=2 => b'_',
                3 => b'\n',
                _ => ALPHABET[r % 58],
            });
        }
        let started = std::time::Instant::now();
        assert_eq!(find_keys(&text).count(), 0);
        // Generous even for a debug build; catches an accidental quadratic.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    fn surrounding() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b'_'),
                Just(b' '),
                Just(b'\n'),
                proptest::sample::select(ALPHABET.to_vec()),
                any::<u8>(),
            ],
            0..300,
        )
    }

    proptest! {
        /// A generated key inside random text is found exactly once, at its own range,
        /// whatever precedes it, as long as no word character is glued to its end.
        #[test]
        fn a_key_in_random_text_is_found_once_at_its_range(
            prefix in "[a-z][a-z0-9_]{0,19}",
            before in surrounding(),
            mut after in surrounding(),
        ) {
            let k = key(&prefix);
            if after.first().is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_') {
                after[0] = b' ';
            }
            let mut text = before.clone();
            text.extend_from_slice(k.as_bytes());
            text.extend_from_slice(&after);
            let keys: Vec<_> = find_keys(&text)
                .filter(|f| f.key.key_id() == parse(&k).unwrap().key_id())
                .collect();
            prop_assert_eq!(keys.len(), 1);
            prop_assert_eq!(keys[0].range.clone(), before.len()..before.len() + k.len());
            prop_assert_eq!(keys[0].key.prefix(), prefix.as_str());
        }

        /// Random text never yields a match that does not parse at its own range.
        #[test]
        fn every_match_parses_where_it_was_found(text in surrounding()) {
            for f in find_keys(&text) {
                let slice = std::str::from_utf8(&text[f.range.clone()]).unwrap();
                prop_assert!(parse(slice).is_ok());
            }
        }
    }
}
