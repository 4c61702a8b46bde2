//! The key utilities reproduce the published test vectors (docs/test-vectors.json, from
//! an independent Python implementation of the format).

use keyhaven_client::ExposeSecret;
use keyhaven_client::keys::{self, ParseError};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/test-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn well_formed_vectors_parse_into_their_parts() {
    let doc = vectors();
    let good = doc["keys"].as_array().unwrap();
    assert!(good.len() >= 4);
    for v in good {
        let key = v["key"].as_str().unwrap();
        let parsed = keys::parse(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(parsed.prefix(), v["prefix"]);
        assert_eq!(parsed.key_id(), v["key_id"]);
        assert_eq!(parsed.secret().expose_secret(), v["secret"]);
        assert_eq!(parsed.checksum(), v["checksum"]);
        assert!(keys::checksum_valid(key));
        assert_eq!(keys::key_id(key), v["key_id"].as_str());
        let checksum = v["checksum"].as_str().unwrap();
        assert_eq!(
            keys::display(key).unwrap(),
            format!(
                "{}_{}_\u{2026}{}",
                v["prefix"].as_str().unwrap(),
                v["key_id"].as_str().unwrap(),
                &checksum[2..]
            )
        );
        let body = &key[..key.len() - keys::CHECKSUM_LEN];
        assert_eq!(keys::checksum(body.as_bytes()), checksum.as_bytes());
    }
}

#[test]
fn malformed_vectors_fail_the_named_check() {
    let doc = vectors();
    let bad = doc["malformed"].as_array().unwrap();
    assert!(bad.len() >= 8);
    for m in bad {
        let key = m["key"].as_str().unwrap();
        let e: ParseError = keys::parse(key).expect_err(key);
        assert_eq!(e.check(), m["check"], "{key}");
        assert!(!keys::checksum_valid(key));
        assert_eq!(keys::key_id(key), None);
        assert_eq!(keys::display(key), None);
    }
    // An imported key of another format is not Keyhaven's.
    for c in doc["compat"].as_array().unwrap() {
        assert!(!keys::checksum_valid(c["key"].as_str().unwrap()));
    }
}

#[test]
fn generated_keys_have_the_documented_shape() {
    for prefix in ["a", "acme_live", "abcdefghijklmnopqrst"] {
        let generated = keys::generate(prefix).unwrap();
        let key = generated.key().expose_secret();
        assert_eq!(key.len(), prefix.len() + 1 + 12 + 1 + 30 + 6);
        let parsed = keys::parse(key).unwrap();
        assert_eq!(parsed.prefix(), prefix);
        assert_eq!(parsed.key_id().len(), keys::KEY_ID_LEN);
        assert_eq!(parsed.secret().len(), keys::SECRET_LEN);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
    for prefix in ["", "A", "1a", "a-b", "abcdefghijklmnopqrstu"] {
        assert!(keys::generate(prefix).is_err(), "{prefix:?}");
    }
    let a = keys::generate("x").unwrap();
    let b = keys::generate("x").unwrap();
    assert_ne!(a.key().expose_secret(), b.key().expose_secret());
}
