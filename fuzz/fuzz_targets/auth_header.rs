//! The `Authorization` header of an admin or verify API call, as the server reads it: a
//! header value, as text, the bearer token taken out (`keyhaven_server::auth::bearer_token`),
//! then parsed as a key. Nothing may panic; a token is a trimmed slice of the value after
//! a `Bearer` scheme, and a key parsed from it is that token exactly.
#![no_main]

use keyhaven_server::auth::bearer_token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // What reaches `bearer_token` from a request: visible ASCII only.
    if let Ok(value) = http::HeaderValue::from_bytes(data)
        && let Ok(text) = value.to_str()
    {
        check(text);
    }
    // The function itself takes any string.
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
});

fn check(value: &str) {
    let Some(token) = bearer_token(value) else {
        if let Some((scheme, _)) = value.split_once(' ') {
            assert!(
                !scheme.eq_ignore_ascii_case("bearer"),
                "bearer scheme refused"
            );
        }
        return;
    };
    let start = token.as_ptr() as usize - value.as_ptr() as usize;
    assert!(
        value.as_ptr() as usize <= token.as_ptr() as usize && start + token.len() <= value.len(),
        "the token is not a slice of the header value"
    );
    assert!(start >= "bearer ".len(), "the token overlaps the scheme");
    assert!(
        value
            .get(.."bearer ".len())
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer ")),
        "a token without the bearer scheme"
    );
    assert_eq!(token, token.trim(), "the token is not trimmed");
    if let Ok(key) = keyhaven_core::parse(token) {
        assert_eq!(keyhaven_fuzz::rebuilt(&key), token);
    }
}
