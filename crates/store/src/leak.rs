//! Keys reported as leaked: what a report writes. The first report of a key acts on it
//! (per its keyspace's [`LeakPolicy`](crate::LeakPolicy)); a repeat writes nothing
//! while the key stays stopped.

use crate::model::{AuditEvent, Timestamp};

/// What a leak report did to the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakAction {
    Revoked,
    Disabled,
    /// The policy is `notify`: only the event.
    Notified,
    /// The policy would have stopped the key, but it had already stopped working
    /// (revoked, or disabled under `disable`): only the event.
    Unchanged,
}

impl LeakAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Disabled => "disabled",
            Self::Notified => "notified",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One leaked key to record, with the audit event (action `key.leak`, which stores the
/// `key.leaked` event) written in the same transaction.
#[derive(Debug, Clone)]
pub struct LeakWrite {
    pub key_id: String,
    /// Who reported it (`github`, or the `source` a report named).
    pub source: String,
    /// Where it was found, when the reporter said.
    pub url: Option<String>,
    pub action: LeakAction,
    /// The revocation reason stored with [`LeakAction::Revoked`].
    pub reason: String,
    pub at: Timestamp,
    pub audit: AuditEvent,
}

/// A signed batch from a secret scanner, remembered so that a replay is refused.
#[derive(Debug, Clone, Copy)]
pub struct SeenBatch<'a> {
    /// SHA-256 of the signature and the body.
    pub digest: &'a [u8; 32],
    pub at: Timestamp,
}
