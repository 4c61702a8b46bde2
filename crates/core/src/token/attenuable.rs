//! Attenuable tokens: [biscuits](https://doc.biscuitsec.org/) (through the kept
//! `biscuit-auth` crate) carrying Keyhaven's claims.
//!
//! The authority block, signed with the signing key's biscuit root key (its version is
//! the biscuit's root key id), states the claims as facts and checks them:
//!
//! ```text
//! key_id({sub}); keyspace({ks}); owner({owner}); issued_at({iat});
//! expires_at({exp}); token_id({jti}); scopes({set of scopes});
//! check if time($t), $t < {exp};
//! reject if requested_scope($s), scopes($granted), !$granted.contains($s);
//! token_audience({aud}); check if audience({aud});  // when the token has one
//! ```
//!
//! A holder narrows the token with [`attenuate`], which appends a block of checks (any
//! of: only these scopes, an earlier expiry, one audience) and the same values as facts.
//! The checks are what verification enforces; the facts let a verifier report the
//! narrowed scopes, expiry and audience. The verifier supplies `time`, its `audience`
//! and the scopes asked for (`requested_scope`), and authorizes once.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{self, Term};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit, BiscuitBuilder, BlockBuilder};

use super::{
    Expect, SigningKey, TokenClaims, TokenError, TokenMintError, VerifyingKeys, check_claims,
};

/// How long one authorization may run: generous for a busy machine, and bounded,
/// since the token's blocks come from its holder.
const RUN_LIMITS: AuthorizerLimits = AuthorizerLimits {
    max_facts: 1_000,
    max_iterations: 100,
    max_time: Duration::from_millis(5),
};

/// Most blocks a token may have (the authority and 7 narrowings): each costs a
/// signature check and its facts and checks.
pub const MAX_BLOCKS: usize = 8;

/// Most scopes a narrowing may list.
pub const MAX_NARROWED_SCOPES: usize = 64;

/// What a holder narrows a token to. Every field is optional; a narrowing that names
/// nothing still appends a block (harmless).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// Only these scopes (intersected with the token's).
    pub scopes: Option<Vec<String>>,
    /// Stops verifying at this time (Unix seconds), if earlier than the token's expiry.
    pub expires_at: Option<i64>,
    /// Only verifiers that are this audience accept it.
    pub audience: Option<String>,
}

fn date(unix: i64) -> Term {
    let secs = u64::try_from(unix).unwrap_or(0);
    builder::date(&(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)))
}

fn strings<'a>(values: impl IntoIterator<Item = &'a String>) -> Term {
    builder::set(
        values
            .into_iter()
            .map(|s| builder::string(s))
            .collect::<BTreeSet<_>>(),
    )
}

fn build_error(e: impl std::fmt::Display) -> TokenMintError {
    TokenMintError::Build(e.to_string())
}

/// Mints a biscuit carrying `claims`, signed with `key`'s biscuit root key.
pub fn mint(key: &SigningKey, claims: &TokenClaims) -> Result<String, TokenMintError> {
    let mut code = String::from(
        "key_id({sub}); keyspace({ks}); issued_at({iat}); expires_at({exp}); token_id({jti});\n\
         check if time($t), $t < {exp};\n\
         reject if requested_scope($s), scopes($granted), !$granted.contains($s);\n\
         scopes({scopes});\n",
    );
    let mut params = HashMap::from([
        ("sub".to_owned(), builder::string(&claims.sub)),
        ("ks".to_owned(), builder::string(&claims.ks)),
        ("iat".to_owned(), date(claims.iat)),
        ("exp".to_owned(), date(claims.exp)),
        ("jti".to_owned(), builder::string(&claims.jti)),
        ("scopes".to_owned(), strings(&claims.scopes)),
    ]);
    if let Some(owner) = &claims.owner {
        code.push_str("owner({owner});\n");
        params.insert("owner".to_owned(), builder::string(owner));
    }
    if let Some(aud) = &claims.aud {
        code.push_str("token_audience({aud});\ncheck if audience({aud});\n");
        params.insert("aud".to_owned(), builder::string(aud));
    }
    let token = BiscuitBuilder::new()
        .code_with_params(code, params, HashMap::new())
        .map_err(build_error)?
        .root_key_id(key.version())
        .build(key.biscuit())
        .map_err(build_error)?;
    token.to_base64().map_err(build_error)
}

