//! Signed tokens (`POST /v1/tokens`): a short-lived credential minted from a key, that
//! any node or client checks offline against the deployment's public signing keys
//! (`GET /.well-known/jwks.json`). The formats and their checks are
//! `keyhaven_core::token`; verification of a presented token is in [`crate::verify`].
//!
//! Two ways to mint:
//! - the key itself is the credential ([`mint_with_key`]): verified exactly like
//!   `POST /v1/keys/verify` (state, IP allowlists; a failure counts against the
//!   failed-verification limiter), at cost 0. A token never mints another token.
//! - a root key with `tokens:write` names the key ([`mint_for_key_id`]), for backends.
//!
//! A token's scopes are a subset of the key's, its lifetime at most the keyspace's
//! `token_max_ttl_seconds` (default 15 minutes), never beyond the key's expiry or
//! rotation grace.

use std::net::IpAddr;
use std::sync::Arc;

use keyhaven_core::VerifyCode;
use keyhaven_core::token::{self, TokenClaims, TokenFormat, attenuable, jws};
use keyhaven_store::{DEFAULT_TOKEN_MAX_TTL, Timestamp};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::actor::{Actor, Scope};
use crate::audit;
use crate::cache::VerifyRecord;
use crate::error::{Result, ServiceError};
use crate::service::Service;
pub use crate::signing_keys::SigningKeys;
use crate::validate::{self, rfc3339};
use crate::verify::{self, VerifyRequest};

/// `POST /v1/tokens`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    /// Lifetime in seconds: 1 to the keyspace's `token_max_ttl_seconds` (the default
    /// and the maximum; 15 minutes unless the keyspace sets it). Never beyond the key's
    /// own expiry.
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<i64>,
    /// The token's scopes: a subset of the key's (default: all of the key's). A scope the
    /// key lacks is refused (403).
    #[schema(max_items = 64)]
    pub scopes: Option<Vec<String>>,
    /// The one service the token is for (its `aud`): 1-200 characters. A verifier that
    /// is another audience refuses it.
    #[schema(min_length = 1, max_length = 200)]
    pub audience: Option<String>,
    /// `jws` (default): a compact JWS any JWT library verifies against the JWKS.
    /// `biscuit`: a token its holder can narrow offline.
    #[schema(value_type = Option<String>, example = "jws")]
    pub format: Option<String>,
    /// The key to mint for, by key id: only with a root key holding `tokens:write` (a
    /// key minting for itself names nothing).
    #[schema(min_length = 12, max_length = 12)]
    pub key_id: Option<String>,
}

/// A minted token.
#[derive(Debug)]
pub struct Minted {
    pub token: SecretString,
    pub format: TokenFormat,
    pub claims: TokenClaims,
    pub signing_key: u32,
}

impl Minted {
    pub fn expires_at(&self) -> Timestamp {
        keyhaven_store::from_unix(self.claims.exp)
    }
}

/// The answer to a key minting for itself.
#[derive(Debug)]
pub enum KeyMinted {
    Minted(Box<Minted>),
    /// Not a working key (or a token, which never mints): nothing minted. The verify
    /// code says why, for the caller's log only (the answer is a plain 401).
    Refused(VerifyCode),
    /// Too many failed attempts from this client or for this key id: retry after this
    /// many microseconds, if known.
    Limited(Option<i64>),
}

/// Mints a token for the key `presented` is, when it verifies.
pub async fn mint_with_key(
    service: &Service,
    presented: SecretString,
    client_ip: Option<IpAddr>,
    input: MintToken,
) -> Result<KeyMinted> {
    use secrecy::ExposeSecret as _;
    if input.key_id.is_some() {
        return Err(ServiceError::invalid(
            "key_id: only a root key with tokens:write mints for another key",
        ));
    }
    let format = format_of(&input)?;
    let presented_str = presented.expose_secret();
    if keyhaven_core::parse(presented_str).is_err() && TokenFormat::detect(presented_str).is_some()
    {
        return Ok(KeyMinted::Refused(VerifyCode::NotFound));
    }
    let request = VerifyRequest {
        key: presented,
        scopes: Vec::new(),
        cost: Some(0),
        ratelimits: None,
        permissions: None,
        client_ip,
        audience: None,
    };
    let actor = Actor::gateway(None);
    let (code, record, limited) = verify::verify(service, &actor, &request, |verdict| {
        let limited =
            (verdict.code == VerifyCode::RateLimited && verdict.key.is_none()).then(|| {
                verdict
                    .limits
                    .ratelimits
                    .first()
                    .and_then(|l| l.retry_after)
            });
        (verdict.code, verdict.key.cloned(), limited)
    })
    .await?;
    if let Some(limit) = limited {
        return Ok(KeyMinted::Limited(limit));
    }
    match (code, record) {
        (VerifyCode::Valid, Some(record)) => {
            let minted = mint_for(service, &record, &input, format).await?;
            Ok(KeyMinted::Minted(Box::new(minted)))
        }
        (code, _) => Ok(KeyMinted::Refused(code)),
    }
}

