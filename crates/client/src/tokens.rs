//! Signed tokens, verified in this process: the signature, expiry, audience and scopes
//! offline against the server's JWKS (`GET /.well-known/jwks.json`, fetched once, again
//! every 5 minutes, and again, at most every 10 s, for a key id it does not know), with
//! `keyhaven_core::token`'s rules.
//!
//! A refusal needs no server. A VALID answer also needs to know the key still works: the
//! first token of a key goes to the server (which verifies tokens too), and its answer
//! vouches for the key's other tokens until the change stream names the key (or stops
//! vouching), exactly as the cache keeps a key's answers. So a revoked or disabled key's
//! tokens are refused within the coherence bound; a key with limits always asks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyhaven_core::token::{
    self, Expect, PublicSigningKey, TokenClaims, TokenError, VerifyingKeys,
};
use serde::Deserialize;

use crate::transport::Transport;
use crate::types::{VerifyCode, VerifyOptions, VerifyResponse};

/// How long a fetched JWKS is used before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// Least time between two fetches for an unknown key id.
const REFETCH_GAP: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
    #[serde(default)]
    keyhaven_biscuit_keys: Vec<BiscuitKey>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct BiscuitKey {
    root_key_id: u32,
    kid: String,
    public_key: String,
}

/// The JWKS as last fetched.
#[derive(Debug, Default)]
pub(crate) struct TokenKeys {
    state: Mutex<Fetched>,
}

#[derive(Debug, Default)]
struct Fetched {
    keys: Option<Arc<VerifyingKeys>>,
    at: Option<Instant>,
}

/// What the offline check decided.
pub(crate) enum Offline {
    /// Refused (or VALID, from a vouched key) with no call.
    Answer(Box<VerifyResponse>),
    /// The signature and claims hold; whether the key still works is the server's to say.
    AskServer,
}

impl TokenKeys {
    /// Checks `presented` (a token's shape) offline.
    pub(crate) async fn check(
        &self,
        transport: &Transport,
        presented: &str,
        options: &VerifyOptions,
        vouched: impl FnOnce(&TokenClaims) -> Option<Arc<VerifyResponse>>,
    ) -> Offline {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let expect = Expect {
            now,
            audience: options.audience.as_deref(),
            scopes: &[],
        };
        let Some(mut keys) = self.keys(transport, false).await else {
            return Offline::AskServer;
        };
        let mut verified = token::verify(presented, &keys, expect);
        if matches!(verified, Err(TokenError::UnknownKey))
            && let Some(fresh) = self.keys(transport, true).await
        {
            keys = fresh;
            verified = token::verify(presented, &keys, expect);
        }
        let claims = match verified {
            Ok((_, claims)) => claims,
            Err(refused) => {
                return Offline::Answer(Box::new(VerifyResponse::refused(refused.code().into())));
            }
        };
        if token::check_scopes(&claims, &options.scopes).is_err() {
            let mut answer = VerifyResponse::refused(VerifyCode::InsufficientScopes);
            answer.key_id = Some(claims.sub);
            answer.keyspace_id = Some(claims.ks);
            answer.token = true;
            return Offline::Answer(Box::new(answer));
        }
        match vouched(&claims) {
            Some(known) => {
                let mut answer = (*known).clone();
                answer.scopes = Some(claims.scopes);
                answer.expires_at = time::OffsetDateTime::from_unix_timestamp(claims.exp)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    });
                Offline::Answer(Box::new(answer))
            }
            None => Offline::AskServer,
        }
    }

    /// The keys, fetched when there are none, when they are old, or (`refetch`) when a
    /// token names one they lack and the last fetch is older than [`REFETCH_GAP`].
    async fn keys(&self, transport: &Transport, refetch: bool) -> Option<Arc<VerifyingKeys>> {
        let (keys, due) = {
            let state = self.state.lock().ok()?;
            let age = state.at.map(|at| at.elapsed());
            let due = match (&state.keys, age) {
                (None, _) | (_, None) => true,
                (Some(_), Some(age)) => age >= JWKS_TTL || (refetch && age >= REFETCH_GAP),
            };
            (state.keys.clone(), due)
        };
        if !due {
            return keys;
        }
        let fetched = fetch(transport).await;
        let mut state = self.state.lock().ok()?;
        state.at = Some(Instant::now());
        match fetched {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                state.keys = Some(fresh.clone());
                Some(fresh)
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching Keyhaven's JWKS failed; tokens go to the server");
                state.keys.clone()
            }
        }
    }
}

/// `GET /.well-known/jwks.json`, each key rebuilt from its published halves (its `kid`
/// recomputed, never taken from the document).
async fn fetch(transport: &Transport) -> Result<VerifyingKeys, String> {
    let response = transport
        .http()
        .get(transport.url("/.well-known/jwks.json"))
        .send()
        .await
        .map_err(crate::error::transport_detail)?;
    if !response.status().is_success() {
        return Err(format!("the JWKS answered {}", response.status()));
    }
    let jwks: Jwks = response.json().await.map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for jwk in &jwks.keys {
        if jwk.kty != "OKP" || jwk.crv.as_deref() != Some("Ed25519") {
            continue;
        }
        let (Some(x), Some(kid)) = (&jwk.x, &jwk.kid) else {
            continue;
        };
        let Some(biscuit) = jwks.keyhaven_biscuit_keys.iter().find(|b| &b.kid == kid) else {
            continue;
        };
        // A key that does not rebuild, or whose kid is not its thumbprint, is skipped.
        if let Ok(key) =
            PublicSigningKey::from_published(biscuit.root_key_id, x, &biscuit.public_key)
            && &key.kid == kid
        {
            keys.push(key);
        }
    }
    Ok(VerifyingKeys::new(keys))
}

/// Whether `presented` is shaped as a signed token rather than a key.
pub(crate) fn is_token(presented: &str) -> bool {
    keyhaven_core::parse(presented).is_err() && token::TokenFormat::detect(presented).is_some()
}
