//! Portal sessions (`POST /v1/portal/sessions`): single-use links that let one of your
//! customers manage their own keys in Keyhaven's portal. Field names and required fields
//! as in `docs/openapi.json` (a test compares).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePortalSession {
    /// The owner whose keys the customer manages.
    pub owner_id: String,
    /// Keyspaces shown (default: every keyspace the root key may see); 1-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace_ids: Option<Vec<String>>,
    /// A subset of `keys:read`, `keys:create`, `keys:rotate`, `keys:revoke`,
    /// `usage:read` (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// Where the portal's "back" link leads (`http(s)://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    /// How long the link may wait to be opened: 60 seconds to 1 day (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

impl CreatePortalSession {
    pub fn new(owner_id: impl Into<String>) -> Self {
        Self {
            owner_id: owner_id.into(),
            ..Self::default()
        }
    }
}

/// A portal link: it works once, and whoever holds it manages the owner's keys until it
/// is opened or expires. `Debug` shows the URL as `[REDACTED]`.
#[derive(Debug, Deserialize)]
pub struct PortalSessionView {
    /// Send the customer here (e.g. redirect them).
    pub url: SecretString,
    /// The link is dead after this if not opened.
    pub expires_at: String,
}
