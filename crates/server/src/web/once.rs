//! Secrets a page shows once: a new key's plaintext (created or rotated), a webhook's
//! signing secret. The operations hand them to a render closure; [`Once`] keeps the one
//! value for the page (zeroed when dropped) and stores no copy anywhere, so the front
//! door's answer is not kept for replay either ([`unstored`]).

use keyhaven_service::ServiceError;
use keyhaven_service::idempotency::{Done, Rendered};
use keyhaven_service::keys::NewKey;
use secrecy::ExposeSecret as _;
use zeroize::Zeroizing;

/// What an operation answers when the page itself is the answer: nothing to store.
pub fn unstored() -> Rendered {
    Rendered {
        status: 200,
        body: Zeroizing::new(Vec::new()),
    }
}

/// A secret shown once, and the id of what it belongs to.
#[derive(Default)]
pub struct Once(Option<(Zeroizing<String>, String)>);

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Once(<redacted>)")
    }
}

impl Once {
    /// The render closure of a key-making operation (create, rotate).
    pub fn key(&mut self) -> impl FnOnce(&NewKey) -> Result<Rendered, ServiceError> + '_ {
        |new| {
            self.keep(new.plaintext().expose_secret(), &new.key.key_id);
            Ok(unstored())
        }
    }

    pub fn keep(&mut self, secret: &str, id: &str) {
        self.0 = Some((Zeroizing::new(secret.to_owned()), id.to_owned()));
    }

    /// The secret and its id, once the operation has made them.
    pub fn take(self, done: Done) -> Result<(Zeroizing<String>, String), ServiceError> {
        match (done, self.0) {
            (Done::Fresh(_), Some(kept)) => Ok(kept),
            _ => Err(ServiceError::Unexpected(anyhow::anyhow!(
                "a new secret was not rendered"
            ))),
        }
    }
}
