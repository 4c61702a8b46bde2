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
    /// The JWKS document, written once: the keys do not change while the process runs.
    jwks: Vec<u8>,
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
    /// The keys the signing keys file (or `KEYHAVEN_SIGNING_KEYS`) holds, each derived
    /// once; the newest (the last, versions ascending) signs.
    pub fn from_secrets(secrets: &PepperSet, source: PepperSource) -> anyhow::Result<Self> {
        let mut keys = secrets
            .versions()
            .filter_map(|version| secrets.get(version))
            .map(SigningKey::from_secret)
            .collect::<Result<Vec<_>, _>>()?;
        let public = VerifyingKeys::new(keys.iter().map(|k| k.public().clone()).collect());
        let signer = keys
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no token signing key is configured"))?;
        Ok(Self {
            signer,
            jwks: serde_json::to_vec(&jwks(&public))?,
            verifying: public,
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

    /// The JWKS document (`GET /.well-known/jwks.json`), as JSON bytes.
    pub fn jwks(&self) -> &[u8] {
        &self.jwks
    }
}

/// The JWKS: each key as an Ed25519 JWK, and (a member JWK libraries ignore) each
/// biscuit root key by its root key id.
fn jwks(keys: &VerifyingKeys) -> serde_json::Value {
    let jwk = |k: &keyhaven_core::token::PublicSigningKey| {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": k.x(),
            "kid": k.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    };
    let biscuit = |k: &keyhaven_core::token::PublicSigningKey| {
        serde_json::json!({
            "root_key_id": k.version,
            "kid": k.kid,
            "algorithm": "ed25519",
            "public_key": k.biscuit_hex(),
        })
    };
    serde_json::json!({
        "keys": keys.iter().map(jwk).collect::<Vec<_>>(),
        "keyhaven_biscuit_keys": keys.iter().map(biscuit).collect::<Vec<_>>(),
    })
}