/// Mints a token for key `key_id` on a root key's behalf (`tokens:write`).
pub async fn mint_for_key_id(service: &Service, actor: &Actor, input: MintToken) -> Result<Minted> {
    actor.require(Scope::TokensWrite)?;
    let format = format_of(&input)?;
    let Some(key_id) = input.key_id.as_deref() else {
        return Err(ServiceError::invalid(
            "key_id: a root key names the key to mint a token for",
        ));
    };
    let record = service
        .cache
        .get(service.store.as_ref(), key_id)
        .await?
        .filter(|r| actor.sees_keyspace(r.keyspace_id()))
        .ok_or(ServiceError::NotFound)?;
    let now = service.clock.now();
    let code = verify::key_state_code(record.clone(), now);
    if code != VerifyCode::Valid {
        return Err(ServiceError::conflict(
            "key_not_usable",
            format!("the key is {}: it cannot mint tokens", code.as_str()),
        ));
    }
    let minted = mint_for(service, &record, &input, format).await?;
    // A credential made by someone other than its key's holder: audited (never the
    // token itself), and not handed out unless the audit entry is written.
    let claims = &minted.claims;
    let event = audit::event(
        actor,
        "token.mint",
        ("key", &claims.sub),
        Some(&claims.ks),
        audit::created(&[
            ("format", json!(minted.format.as_str())),
            ("token_id", json!(claims.jti)),
            ("scopes", json!(claims.scopes)),
            ("audience", json!(claims.aud)),
            ("expires_at", json!(rfc3339(minted.expires_at()))),
        ]),
        now,
    )?;
    service.store.append_audit(&event).await?;
    Ok(minted)
}

fn format_of(input: &MintToken) -> Result<TokenFormat> {
    match input.format.as_deref() {
        None => Ok(TokenFormat::Jws),
        Some(name) => TokenFormat::parse(name)
            .ok_or_else(|| ServiceError::invalid("format must be `jws` or `biscuit`")),
    }
}

/// The token for a usable key: its scopes, audience and lifetime checked.
async fn mint_for(
    service: &Service,
    record: &VerifyRecord,
    input: &MintToken,
    format: TokenFormat,
) -> Result<Minted> {
    let keys = service.signing_keys().ok_or_else(|| {
        ServiceError::Unexpected(anyhow::anyhow!("no token signing keys are loaded"))
    })?;
    let scopes = match &input.scopes {
        None => record.scopes().to_vec(),
        Some(asked) => {
            validate::scopes(asked)?;
            let lacking: Vec<&str> = asked
                .iter()
                .filter(|s| !keyhaven_core::policy::scopes_grant(record.scopes(), s))
                .map(String::as_str)
                .collect();
            if !lacking.is_empty() {
                return Err(ServiceError::Forbidden {
                    code: "scopes_not_held",
                    detail: format!("the key does not hold the scopes {}", lacking.join(", ")),
                });
            }
            let mut scopes = asked.clone();
            scopes.sort();
            scopes.dedup();
            scopes
        }
    };
    if let Some(aud) = &input.audience {
        validate::name("audience", aud)?;
    }
    let max_ttl = service
        .store
        .keyspace(record.keyspace_id())
        .await?
        .and_then(|ks| ks.policy.token_max_ttl)
        .unwrap_or(DEFAULT_TOKEN_MAX_TTL);
    let ttl = input.ttl_seconds.unwrap_or(max_ttl);
    if !(1..=max_ttl).contains(&ttl) {
        return Err(ServiceError::invalid(format!(
            "ttl_seconds must be between 1 and {max_ttl} (this keyspace's token_max_ttl_seconds)"
        )));
    }
    let now = service.clock.now();
    let iat = now.unix_timestamp();
    let mut exp = iat + ttl;
    if let Some(end) = record.effective_expiry() {
        exp = exp.min(end.unix_timestamp());
    }
    if let Some(rotation) = record.rotation() {
        exp = exp.min(rotation.grace_until.unix_timestamp());
    }
    let claims = TokenClaims {
        sub: record.key_id().to_owned(),
        ks: record.keyspace_id().to_owned(),
        owner: record.owner_external_id().map(str::to_owned),
        scopes,
        aud: input.audience.clone(),
        iat,
        exp,
        jti: token::new_jti().map_err(|e| ServiceError::Unexpected(e.into()))?,
    };
    let token = match format {
        TokenFormat::Jws => jws::sign(keys.signer(), &claims),
        TokenFormat::Biscuit => attenuable::mint(keys.signer(), &claims)
            .map_err(|e| ServiceError::Unexpected(e.into()))?,
    };
    crate::metrics::token_minted(format);
    Ok(Minted {
        token: SecretString::from(token),
        format,
        claims,
        signing_key: keys.signer_version(),
    })
}

/// Loads the signing keys into `service` (once; later calls keep the first).
pub fn install(service: &Service, keys: SigningKeys) {
    let _ = service.tokens.set(Arc::new(keys));
}
