use std::fmt;

/// Why a store operation failed. `NotFound` and `Conflict` are answers the API passes on;
/// `Unexpected` is anything else (I/O, a corrupt row) and becomes a logged 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(Conflict),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The ways a write can collide with what is stored; each has a stable name the API uses
/// as its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Another keyspace already uses this prefix.
    PrefixTaken,
    /// Another owner already has this external id.
    ExternalIdTaken,
    /// The keyspace still holds keys.
    KeyspaceNotEmpty,
    /// The owner still has keys.
    OwnerHasKeys,
    /// The key was already revoked.
    AlreadyRevoked,
    /// The key was already rotated (it has a successor).
    AlreadyRotated,
    /// The referenced keyspace or owner does not exist (any more).
    MissingReference,
    /// The idempotency key was used by a concurrent request that committed first.
    IdempotencyKeyTaken,
    /// A generated id collided with an existing one (astronomically unlikely; retry).
    DuplicateId,
    /// Another operator already signs in with this email address.
    EmailTaken,
    /// The keyspace already has a role of this name.
    RoleTaken,
    /// A plan of this name exists already.
    PlanTaken,
    /// The plan is still named by a key or an owner.
    PlanInUse,
    /// A credits change on a key or owner that has no quota.
    NoQuota,
    /// A decrement larger than the credits left.
    InsufficientCredits,
    /// An increment past the largest counter a quota may hold.
    CreditsOverflow,
}

impl Conflict {
    pub fn code(self) -> &'static str {
        match self {
            Self::PrefixTaken => "prefix_taken",
            Self::ExternalIdTaken => "external_id_taken",
            Self::KeyspaceNotEmpty => "keyspace_not_empty",
            Self::OwnerHasKeys => "owner_has_keys",
            Self::AlreadyRevoked => "already_revoked",
            Self::AlreadyRotated => "already_rotated",
            Self::MissingReference => "missing_reference",
            Self::IdempotencyKeyTaken => "idempotency_key_in_use",
            Self::DuplicateId => "duplicate_id",
            Self::EmailTaken => "email_taken",
            Self::RoleTaken => "role_taken",
            Self::PlanTaken => "plan_taken",
            Self::PlanInUse => "plan_in_use",
            Self::NoQuota => "no_quota",
            Self::InsufficientCredits => "insufficient_credits",
            Self::CreditsOverflow => "credits_overflow",
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unexpected(anyhow::Error::new(e))
    }
}

/// Names the operation an unexpected error interrupted, so the logged chain of a 500 says
/// what the store was doing ("revoking a key: …"). `NotFound` and `Conflict` are answers,
/// not failures, and pass unchanged (anyhow's `Context` would turn them into
/// `Unexpected`).
pub(crate) trait Doing<T> {
    fn doing(self, what: &'static str) -> Result<T, StoreError>;
}

impl<T> Doing<T> for Result<T, StoreError> {
    fn doing(self, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| match e {
            StoreError::Unexpected(e) => StoreError::Unexpected(e.context(what)),
            answer => answer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Conflict, Doing as _, StoreError};

    #[test]
    fn doing_names_unexpected_errors_only() {
        let failed: Result<(), StoreError> = Err(anyhow::anyhow!("disk full").into());
        match failed.doing("revoking a key") {
            Err(StoreError::Unexpected(e)) => {
                assert_eq!(format!("{e:#}"), "revoking a key: disk full");
            }
            other => panic!("expected Unexpected, got {other:?}"),
        }
        let missing: Result<(), StoreError> = Err(StoreError::NotFound);
        assert!(matches!(
            missing.doing("revoking a key"),
            Err(StoreError::NotFound)
        ));
        let taken: Result<(), StoreError> = Err(StoreError::Conflict(Conflict::AlreadyRevoked));
        assert!(matches!(
            taken.doing("revoking a key"),
            Err(StoreError::Conflict(Conflict::AlreadyRevoked))
        ));
    }
}
