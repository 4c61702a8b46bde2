//! Steps 2-5 for a signed token (`keyhaven_core::token`) instead of a key: its
//! signature, expiry and audience offline against the signing keys, then the key it was
//! minted from, whose state still rules (a revoked or disabled key's tokens stop at
//! once here; offline verifiers learn it from the change stream). The scopes asked for
//! are checked against the token's own (a subset of the key's; for a narrowed biscuit,
//! by every block's checks) and the key's.

use keyhaven_core::VerifyCode;
use keyhaven_core::token::{self, Expect, TokenClaims};
use keyhaven_store::Timestamp;

use super::{Asked, Matched, apply_policy};
use crate::error::Result;
use crate::service::Service;

/// The token's verdict before limits, and its claims once its signature verified.
pub(super) async fn match_token(
    service: &Service,
    presented: &str,
    asked: &Asked<'_>,
    visible: impl FnOnce(&str) -> bool,
    now: Timestamp,
    audience: Option<&str>,
) -> Result<(Matched, Option<TokenClaims>)> {
    let Some(keys) = service.signing_keys() else {
        return Ok((Matched::rejected(VerifyCode::NotFound), None));
    };
    // Verified for any use, so a token short of the scopes asked for is still named in
    // the answer (INSUFFICIENT_SCOPES with its key), without verifying it twice.
    let expect = Expect {
        now: now.unix_timestamp(),
        audience,
        scopes: &[],
    };
    let claims = match token::verify(presented, keys.verifying(), expect) {
        Ok((_, claims)) => claims,
        Err(refused) => return Ok((Matched::rejected(refused.code()), None)),
    };
    let lacks_scopes = token::check_scopes(&claims, asked.scopes).is_err();
    let record = service
        .cache
        .get(service.store.as_ref(), &claims.sub)
        .await?
        .filter(|r| r.keyspace_id() == claims.ks && visible(r.keyspace_id()));
    let Some(record) = record else {
        // Deleted since, or a keyspace the caller may not see.
        return Ok((Matched::rejected(VerifyCode::NotFound), None));
    };
    // A scope the key has lost since the token was minted is not the token's either.
    let mut claims = claims;
    claims
        .scopes
        .retain(|s| keyhaven_core::policy::scopes_grant(record.scopes(), s));
    let mut matched = apply_policy(record, asked, now);
    if matched.code == VerifyCode::Valid && lacks_scopes {
        matched.code = VerifyCode::InsufficientScopes;
    }
    Ok((matched, Some(claims)))
}
