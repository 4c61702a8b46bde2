//! Signed tokens: a short-lived credential derived from a key, checked by anyone holding
//! the deployment's public signing keys, with no database round trip.
//!
//! Two formats carry the same claims ([`TokenClaims`]):
//! - [`jws`]: a compact JWS (EdDSA over Ed25519, `kid` header), which any JWT library
//!   verifies against the served JWKS. It cannot be narrowed by its holder.
//! - [`attenuable`]: a [biscuit](https://www.biscuitsec.org/) token, which its holder can
//!   narrow offline (fewer scopes, an earlier expiry, an audience) by appending a block;
//!   verifiers check every block offline. A block cannot be removed, so a narrowed token
//!   cannot be widened back. Biscuit rather than macaroons because macaroons are checked
//!   with the issuer's secret (every verifier would hold it); a biscuit with a public key.
//!
//! Each [`SigningKey`] is one 32-byte seed: its JWS key is the seed itself, its biscuit
//! root key is derived from it (HMAC-SHA-256 under a fixed label), so the two protocols
//! never sign with the same key. Nothing here reads a clock: `now` is a parameter.

pub mod attenuable;
pub mod jws;
mod keys;
#[cfg(test)]
mod test_keys;

pub use keys::{PublicSigningKey, SigningKey, SigningKeyError, VerifyingKeys};

use serde::{Deserialize, Serialize};

/// Longest token accepted for verification; a longer string is malformed at once.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// What a token says about its holder. The same in both formats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The key the token was minted from (its key id).
    pub sub: String,
    /// The key's keyspace id.
    pub ks: String,
    /// The key's owner (external id), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The scopes the token carries (a subset of the key's when minted). After
    /// verification of a narrowed token: the scopes that survive every narrowing.
    pub scopes: Vec<String>,
    /// The one audience the token is for, if any: a verifier that is not that audience
    /// refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Minted at (Unix seconds).
    pub iat: i64,
    /// Stops verifying at (Unix seconds); after verification of a narrowed token, the
    /// earliest expiry of any block.
    pub exp: i64,
    /// The token's unique id.
    pub jti: String,
}

/// The two token formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenFormat {
    Jws,
    Biscuit,
}

impl TokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jws => "jws",
            Self::Biscuit => "biscuit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Jws, Self::Biscuit]
            .into_iter()
            .find(|f| f.as_str() == s)
    }

    /// The format `presented` has the shape of, if any (a key in Keyhaven's format has
    /// neither: it contains `_`, which base64url tokens do only inside a segment and
    /// keys always between prefix, id and secret — the caller tries a key first).
    pub fn detect(presented: &str) -> Option<Self> {
        if presented.is_empty() || presented.len() > MAX_TOKEN_LEN {
            return None;
        }
        let base64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        };
        if presented.starts_with("eyJ") && presented.split('.').count() == 3 {
            return presented.split('.').all(base64url).then_some(Self::Jws);
        }
        // A serialized biscuit is a protobuf whose first field (the root key id, tag 1,
        // or the authority block, tag 2) reads "CA" or "Eg" in base64url.
        ((presented.starts_with("CA") || presented.starts_with("Eg"))
            && presented.len() >= 100
            && base64url(presented))
        .then_some(Self::Biscuit)
    }
}

/// What a verifier expects of a token beyond its signature.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// Now (Unix seconds).
    pub now: i64,
    /// The audience this verifier is: a token naming another audience is refused, and so
    /// is a token naming one when this is `None`.
    pub audience: Option<&'a str>,
    /// The scopes this use needs: each must be among the token's (for a narrowed token,
    /// every block's checks must allow it), else [`TokenError::Scopes`].
    pub scopes: &'a [String],
}

/// Why a token was refused. None of them says anything about the signing keys' secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token's algorithm is not accepted (only EdDSA)")]
    Algorithm,
    #[error("the token was signed by a key this verifier does not know")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token does not carry the scopes this use needs")]
    Scopes,
    #[error("the token's checks refuse this use: {0}")]
    Refused(String),
}

impl TokenError {
    /// The verification code a refusal answers with: an expired token is EXPIRED, every
    /// other refusal is NOT_FOUND (like a wrong secret, it says no more), except a
    /// string that is not a token at all (MALFORMED).
    pub fn code(&self) -> crate::VerifyCode {
        match self {
            Self::Expired => crate::VerifyCode::Expired,
            Self::Scopes => crate::VerifyCode::InsufficientScopes,
            Self::Malformed(_) => crate::VerifyCode::Malformed,
            _ => crate::VerifyCode::NotFound,
        }
    }
}

/// Verifies a token of either format: its signature, expiry and audience; the claims
/// it carries (for a narrowed biscuit, what survives every narrowing).
pub fn verify(
    presented: &str,
    keys: &VerifyingKeys,
    expect: Expect<'_>,
) -> Result<(TokenFormat, TokenClaims), TokenError> {
    match TokenFormat::detect(presented) {
        Some(TokenFormat::Jws) => {
            jws::verify(presented, keys, expect).map(|c| (TokenFormat::Jws, c))
        }
        Some(TokenFormat::Biscuit) => {
            attenuable::verify(presented, keys, expect).map(|c| (TokenFormat::Biscuit, c))
        }
        None => Err(TokenError::Malformed("neither a JWS nor a biscuit")),
    }
}

/// Checks the time, audience and scope claims every format shares.
fn check_claims(claims: &TokenClaims, expect: Expect<'_>) -> Result<(), TokenError> {
    if claims.exp <= expect.now {
        return Err(TokenError::Expired);
    }
    match (&claims.aud, expect.audience) {
        (None, _) => {}
        (Some(aud), Some(mine)) if aud == mine => {}
        (Some(_), _) => return Err(TokenError::Audience),
    }
    check_scopes(claims, expect.scopes)
}

/// Whether verified `claims` carry every one of `scopes` (by the scope rule of keys).
/// Verification checks the scopes it is given; a caller that wants the claims of a
/// token short of some scopes verifies with none and checks them here, once.
pub fn check_scopes(claims: &TokenClaims, scopes: &[String]) -> Result<(), TokenError> {
    if scopes
        .iter()
        .all(|s| crate::policy::scopes_grant(&claims.scopes, s))
    {
        Ok(())
    } else {
        Err(TokenError::Scopes)
    }
}

/// Minting a token failed (never because of its input: the caller checked that).
#[derive(Debug, thiserror::Error)]
pub enum TokenMintError {
    #[error(transparent)]
    Random(#[from] crate::RandomError),
    #[error(transparent)]
    Key(#[from] SigningKeyError),
    #[error("building the token: {0}")]
    Build(String),
}

/// A fresh token id: 16 random bytes, base64url.
pub fn new_jti() -> Result<String, crate::RandomError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    crate::random::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
