//! Attenuable tokens: [biscuits](https://doc.biscuitsec.org/) (through the kept
//! `biscuit-auth` crate) carrying Keyhaven's claims.
//!
//! The authority block, signed with the signing key's biscuit root key (its version is
//! the biscuit's root key id), states the claims as facts (and, for other biscuit
//! verifiers, checks them):
//!
//! ```text
//! key_id({sub}); keyspace({ks}); owner({owner}); issued_at({iat});
//! expires_at({exp}); token_id({jti}); scopes({set of scopes});
//! check if time($t), $t < {exp};
//! reject if requested_scope($s), scopes($granted), !$granted.contains($s);
//! token_audience({aud}); check if audience({aud});  // when the token has one
//! ```
//!
//! A holder narrows the token with [`attenuate`], which appends a block of facts only:
//! `narrowed_scopes({set})`, `narrowed_expiry({date})`, `narrowed_audience({aud})`.
//! A block cannot be removed (each signs the next one's key), so narrowings only add up.
//!
//! Verification runs no datalog from the token: after the signatures, it reads each
//! block's facts and decides in Rust, with the same scope rule as keys
//! (`policy::scopes_grant`): a block holding anything but those three facts (a rule, a
//! check, an unknown fact, a third-party signature) is refused, so a holder's block
//! cannot make a verifier work. The scopes are the authority's met with each narrowing,
//! the expiry the earliest stated, and every stated audience must be the verifier's.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{self, Fact, Term};
use biscuit_auth::{Biscuit, BiscuitBuilder, BlockBuilder};

use super::{
    Expect, SigningKey, TokenClaims, TokenError, TokenMintError, VerifyingKeys, check_claims,
};
use crate::policy::scopes_grant;

/// Most blocks a token may have (the authority and 7 narrowings): each costs a
/// signature check.
pub const MAX_BLOCKS: usize = 8;

/// Most scopes a narrowing may list.
pub const MAX_NARROWED_SCOPES: usize = 64;

/// What a holder narrows a token to. Every field is optional; a narrowing that names
/// nothing still appends a block (harmless).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// Only these scopes (met with the token's, by the scope rule of keys).
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

/// Narrows `token` offline: appends a block of narrowing facts. Needs no key (the
/// holder's block is signed with a fresh key pair, as biscuits are), and does not check
/// the token (a verifier will).
pub fn attenuate(token: &str, narrowing: &Narrowing) -> Result<String, TokenError> {
    let unverified = biscuit_auth::UnverifiedBiscuit::from_base64(token)
        .map_err(|_| TokenError::Malformed("not a biscuit"))?;
    let mut block = BlockBuilder::new();
    let fact = |name: &str, term: Term| Fact::new(name.to_owned(), vec![term]);
    let add = |block: BlockBuilder, f: Fact| {
        block
            .fact(f)
            .map_err(|_| TokenError::Malformed("a narrowing that is not valid datalog"))
    };
    if let Some(scopes) = &narrowing.scopes {
        if scopes.len() > MAX_NARROWED_SCOPES {
            return Err(TokenError::Malformed("a narrowing names at most 64 scopes"));
        }
        block = add(block, fact("narrowed_scopes", strings(scopes)))?;
    }
    if let Some(exp) = narrowing.expires_at {
        block = add(block, fact("narrowed_expiry", date(exp)))?;
    }
    if let Some(aud) = &narrowing.audience {
        block = add(block, fact("narrowed_audience", builder::string(aud)))?;
    }
    unverified
        .append(block)
        .and_then(|b| b.to_base64())
        .map_err(|_| TokenError::Malformed("the token could not be extended"))
}

/// Verifies a biscuit: every block's signature under the root key its root key id
/// names, each narrowing block's shape, then the claims met with every narrowing
/// against `expect` (expiry, audience, the scopes asked for).
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
    let mut claims = read_claims(&biscuit)?;
    let mut audiences: Vec<String> = claims.aud.iter().cloned().collect();
    for index in 1..biscuit.block_count() {
        let narrowing = read_narrowing(&biscuit, index)?;
        if let Some(only) = narrowing.scopes {
            claims.scopes = meet(&claims.scopes, &only);
        }
        if let Some(exp) = narrowing.expires_at {
            claims.exp = claims.exp.min(exp);
        }
        audiences.extend(narrowing.audience);
    }
    // Every audience any block names must be the verifier's; the claims report one.
    if let Some(first) = audiences.first() {
        if audiences.iter().any(|a| a != first) {
            return Err(TokenError::Audience);
        }
        claims.aud = Some(first.clone());
    }
    check_claims(&claims, expect)?;
    Ok(claims)
}

/// The scopes both `a` and `b` grant, by the scope rule of keys (`billing:*` met with
/// `billing:read` is `billing:read`).
fn meet(a: &[String], b: &[String]) -> Vec<String> {
    let mut out: Vec<String> = b
        .iter()
        .filter(|s| scopes_grant(a, s))
        .chain(a.iter().filter(|s| scopes_grant(b, s)))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A block's facts, rules and checks as the token holds them.
fn block_contents(biscuit: &Biscuit, index: usize) -> Result<BlockBuilder, TokenError> {
    if biscuit.block_external_key(index).ok().flatten().is_some() {
        return Err(TokenError::Refused("a third-party block".to_owned()));
    }
    let source = biscuit
        .print_block_source(index)
        .map_err(|_| TokenError::Malformed("an unreadable block"))?;
    BlockBuilder::new()
        .code(source)
        .map_err(|_| TokenError::Malformed("an unreadable block"))
}

/// The one term of fact `name` in `facts`, if there is such a fact.
fn term<'f>(facts: &'f [Fact], name: &str) -> Option<&'f Term> {
    facts
        .iter()
        .find(|f| f.predicate.name == name)
        .and_then(|f| f.predicate.terms.first())
}

