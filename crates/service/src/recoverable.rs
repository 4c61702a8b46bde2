//! Recoverable keys (opt-in per key): the plaintext is sealed so that a root key with the
//! `keys:reveal` scope can see it again. Envelope encryption with AES-256-GCM:
//!
//! - a fresh random data key per key encrypts the plaintext (associated data: key id);
//! - the data key is wrapped by the newest master key (associated data: key id);
//! - blob = master version (4 bytes BE) ‖ wrap nonce (12) ‖ wrapped data key (48) ‖
//!   nonce (12) ‖ ciphertext + tag.
//!
//! The master key lives outside the database (`<data dir>/master.key` or
//! `KEYHAVEN_MASTER_KEY`, versioned like the pepper), so the database alone never yields
//! a plaintext; binding the key id as associated data stops a blob being moved to
//! another key's row.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::Context as _;
use keyhaven_core::{PepperSet, PepperVersion};
use zeroize::Zeroizing;

const PURPOSE: &str = "recoverable-keys/wrap/v1";
const NONCE: usize = 12;
const WRAPPED: usize = 32 + 16;

fn cipher(key: &[u8]) -> anyhow::Result<Aes256Gcm> {
    Aes256Gcm::new_from_slice(key).context("building the cipher")
}

fn nonce() -> anyhow::Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    keyhaven_core::random::fill(&mut n).context("reading the OS random source")?;
    Ok(n)
}

pub fn seal(master: &PepperSet, key_id: &str, plaintext: &str) -> anyhow::Result<Vec<u8>> {
    let mut data_key = Zeroizing::new([0u8; 32]);
    keyhaven_core::random::fill(data_key.as_mut_slice()).context("reading the OS random source")?;
    let (n1, n2) = (nonce()?, nonce()?);
    let aad = key_id.as_bytes();
    let ciphertext = cipher(data_key.as_slice())?
        .encrypt(
            &Nonce::from(n1),
            Payload {
                msg: plaintext.as_bytes(),
                aad,
            },
        )
        .map_err(|_| anyhow::anyhow!("sealing a key failed"))?;
    let newest = master.newest();
    let wrapping = newest.derive_key(PURPOSE);
    let wrapped = cipher(wrapping.as_slice())?
        .encrypt(
            &Nonce::from(n2),
            Payload {
                msg: data_key.as_slice(),
                aad,
            },
        )
        .map_err(|_| anyhow::anyhow!("wrapping a data key failed"))?;
    let mut out = Vec::with_capacity(4 + NONCE + WRAPPED + NONCE + ciphertext.len());
    out.extend_from_slice(&newest.version().get().to_be_bytes());
    out.extend_from_slice(&n2);
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&n1);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

pub fn open(master: &PepperSet, key_id: &str, sealed: &[u8]) -> anyhow::Result<Zeroizing<String>> {
    let short = || anyhow::anyhow!("sealed key too short");
    let (version, rest) = sealed.split_at_checked(4).ok_or_else(short)?;
    let (n2, rest) = rest.split_at_checked(NONCE).ok_or_else(short)?;
    let (wrapped, rest) = rest.split_at_checked(WRAPPED).ok_or_else(short)?;
    let (n1, ciphertext) = rest.split_at_checked(NONCE).ok_or_else(short)?;
    let version = u32::from_be_bytes(<[u8; 4]>::try_from(version)?);
    let version = PepperVersion::new(version).context("sealed key names master key version 0")?;
    let master_key = master
        .get(version)
        .with_context(|| format!("master key version {version} is not configured"))?;
    let aad = key_id.as_bytes();
    let data_key = Zeroizing::new(
        cipher(master_key.derive_key(PURPOSE).as_slice())?
            .decrypt(
                &Nonce::from(<[u8; NONCE]>::try_from(n2)?),
                Payload { msg: wrapped, aad },
            )
            .map_err(|_| anyhow::anyhow!("a wrapped data key failed authentication"))?,
    );
    let plaintext = Zeroizing::new(
        cipher(&data_key)?
            .decrypt(
                &Nonce::from(<[u8; NONCE]>::try_from(n1)?),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("a sealed key failed authentication"))?,
    );
    let text = std::str::from_utf8(&plaintext).context("a sealed key is not UTF-8")?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use keyhaven_core::Pepper;

    use super::*;

    fn master(entries: &[(u32, u8)]) -> PepperSet {
        PepperSet::new(
            entries
                .iter()
                .map(|&(v, b)| Pepper::new(PepperVersion::new(v).unwrap(), &[b; 32]))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn sealed_keys_open_only_with_their_master_key_and_key_id() {
        let m = master(&[(1, 1)]);
        let key = "acme_live_7Gx9QbWkP2mZ_secretsecretsecretsecretsecret123456";
        let sealed = seal(&m, "7Gx9QbWkP2mZ", key).unwrap();
        assert!(
            !sealed
                .windows(8)
                .any(|w| key.as_bytes().windows(8).any(|k| k == w))
        );
        assert_eq!(open(&m, "7Gx9QbWkP2mZ", &sealed).unwrap().as_str(), key);
        // After a master key rotation the old version still opens it.
        assert_eq!(
            open(&master(&[(1, 1), (2, 2)]), "7Gx9QbWkP2mZ", &sealed)
                .unwrap()
                .as_str(),
            key
        );
        assert!(
            open(&master(&[(1, 9)]), "7Gx9QbWkP2mZ", &sealed).is_err(),
            "wrong master key"
        );
        assert!(
            open(&m, "AAAAAAAAAAAA", &sealed).is_err(),
            "moved to another key"
        );
        assert!(
            open(&master(&[(2, 1)]), "7Gx9QbWkP2mZ", &sealed).is_err(),
            "missing version"
        );
        assert!(open(&m, "7Gx9QbWkP2mZ", &sealed[..40]).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(open(&m, "7Gx9QbWkP2mZ", &tampered).is_err());
    }
}
