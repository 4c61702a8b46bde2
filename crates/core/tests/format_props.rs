//! Property tests for the key format: generate → parse round-trips, the checksum catches
//! every single-character slip, and the parser never panics on anything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers may fail loudly

use keyhaven_core::format::{self, MAX_KEY_LEN, MIN_KEY_LEN};
use keyhaven_core::{ParseError, Prefix, generate, parse, parse_bytes};
use proptest::prelude::*;
use secrecy::ExposeSecret;

/// Every character that may appear in a key, so substitutions and insertions stay inside
/// the alphabet and reach the checksum check.
const KEY_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";

fn prefix_strategy() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,19}"
}

proptest! {
    #[test]
    fn generate_parse_round_trip(prefix in prefix_strategy()) {
        let p = Prefix::new(&prefix).unwrap();
        let k = generate(&p).unwrap();
        let s = k.key().expose_secret();
        let parsed = parse(s).unwrap();
        prop_assert_eq!(parsed.prefix(), prefix.as_str());
        prop_assert_eq!(parsed.key_id(), k.key_id().as_str());
        prop_assert_eq!(parsed.secret().len(), format::SECRET_LEN);
        prop_assert_eq!(s.len(), prefix.len() + 50);
        prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }

    #[test]
    fn long_secrets_round_trip_too(prefix in prefix_strategy()) {
        let p = Prefix::new(&prefix).unwrap();
        let k = keyhaven_core::generate_with(&p, keyhaven_core::SecretLength::Long).unwrap();
        let s = k.key().expose_secret();
        let parsed = parse(s).unwrap();
        prop_assert_eq!(parsed.prefix(), prefix.as_str());
        prop_assert_eq!(parsed.key_id(), k.key_id().as_str());
        prop_assert_eq!(parsed.secret().len(), format::LONG_SECRET_LEN);
        prop_assert_eq!(s.len(), prefix.len() + 64);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_bytes(&bytes);
        if let Ok(text) = format::key_text(&bytes) {
            let _ = format::split(text);
        }
    }

    #[test]
    fn near_keys_never_panic(s in "[A-Za-z0-9_]{40,80}") {
        let r = parse(&s);
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&s.len()) {
            prop_assert_eq!(r.unwrap_err(), ParseError::Length { len: s.len() });
        }
    }

    #[test]
    fn fast_structure_check_agrees_with_a_plain_reading_of_the_rules(
        s in "[a-zA-Z0-9_]{0,22}_[1-9A-HJ-NP-Za-km-z0O_]{12}_[1-9A-HJ-NP-Za-km-zIl_]{36}"
    ) {
        prop_assert_eq!(format::split(&s).is_ok(), reference_well_formed(&s), "{}", s);
    }

    #[test]
    fn arbitrary_unicode_never_panics(s in "\\PC{0,80}") {
        let _ = parse(&s);
    }

    #[test]
    fn invalid_prefixes_are_refused(prefix in "([A-Z0-9_][a-z0-9_]{0,10}|[a-z][a-z0-9_]{20,30}|[a-z]{1,5}[-. A-Z][a-z]{0,5})") {
        prop_assert!(Prefix::new(&prefix).is_err());
    }
}

/// The format rules read literally, without the parser's tricks.
fn reference_well_formed(s: &str) -> bool {
    const B58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    if !(51..=70).contains(&s.len()) || !s.is_ascii() {
        return false;
    }
    let (prefix, tail) = s.split_at(s.len() - 50);
    let chars: Vec<char> = tail.chars().collect();
    let prefix_ok = prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let seps_ok = chars[0] == '_' && chars[13] == '_';
    let b58_ok = chars
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 0 && i != 13)
        .all(|(_, c)| B58.contains(*c));
    prefix_ok && seps_ok && b58_ok
}

fn assert_rejected(original: &str, mutated: &[u8], what: &str) {
    if mutated == original.as_bytes() {
        return; // e.g. swapping two equal characters changes nothing
    }
    assert!(
        parse_bytes(mutated).is_err(),
        "{what} of {original:?} gave a key that still parses: {:?}",
        String::from_utf8_lossy(mutated)
    );
}

/// For a sample of keys with prefixes of every length, every single-character
/// substitution, deletion, insertion and adjacent swap, at every position, is rejected.
#[test]
fn every_single_character_error_is_rejected() {
    let mut checked = 0u64;
    for round in 0..60 {
        let prefix_len = 1 + round % 20;
        let prefix: String = "acme_live_and_more_xy"
            .chars()
            .take(prefix_len)
            .collect::<String>()
            .trim_end_matches('_')
            .to_owned();
        let k = generate(&Prefix::new(&prefix).unwrap()).unwrap();
        let key = k.key().expose_secret();
        let bytes = key.as_bytes();
        for i in 0..bytes.len() {
            for &c in KEY_CHARS {
                if c == bytes[i] {
                    continue;
                }
                let mut m = bytes.to_vec();
                m[i] = c;
                assert_rejected(key, &m, "substitution");
                checked += 1;
            }
            let mut m = bytes.to_vec();
            m.remove(i);
            assert_rejected(key, &m, "deletion");
            checked += 1;
            if i + 1 < bytes.len() {
                let mut m = bytes.to_vec();
                m.swap(i, i + 1);
                assert_rejected(key, &m, "adjacent swap");
                checked += 1;
            }
        }
        for i in 0..=bytes.len() {
            for &c in KEY_CHARS {
                let mut m = bytes.to_vec();
                m.insert(i, c);
                assert_rejected(key, &m, "insertion");
                checked += 1;
            }
        }
    }
    assert!(checked > 400_000, "only {checked} mutations checked");
}

#[test]
fn keys_generated_back_to_back_differ() {
    let p = Prefix::new("acme").unwrap();
    for _ in 0..10_000 {
        let a = generate(&p).unwrap();
        let b = generate(&p).unwrap();
        assert_ne!(a.key().expose_secret(), b.key().expose_secret());
        assert_ne!(a.key_id(), b.key_id());
    }
}
