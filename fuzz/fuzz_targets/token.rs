//! A presented signed token, as every verifier reads it (`keyhaven_core::token::verify`:
//! the server's verify path, forward auth, the Rust client offline): any string, signed
//! or not. Nothing may panic; only a token signed by the key it names verifies, and a
//! refusal never says VALID.
#![no_main]

use std::sync::LazyLock;

use keyhaven_core::token::{self, Expect, SigningKey, TokenClaims, VerifyingKeys, attenuable, jws};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    keys: VerifyingKeys,
    /// Genuine tokens, spliced with the input so the fuzzer reaches signature checks.
    genuine: Vec<String>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let key = SigningKey::from_seed(1, &[7; 32]).expect("a valid seed");
    let claims = TokenClaims {
        sub: "7Gx9QbWkP2mZ".into(),
        ks: "ks_1".into(),
        owner: None,
        scopes: vec!["read".into()],
        aud: None,
        iat: 0,
        exp: 4_000_000_000,
        jti: "j".into(),
    };
    let biscuit = attenuable::mint(&key, &claims).expect("a biscuit");
    Fixture {
        keys: VerifyingKeys::new(vec![key.public().clone()]),
        genuine: vec![jws::sign(&key, &claims), biscuit],
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fixture = &*FIXTURE;
    let expect = Expect {
        now: 1_000,
        audience: None,
        scopes: &[],
    };
    let _ = token::verify(text, &fixture.keys, expect);
    let _ = attenuable::attenuate(text, &attenuable::Narrowing::default());
    // The input as a tail or a middle of a genuine token.
    for genuine in &fixture.genuine {
        let cut = data.first().map_or(0, |b| usize::from(*b) % genuine.len().max(1));
        if let Some(head) = genuine.get(..cut) {
            let spliced = format!("{head}{text}");
            if let Ok((_, claims)) = token::verify(&spliced, &fixture.keys, expect) {
                assert_eq!(claims.sub, "7Gx9QbWkP2mZ", "a spliced token verified as someone else");
            }
        }
    }
});