/// Narrows `token` offline: appends a block of checks. Needs no key (the holder's
/// block is signed with a fresh key pair, as biscuits are), and does not check the
/// token (a verifier will).
pub fn attenuate(token: &str, narrowing: &Narrowing) -> Result<String, TokenError> {
    let unverified = biscuit_auth::UnverifiedBiscuit::from_base64(token)
        .map_err(|_| TokenError::Malformed("not a biscuit"))?;
    let mut code = String::new();
    let mut params = HashMap::new();
    if let Some(scopes) = &narrowing.scopes {
        if scopes.len() > MAX_NARROWED_SCOPES {
            return Err(TokenError::Malformed("a narrowing names at most 64 scopes"));
        }
        code.push_str(
            "reject if requested_scope($s), !{only}.contains($s);\nnarrowed_scopes({only});\n",
        );
        params.insert("only".to_owned(), strings(scopes));
    }
    if let Some(exp) = narrowing.expires_at {
        code.push_str("check if time($t), $t < {exp};\nnarrowed_expiry({exp});\n");
        params.insert("exp".to_owned(), date(exp));
    }
    if let Some(aud) = &narrowing.audience {
        code.push_str("check if audience({aud});\nnarrowed_audience({aud});\n");
        params.insert("aud".to_owned(), builder::string(aud));
    }
    let block = BlockBuilder::new()
        .code_with_params(code, params, HashMap::new())
        .map_err(|_| TokenError::Malformed("a narrowing that is not valid datalog"))?;
    unverified
        .append(block)
        .and_then(|b| b.to_base64())
        .map_err(|_| TokenError::Malformed("the token could not be extended"))
}

/// Verifies a biscuit: every block's signature under the root key its root key id
/// names, then its claims (expiry, audience, the scopes asked for) and every block's
/// checks at `expect`, in one authorization asking for `expect.scopes`. The claims'
/// scopes are the authority's intersected with each block's stated narrowing, and `exp`
/// and `aud` the narrowest any block states; what a use may do is decided by the
/// checks, so a block that checks more than it states is enforced all the same.
pub fn verify(
    token: &str,
    keys: &VerifyingKeys,
    expect: Expect<'_>,
) -> Result<TokenClaims, TokenError> {
    if token.len() > super::MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("longer than 16 KiB"));
    }
    let unverified = biscuit_auth::UnverifiedBiscuit::from_base64(token)
        .map_err(|_| TokenError::Malformed("not a biscuit"))?;
    if unverified.block_count() > MAX_BLOCKS {
        return Err(TokenError::Malformed("more than 8 blocks"));
    }
    let root = unverified
        .root_key_id()
        .and_then(|version| keys.by_version(version))
        .ok_or(TokenError::UnknownKey)?;
    let biscuit = unverified
        .verify(root.biscuit)
        .map_err(|_| TokenError::Signature)?;
    let claims = read_claims(&biscuit)?;
    check_claims(&claims, expect)?;
    match authorize(&biscuit, expect, expect.scopes) {
        Ok(()) => Ok(claims),
        // Refused: because of the scopes asked for, or of anything else?
        Err(refused) if !expect.scopes.is_empty() => match authorize(&biscuit, expect, &[]) {
            Ok(()) => Err(TokenError::Scopes),
            Err(_) => Err(refused),
        },
        Err(refused) => Err(refused),
    }
}

/// Runs the token's checks for a verifier at `expect`, asking for `scopes`.
fn authorize(biscuit: &Biscuit, expect: Expect<'_>, scopes: &[String]) -> Result<(), TokenError> {
    let mut code = String::from("time({now});\nallow if key_id($k);\n");
    let mut params = HashMap::from([("now".to_owned(), date(expect.now))]);
    if let Some(aud) = expect.audience {
        code.push_str("audience({aud});\n");
        params.insert("aud".to_owned(), builder::string(aud));
    }
    for (i, scope) in scopes.iter().enumerate() {
        code.push_str(&format!("requested_scope({{s{i}}});\n"));
        params.insert(format!("s{i}"), builder::string(scope));
    }
    let refused = |e: biscuit_auth::error::Token| TokenError::Refused(e.to_string());
    AuthorizerBuilder::new()
        .code_with_params(code, params, HashMap::new())
        .map_err(refused)?
        .set_limits(RUN_LIMITS)
        .build(biscuit)
        .map_err(refused)?
        .authorize()
        .map(|_| ())
        .map_err(refused)
}