fn text(term: Option<&Term>) -> Result<String, TokenError> {
    match term {
        Some(Term::Str(s)) => Ok(s.clone()),
        _ => Err(TokenError::Malformed(
            "the authority block lacks Keyhaven's claims",
        )),
    }
}

fn when(term: Option<&Term>) -> Result<i64, TokenError> {
    match term {
        Some(Term::Date(d)) => {
            i64::try_from(*d).map_err(|_| TokenError::Malformed("a date out of range"))
        }
        _ => Err(TokenError::Malformed(
            "the authority block lacks Keyhaven's claims",
        )),
    }
}

fn texts(term: Option<&Term>) -> Result<Vec<String>, TokenError> {
    match term {
        Some(Term::Set(set)) => set.iter().map(|t| text(Some(t))).collect(),
        _ => Err(TokenError::Malformed(
            "the authority block lacks Keyhaven's claims",
        )),
    }
}

/// The claims the authority block (Keyhaven's own, signed by the root key) states.
fn read_claims(biscuit: &Biscuit) -> Result<TokenClaims, TokenError> {
    let block = block_contents(biscuit, 0)?;
    let facts = &block.facts;
    Ok(TokenClaims {
        sub: text(term(facts, "key_id"))?,
        ks: text(term(facts, "keyspace"))?,
        owner: term(facts, "owner").map(|t| text(Some(t))).transpose()?,
        scopes: texts(term(facts, "scopes"))?,
        aud: term(facts, "token_audience")
            .map(|t| text(Some(t)))
            .transpose()?,
        iat: when(term(facts, "issued_at"))?,
        exp: when(term(facts, "expires_at"))?,
        jti: text(term(facts, "token_id"))?,
    })
}

/// A holder's block: narrowing facts, each at most once, and nothing else.
fn read_narrowing(biscuit: &Biscuit, index: usize) -> Result<Narrowing, TokenError> {
    let block = block_contents(biscuit, index)?;
    let refused = |why: &str| Err(TokenError::Refused(format!("block {index}: {why}")));
    if !block.rules.is_empty() || !block.checks.is_empty() || !block.scopes.is_empty() {
        return refused("a narrowing holds facts only");
    }
    let mut narrowing = Narrowing::default();
    for fact in &block.facts {
        let [value] = fact.predicate.terms.as_slice() else {
            return refused("a narrowing fact has one term");
        };
        match fact.predicate.name.as_str() {
            "narrowed_scopes" if narrowing.scopes.is_none() => {
                let scopes = texts(Some(value))?;
                if scopes.len() > MAX_NARROWED_SCOPES {
                    return refused("at most 64 scopes");
                }
                narrowing.scopes = Some(scopes);
            }
            "narrowed_expiry" if narrowing.expires_at.is_none() => {
                narrowing.expires_at = Some(when(Some(value))?);
            }
            "narrowed_audience" if narrowing.audience.is_none() => {
                narrowing.audience = Some(text(Some(value))?);
            }
            _ => return refused("an unknown or repeated fact"),
        }
    }
    Ok(narrowing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::test_keys::{key, keys};

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
    fn a_block_with_rules_checks_or_other_facts_is_refused_before_anything_runs() {
        let k = key(1, 7);
        let token = mint(&k, &claims()).unwrap();
        let unverified = biscuit_auth::UnverifiedBiscuit::from_base64(&token).unwrap();
        for code in [
            // Work a verifier would have to do: refused, not run.
            "check if f($a), f($b), f($c), $a + $b + $c < 0;",
            "g($x) <- f($x);",
            "reject if requested_scope($s), $s != \"read\";",
            // Facts that are not narrowings, or a narrowing stated twice.
            "key_id(\"someone else\");",
            "narrowed_audience(\"a\"); narrowed_audience(\"b\");",
        ] {
            let block = BlockBuilder::new().code(code).unwrap();
            let appended = unverified.append(block).unwrap().to_base64().unwrap();
            assert!(
                matches!(
                    verify(&appended, &keys(&[&k]), at(1_500)),
                    Err(TokenError::Refused(_))
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn wildcard_scopes_narrow_by_the_scope_rule_of_keys() {
        let k = key(1, 7);
        let token = mint(
            &k,
            &TokenClaims {
                scopes: vec!["billing:*".into(), "profile".into()],
                ..claims()
            },
        )
        .unwrap();
        let narrowed = attenuate(
            &token,
            &Narrowing {
                scopes: Some(vec!["billing:read".into()]),
                ..Narrowing::default()
            },
        )
        .unwrap();
        let got = verify(&narrowed, &keys(&[&k]), at(1_500)).unwrap();
        assert_eq!(got.scopes, vec!["billing:read".to_owned()]);
        let asking = |scopes: &'static [String]| Expect {
            scopes,
            ..at(1_500)
        };
        static READ: std::sync::LazyLock<[String; 1]> =
            std::sync::LazyLock::new(|| ["billing:read".into()]);
        static WRITE: std::sync::LazyLock<[String; 1]> =
            std::sync::LazyLock::new(|| ["billing:write".into()]);
        assert!(verify(&token, &keys(&[&k]), asking(&*WRITE)).is_ok());
        assert!(verify(&narrowed, &keys(&[&k]), asking(&*READ)).is_ok());
        assert_eq!(
            verify(&narrowed, &keys(&[&k]), asking(&*WRITE)),
            Err(TokenError::Scopes)
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
