//! Compact JWS (RFC 7515) signed with EdDSA over Ed25519 (RFC 8037): the header
//! `{"alg":"EdDSA","typ":"JWT","kid":…}`, the claims, and the signature, each base64url
//! without padding.
//!
//! Verification decides from the header only which of the verifier's keys to use, by
//! `kid`. The algorithm is fixed: a header saying anything but `EdDSA` (`none`, `HS256`
//! with the public key as an HMAC secret, …) is refused before any key is looked at, and
//! so is any `crit` extension. Signatures are checked with `verify_strict` (no
//! small-order keys or malleable signatures).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;

use super::{Expect, SigningKey, TokenClaims, TokenError, VerifyingKeys, check_claims};

/// Signs `claims` with `key`.
pub fn sign(key: &SigningKey, claims: &TokenClaims) -> String {
    let header = serde_json::json!({
        "alg": "EdDSA",
        "typ": "JWT",
        "kid": key.public().kid,
    });
    // Serializing a JSON value and a struct of strings and integers cannot fail.
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let signature = key.jws().sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// Verifies a compact JWS: header, key, signature, then the claims' expiry and audience.
pub fn verify(
    token: &str,
    keys: &VerifyingKeys,
    expect: Expect<'_>,
) -> Result<TokenClaims, TokenError> {
    if token.len() > super::MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("a JWS has three dot-separated parts"));
    };
    let decode = |part: &str, what: &'static str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| TokenError::Malformed(what))
    };
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&decode(header_b64, "the header is not base64url")?)
            .map_err(|_| TokenError::Malformed("the header is not a JWS header"))?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
        return Err(TokenError::Algorithm);
    }
    // Any `crit` member, even `null`: this verifier understands no extension.
    if header.contains_key("crit") {
        return Err(TokenError::Malformed(
            "critical header extensions are not supported",
        ));
    }
    let key = header
        .get("kid")
        .and_then(|kid| kid.as_str())
        .and_then(|kid| keys.by_kid(kid))
        .ok_or(TokenError::UnknownKey)?;
    let signature: [u8; 64] = decode(signature_b64, "the signature is not base64url")?
        .try_into()
        .map_err(|_| TokenError::Signature)?;
    let signature = ed25519_dalek::Signature::from_bytes(&signature);
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    key.jws
        .verify_strict(signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::Signature)?;
    let claims: TokenClaims =
        serde_json::from_slice(&decode(payload_b64, "the payload is not base64url")?)
            .map_err(|_| TokenError::Malformed("the payload is not Keyhaven's claims"))?;
    check_claims(&claims, expect)?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::PublicSigningKey;
    use crate::token::test_keys::{key, keys};

    fn claims() -> TokenClaims {
        TokenClaims {
            sub: "7Gx9QbWkP2mZ".into(),
            ks: "ks_1".into(),
            owner: Some("cust-1".into()),
            scopes: vec!["read".into()],
            aud: None,
            iat: 1_000,
            exp: 2_000,
            jti: "j1".into(),
        }
    }

    const NOW: Expect<'static> = Expect {
        now: 1_500,
        audience: None,
        scopes: &[],
    };

    fn forge(header: &str, payload: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let k = key(1, 7);
        let token = sign(&k, &claims());
        assert_eq!(verify(&token, &keys(&[&k]), NOW), Ok(claims()));
        let later = Expect { now: 2_000, ..NOW };
        assert_eq!(
            verify(&token, &keys(&[&k]), later),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn the_audience_must_be_the_verifiers() {
        let k = key(1, 7);
        let token = sign(
            &k,
            &TokenClaims {
                aud: Some("billing".into()),
                ..claims()
            },
        );
        let as_ = |aud| Expect {
            audience: aud,
            ..NOW
        };
        assert!(verify(&token, &keys(&[&k]), as_(Some("billing"))).is_ok());
        assert_eq!(
            verify(&token, &keys(&[&k]), as_(Some("search"))),
            Err(TokenError::Audience)
        );
        assert_eq!(
            verify(&token, &keys(&[&k]), as_(None)),
            Err(TokenError::Audience)
        );
        // A token for no audience is for every one.
        let open = sign(&k, &claims());
        assert!(verify(&open, &keys(&[&k]), as_(Some("search"))).is_ok());
    }

    #[test]
    fn another_key_a_tampered_payload_or_another_algorithm_is_refused() {
        let k = key(1, 7);
        let other = key(2, 8);
        let token = sign(&k, &claims());
        assert_eq!(
            verify(&token, &keys(&[&other]), NOW),
            Err(TokenError::UnknownKey)
        );

        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let widened = serde_json::to_string(&TokenClaims {
            scopes: vec!["read".into(), "admin".into()],
            ..claims()
        })
        .unwrap();
        let tampered = format!("{head}.{}.{signature}", URL_SAFE_NO_PAD.encode(widened));
        assert_eq!(
            verify(&tampered, &keys(&[&k]), NOW),
            Err(TokenError::Signature)
        );

        let payload = serde_json::to_string(&claims()).unwrap();
        let kid = &k.public().kid;
        let none = forge(&format!(r#"{{"alg":"none","kid":"{kid}"}}"#), &payload, b"");
        assert_eq!(verify(&none, &keys(&[&k]), NOW), Err(TokenError::Algorithm));
        // HS256 keyed with the public key, the classic confusion.
        let hs = forge(
            &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
            &payload,
            &[0; 32],
        );
        assert_eq!(verify(&hs, &keys(&[&k]), NOW), Err(TokenError::Algorithm));
        for crit in [r#"["exp"]"#, "null"] {
            let crit = forge(
                &format!(r#"{{"alg":"EdDSA","kid":"{kid}","crit":{crit}}}"#),
                &payload,
                &[0; 64],
            );
            assert!(matches!(
                verify(&crit, &keys(&[&k]), NOW),
                Err(TokenError::Malformed(_))
            ));
        }
        for junk in ["", "a.b", "a.b.c.d", "eyJ.eyJ.!!"] {
            assert!(matches!(
                verify(junk, &keys(&[&k]), NOW),
                Err(TokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn a_published_key_round_trips_and_its_kid_is_the_rfc_7638_thumbprint() {
        let k = key(3, 9);
        let p = k.public();
        let back = PublicSigningKey::from_published(3, &p.x(), &p.biscuit_hex()).unwrap();
        assert_eq!(&back, p);
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let rfc = PublicSigningKey::from_published(
            1,
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            &p.biscuit_hex(),
        )
        .unwrap();
        assert_eq!(rfc.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert!(!format!("{k:?}").contains(&hex::encode([9u8; 32])));
    }
}