/// The claims as the authority block states them, narrowed by what later blocks state.
fn read_claims(biscuit: &Biscuit) -> Result<TokenClaims, TokenError> {
    let mut authorizer = AuthorizerBuilder::new()
        .set_limits(RUN_LIMITS)
        .build(biscuit)
        .map_err(|e| TokenError::Refused(e.to_string()))?;
    let malformed = |_| TokenError::Malformed("the authority block lacks Keyhaven's claims");
    // Queries trust the authority block (and the empty authorizer) only.
    let one = |authorizer: &mut biscuit_auth::Authorizer,
               rule: &str|
     -> Result<Option<Term>, TokenError> {
        let found: Vec<biscuit_auth::builder::Fact> = authorizer.query(rule).map_err(malformed)?;
        Ok(found
            .into_iter()
            .next()
            .and_then(|f| f.predicate.terms.into_iter().next()))
    };
    let text = |term: Option<Term>| match term {
        Some(Term::Str(s)) => Ok(s),
        _ => Err(TokenError::Malformed(
            "the authority block lacks Keyhaven's claims",
        )),
    };
    let when = |term: Option<Term>| match term {
        Some(Term::Date(d)) => {
            i64::try_from(d).map_err(|_| TokenError::Malformed("a date out of range"))
        }
        _ => Err(TokenError::Malformed(
            "the authority block lacks Keyhaven's claims",
        )),
    };
    let sub = text(one(&mut authorizer, "v($x) <- key_id($x)")?)?;
    let ks = text(one(&mut authorizer, "v($x) <- keyspace($x)")?)?;
    let jti = text(one(&mut authorizer, "v($x) <- token_id($x)")?)?;
    let owner = one(&mut authorizer, "v($x) <- owner($x)")?
        .map(|t| text(Some(t)))
        .transpose()?;
    let iat = when(one(&mut authorizer, "v($x) <- issued_at($x)")?)?;
    let mut exp = when(one(&mut authorizer, "v($x) <- expires_at($x)")?)?;
    let scopes = match one(&mut authorizer, "v($x) <- scopes($x)")? {
        Some(Term::Set(set)) => set
            .into_iter()
            .map(|t| text(Some(t)))
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(TokenError::Malformed(
                "the authority block lacks Keyhaven's claims",
            ));
        }
    };
    let mut aud = one(&mut authorizer, "v($x) <- token_audience($x)")?
        .map(|t| text(Some(t)))
        .transpose()?;
    let narrowed = |authorizer: &mut biscuit_auth::Authorizer, rule: &str| -> Vec<Term> {
        let found: Vec<biscuit_auth::builder::Fact> =
            authorizer.query_all(rule).unwrap_or_default();
        found
            .into_iter()
            .filter_map(|f| f.predicate.terms.into_iter().next())
            .collect()
    };
    let mut scopes = scopes;
    for term in narrowed(&mut authorizer, "v($x) <- narrowed_scopes($x)") {
        if let Term::Set(only) = term {
            scopes.retain(|s| only.contains(&builder::string(s)));
        }
    }
    for term in narrowed(&mut authorizer, "v($x) <- narrowed_expiry($x)") {
        if let Ok(at) = when(Some(term)) {
            exp = exp.min(at);
        }
    }
    if aud.is_none() {
        aud = narrowed(&mut authorizer, "v($x) <- narrowed_audience($x)")
            .into_iter()
            .find_map(|t| text(Some(t)).ok());
    }
    Ok(TokenClaims {
        sub,
        ks,
        owner,
        scopes,
        aud,
        iat,
        exp,
        jti,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(version: u32, byte: u8) -> SigningKey {
        SigningKey::from_seed(version, &[byte; 32]).unwrap()
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            sub: "7Gx9QbWkP2mZ".into(),
            ks: "ks_1".into(),
            owner: Some("cust-1".into()),
            scopes: vec!["read".into(), "write".into()],
            aud: None,
            iat: 1_000,
            exp: 2_000,
            jti: "j1".into(),
        }
    }

    fn keys(of: &[&SigningKey]) -> VerifyingKeys {
        VerifyingKeys::new(of.iter().map(|k| k.public().clone()).collect())
    }

    fn at(now: i64) -> Expect<'static> {
        Expect {
            now,
            audience: None,
            scopes: &[],
        }
    }

    #[test]
    fn a_minted_biscuit_verifies_with_its_claims_until_it_expires() {
        let k = key(1, 7);
        let token = mint(&k, &claims()).unwrap();
        assert_eq!(verify(&token, &keys(&[&k]), at(1_500)), Ok(claims()));
        assert_eq!(
            verify(&token, &keys(&[&k]), at(2_000)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(&token, &keys(&[&key(1, 8)]), at(1_500)),
            Err(TokenError::Signature)
        );
        assert_eq!(
            verify(&token, &keys(&[&key(2, 7)]), at(1_500)),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_holder_narrows_scopes_expiry_and_audience_offline() {
        let k = key(1, 7);
        let token = mint(&k, &claims()).unwrap();
        let narrowed = attenuate(
            &token,
            &Narrowing {
                scopes: Some(vec!["read".into(), "admin".into()]),
                expires_at: Some(1_600),
                audience: Some("search".into()),
            },
        )
        .unwrap();
        let search = Expect {
            now: 1_500,
            audience: Some("search"),
            scopes: &[],
        };
        let got = verify(&narrowed, &keys(&[&k]), search).unwrap();
        // "admin" was never the token's: narrowing cannot add it.
        assert_eq!(got.scopes, vec!["read".to_owned()]);
        let asking = |scopes: &'static [String]| Expect { scopes, ..search };
        static READ: std::sync::LazyLock<[String; 1]> =
            std::sync::LazyLock::new(|| ["read".into()]);
        static WRITE: std::sync::LazyLock<[String; 1]> =
            std::sync::LazyLock::new(|| ["write".into()]);
        assert!(verify(&narrowed, &keys(&[&k]), asking(&*READ)).is_ok());
        assert_eq!(
            verify(&narrowed, &keys(&[&k]), asking(&*WRITE)),
            Err(TokenError::Scopes)
        );
        assert_eq!((got.exp, got.aud.as_deref()), (1_600, Some("search")));
        assert_eq!(
            verify(&narrowed, &keys(&[&k]), at(1_500)),
            Err(TokenError::Audience)
        );
        let later = Expect {
            now: 1_700,
            ..search
        };
        assert_eq!(
            verify(&narrowed, &keys(&[&k]), later),
            Err(TokenError::Expired)
        );
        // A later block cannot widen again: its scopes are intersected, its expiry too.
        let widened = attenuate(
            &narrowed,
            &Narrowing {
                scopes: Some(vec!["read".into(), "write".into()]),
                expires_at: Some(1_900),
                audience: None,
            },
        )
        .unwrap();
        let got = verify(&widened, &keys(&[&k]), search).unwrap();
        assert_eq!(got.scopes, vec!["read".to_owned()]);
        assert_eq!(
            verify(&widened, &keys(&[&k]), asking(&*WRITE)),
            Err(TokenError::Scopes)
        );
        assert_eq!(got.exp, 1_600);
        assert_eq!(
            verify(&widened, &keys(&[&k]), later),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_block_that_checks_more_than_it_states_is_enforced_all_the_same() {
        let k = key(1, 7);
        let token = mint(&k, &claims()).unwrap();
        // Built by hand, not by `attenuate`: a check with no stated narrowing.
        let block = BlockBuilder::new()
            .code("reject if requested_scope($s), $s != \"read\";")
            .unwrap();
        let unverified = biscuit_auth::UnverifiedBiscuit::from_base64(&token).unwrap();
        let narrowed = unverified.append(block).unwrap().to_base64().unwrap();
        let write = ["write".to_owned()];
        let asking = Expect {
            scopes: &write,
            ..at(1_500)
        };
        assert_eq!(
            verify(&narrowed, &keys(&[&k]), asking),
            Err(TokenError::Scopes)
        );
        let read = ["read".to_owned()];
        assert!(
            verify(
                &narrowed,
                &keys(&[&k]),
                Expect {
                    scopes: &read,
                    ..at(1_500)
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn dropping_or_forging_a_block_breaks_the_token() {
        let k = key(1, 7);
        let token = mint(&k, &claims()).unwrap();
        let only_read = Narrowing {
            scopes: Some(vec!["read".into()]),
            ..Narrowing::default()
        };
        let narrowed = attenuate(&token, &only_read).unwrap();
        // Any change to the serialized token breaks a signature or the format.
        let mut bytes = narrowed.into_bytes();
        let middle = bytes.len() / 2;
        bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(verify(&tampered, &keys(&[&k]), at(1_500)).is_err());
        // A token minted by another key with the same root key id is refused.
        let forged = mint(&key(1, 9), &claims()).unwrap();
        assert_eq!(
            verify(&forged, &keys(&[&k]), at(1_500)),
            Err(TokenError::Signature)
        );
    }
}
