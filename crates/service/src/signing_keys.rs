//! The deployment's token signing keys (`<data dir>/signing-keys` or
//! `KEYHAVEN_SIGNING_KEYS`, loaded by `bootstrap.rs`): the newest version signs, every
//! version verifies, and the JWKS publishes them all.

use keyhaven_core::PepperSet;
use keyhaven_core::token::{SigningKey, VerifyingKeys};
use keyhaven_store::pepper_file::PepperSource;

/// The deployment's signing keys: the newest signs, every one verifies.
pub struct SigningKeys {
    signer: SigningKey,
    verifying: VerifyingKeys,
    source: PepperSource,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("signer", &self.signer)
            .field("versions", &self.versions())
            .field("source", &self.source)
            .finish()
    }
}

impl SigningKeys {
    /// The keys the signing keys file (or `KEYHAVEN_SIGNING_KEYS`) holds.
    pub fn from_secrets(secrets: &PepperSet, source: PepperSource) -> anyhow::Result<Self> {
        let mut public = Vec::new();
        for version in secrets.versions() {
            if let Some(secret) = secrets.get(version) {
                public.push(SigningKey::from_secret(secret)?.public().clone());
            }
        }
        Ok(Self {
            signer: SigningKey::from_secret(secrets.newest())?,
            verifying: VerifyingKeys::new(public),
            source,
        })
    }

    pub fn verifying(&self) -> &VerifyingKeys {
        &self.verifying
    }

    /// The key that signs new tokens (the newest version).
    pub fn signer(&self) -> &SigningKey {
        &self.signer
    }

    /// The version that signs new tokens.
    pub fn signer_version(&self) -> u32 {
        self.signer.version()
    }

    pub fn versions(&self) -> Vec<u32> {
        self.verifying.iter().map(|k| k.version).collect()
    }

    pub fn source(&self) -> &PepperSource {
        &self.source
    }

    /// The JWKS document: each key as an Ed25519 JWK, and (a member JWK libraries
    /// ignore) each biscuit root key by its root key id.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .verifying
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": k.x(),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        let biscuit: Vec<_> = self
            .verifying
            .iter()
            .map(|k| {
                serde_json::json!({
                    "root_key_id": k.version,
                    "kid": k.kid,
                    "algorithm": "ed25519",
                    "public_key": k.biscuit_hex(),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys, "keyhaven_biscuit_keys": biscuit })
    }
}
