//! What an operation can answer besides its result. Each front door maps these to its
//! own shape (the HTTP API to problem+json, the CLI to a message and an exit code).
//!
//! A `NotFound` never says what was looked for: an object the actor may not see is
//! answered exactly like one that does not exist.

use keyhaven_store::{Conflict, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is not acceptable; `code` is stable and machine-readable.
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    /// The actor lacks the scope an operation needs.
    #[error("the root key lacks the scope {0}")]
    MissingScope(&'static str),
    #[error("not found")]
    NotFound,
    /// The actor may not do this with what it holds (a token asked for scopes its key
    /// lacks); `code` is stable, the detail says what is missing.
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    /// The change contradicts the stored state (taken prefix, already revoked, …).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// An idempotency key was reused for a different request.
    #[error("{0}")]
    IdempotencyMismatch(&'static str),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl ServiceError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            detail: detail.into(),
        }
    }

    /// `validation_failed`: the most common refusal.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::bad_request("validation_failed", detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }

    /// This refusal of one item of a batch, named in its detail (`items[3]: …`); other
    /// errors as they are.
    pub fn at_item(self, list: &str, index: usize) -> Self {
        match self {
            Self::Invalid { code, detail } => Self::Invalid {
                code,
                detail: format!("{list}[{index}]: {detail}"),
            },
            Self::Conflict { code, detail } => Self::Conflict {
                code,
                detail: format!("{list}[{index}]: {detail}"),
            },
            other => other,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(c) => Self::Conflict {
                code: c.code(),
                detail: conflict_detail(c).to_owned(),
            },
            StoreError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

fn conflict_detail(c: Conflict) -> &'static str {
    use Conflict::*;
    match c {
        PrefixTaken => "Another keyspace already uses this prefix.",
        ExternalIdTaken => "Another owner already has this external_id.",
        KeyspaceNotEmpty => "The keyspace still holds keys; delete them first.",
        OwnerHasKeys => "The owner still has keys; delete or reassign them first.",
        AlreadyRevoked => "The key is already revoked.",
        AlreadyRotated => "The key was already rotated; rotate its successor instead.",
        MissingReference => "A referenced keyspace or owner does not exist.",
        IdempotencyKeyTaken => "A request with this Idempotency-Key is still in progress.",
        DuplicateId => "A generated id collided with an existing one; retry the request.",
        EmailTaken => "Another operator already signs in with this email address.",
        RoleTaken => "The keyspace already has a role of this name.",
        PlanTaken => "A plan of this name exists already.",
        PlanInUse => {
            "Keys or owners are still on this plan: move them to another plan (or none) first."
        }
        NoQuota => "It has no quota: set one (PATCH with `quota`) before changing its credits.",
        InsufficientCredits => {
            "Fewer credits are left than the decrement takes; nothing was taken."
        }
        CreditsOverflow => {
            "The increment would take the credits past their maximum (2^50); nothing was added."
        }
    }
}
