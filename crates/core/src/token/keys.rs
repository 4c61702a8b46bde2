//! Signing keys: private (the issuer's, [`SigningKey`]) and public (every verifier's,
//! [`PublicSigningKey`], as served in the JWKS).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use biscuit_auth::format::schema::public_key::Algorithm as BiscuitAlgorithm;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Label of a signing key's seed derivation from its secret.
const SEED_LABEL: &[u8] = b"keyhaven token signing key: seed v1";
/// Label of the biscuit root key's derivation from a signing key's seed.
const BISCUIT_LABEL: &[u8] = b"keyhaven token signing key: biscuit root key v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    #[error("signing key version 0 (versions start at 1)")]
    VersionZero,
    #[error("a public signing key is not a valid Ed25519 point")]
    InvalidPublicKey,
}

/// One signing key of the deployment: a version (the biscuit root key id) and a 32-byte
/// seed. `Debug` shows the version and key id, never the seed.
pub struct SigningKey {
    version: u32,
    jws: ed25519_dalek::SigningKey,
    biscuit: biscuit_auth::KeyPair,
    public: PublicSigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("version", &self.version)
            .field("kid", &self.public.kid)
            .field("seed", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// The key of `version` with this seed.
    pub fn from_seed(version: u32, seed: &[u8; 32]) -> Result<Self, SigningKeyError> {
        if version == 0 {
            return Err(SigningKeyError::VersionZero);
        }
        let jws = ed25519_dalek::SigningKey::from_bytes(seed);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(seed)
            .map_err(|_| SigningKeyError::VersionZero)?;
        mac.update(BISCUIT_LABEL);
        let derived = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        let biscuit =
            biscuit_auth::KeyPair::from_bytes(derived.as_slice(), BiscuitAlgorithm::Ed25519)
                .map_err(|_| SigningKeyError::InvalidPublicKey)?;
        let public = PublicSigningKey::new(version, jws.verifying_key(), biscuit.public());
        Ok(Self {
            version,
            jws,
            biscuit,
            public,
        })
    }

    /// The key a versioned secret of the signing keys file stands for (that file has
    /// the pepper's format): its seed is the secret's HMAC of a fixed label, so the file's
    /// bytes themselves never sign anything.
    pub fn from_secret(secret: &crate::Pepper) -> Result<Self, SigningKeyError> {
        let seed = Zeroizing::new(secret.mac.mac(&[SEED_LABEL]));
        Self::from_seed(secret.version().get(), &seed)
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn public(&self) -> &PublicSigningKey {
        &self.public
    }

    pub(crate) fn jws(&self) -> &ed25519_dalek::SigningKey {
        &self.jws
    }

    pub(crate) fn biscuit(&self) -> &biscuit_auth::KeyPair {
        &self.biscuit
    }
}

/// The public half of a signing key: what verifiers hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicSigningKey {
    pub version: u32,
    /// The JWS `kid`: the key's RFC 7638 JWK thumbprint.
    pub kid: String,
    pub(crate) jws: ed25519_dalek::VerifyingKey,
    pub(crate) biscuit: biscuit_auth::PublicKey,
}

impl PublicSigningKey {
    fn new(
        version: u32,
        jws: ed25519_dalek::VerifyingKey,
        biscuit: biscuit_auth::PublicKey,
    ) -> Self {
        let x = URL_SAFE_NO_PAD.encode(jws.as_bytes());
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Self {
            version,
            kid,
            jws,
            biscuit,
        }
    }

    /// From the published halves: the JWK's `x` (base64url) and the biscuit root key
    /// (hex). The `kid` is recomputed from `x`, never trusted from the document.
    pub fn from_published(
        version: u32,
        x: &str,
        biscuit_hex: &str,
    ) -> Result<Self, SigningKeyError> {
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(x)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SigningKeyError::InvalidPublicKey)?;
        let jws = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| SigningKeyError::InvalidPublicKey)?;
        if jws.is_weak() {
            return Err(SigningKeyError::InvalidPublicKey);
        }
        let biscuit = biscuit_auth::PublicKey::from_bytes_hex(
            biscuit_hex,
            biscuit_auth::builder::Algorithm::Ed25519,
        )
        .map_err(|_| SigningKeyError::InvalidPublicKey)?;
        Ok(Self::new(version, jws, biscuit))
    }

    /// The JWK's `x`: the Ed25519 public key, base64url.
    pub fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.jws.as_bytes())
    }

    /// The biscuit root public key, hex.
    pub fn biscuit_hex(&self) -> String {
        self.biscuit.to_bytes_hex()
    }
}

/// The public keys a verifier accepts tokens from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyingKeys {
    keys: Vec<PublicSigningKey>,
}

impl VerifyingKeys {
    pub fn new(keys: Vec<PublicSigningKey>) -> Self {
        Self { keys }
    }

    pub fn by_kid(&self, kid: &str) -> Option<&PublicSigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn by_version(&self, version: u32) -> Option<&PublicSigningKey> {
        self.keys.iter().find(|k| k.version == version)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PublicSigningKey> {
        self.keys.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
