//! The people and browser sessions of the dashboard and the customer portal.

use std::fmt;

use serde_json::{Map, Value};

use crate::model::Timestamp;

/// What an operator may do in the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorRole {
    /// Reads and changes everything.
    Admin,
    /// Reads everything, changes nothing.
    Viewer,
}

impl OperatorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// A person who signs in to the dashboard.
#[derive(Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: String,
    /// Lower-case; unique.
    pub email: String,
    pub role: OperatorRole,
    /// Argon2id, as a PHC string.
    pub password_hash: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// What a [`WebSession`] row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A signed-in operator; the subject is the operator's id.
    Operator,
    /// A customer in the portal; the subject is the owner's id.
    Portal,
    /// A portal link not opened yet (single use); the subject is the owner's id.
    PortalLink,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Portal => "portal",
            Self::PortalLink => "portal_link",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(Self::Operator),
            "portal" => Some(Self::Portal),
            "portal_link" => Some(Self::PortalLink),
            _ => None,
        }
    }
}

/// A browser session or a portal link. The store keeps only a hash of its token.
#[derive(Clone, PartialEq, Eq)]
pub struct WebSession {
    /// SHA-256 of the cookie's or link's token.
    pub token_hash: [u8; 32],
    pub kind: SessionKind,
    pub subject: String,
    /// What the session may see and do (portal sessions), as the service wrote it.
    pub grants: Map<String, Value>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// The absolute end: the session is dead from then on, whatever its activity.
    pub expires_at: Timestamp,
}

impl fmt::Debug for WebSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSession")
            .field("kind", &self.kind)
            .field("subject", &self.subject)
            .field("grants", &self.grants)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
