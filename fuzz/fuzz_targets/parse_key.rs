//! Feeds arbitrary bytes to the key parser. The parser must never panic, and anything it
//! accepts must be a key it would have generated: right length, right alphabet,
//! checksum that matches, and parts that put back together give the input.
#![no_main]

use keyhaven_core::{format, parse_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = format::key_text(data) {
        let _ = format::split(text);
    }
    if let Ok(key) = parse_bytes(data) {
        assert_eq!(keyhaven_fuzz::rebuilt(&key).as_bytes(), data);
        assert_eq!(key.key_id().len(), format::KEY_ID_LEN);
        let secret = key.secret().len();
        assert!(secret == format::SECRET_LEN || secret == format::LONG_SECRET_LEN);
        let body = &data[..data.len() - format::CHECKSUM_LEN];
        assert_eq!(&format::checksum(body)[..], key.checksum().as_bytes());
    }
});
