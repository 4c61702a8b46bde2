//! The Standard Webhooks signature scheme (<https://www.standardwebhooks.com/>): the
//! receiver gets `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, the key
//! being the base64 part of the endpoint's `whsec_…` secret.

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;

/// A fresh endpoint secret, `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> anyhow::Result<SecretString> {
    let mut bytes = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    keyhaven_core::random::fill(bytes.as_mut_slice()).context("reading the OS random source")?;
    Ok(SecretString::from(format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(bytes.as_slice())
    )))
}

/// The `webhook-signature` header value for one attempt.
pub fn sign(
    secret: &SecretString,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> anyhow::Result<String> {
    let encoded = secret
        .expose_secret()
        .strip_prefix(SECRET_PREFIX)
        .context("a webhook secret starts with whsec_")?;
    let key = zeroize::Zeroizing::new(
        STANDARD
            .decode(encoded)
            .context("a webhook secret is base64 after whsec_")?,
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).context("any key length works")?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries (secret, id, timestamp
    /// and payload from their test suites, signature computed independently with
    /// Python's hmac module).
    #[test]
    fn signs_as_the_specification_says() {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn new_secrets_are_distinct_and_well_formed() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        let raw = STANDARD
            .decode(a.expose_secret().strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert!(sign(&SecretString::from("nope".to_owned()), "m", 1, b"").is_err());
    }
}
