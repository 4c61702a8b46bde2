//! `POST /v1/keys/verify`: what is asked ([`VerifyOptions`]) and what is answered
//! ([`VerifyResponse`]), field for field as `docs/openapi.json` has them (a test reads
//! the document and compares).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The verdict's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum VerifyCode {
    Valid,
    NotFound,
    Malformed,
    Expired,
    Revoked,
    Disabled,
    InsufficientScopes,
    /// The key lacks permissions the call's query asked for.
    InsufficientPermissions,
    /// The key may not be used from the `client_ip` given (or none was given).
    ForbiddenIp,
    RateLimited,
    UsageExceeded,
    /// A code this client does not know (a newer server): never valid.
    #[serde(other)]
    Unknown,
}

impl VerifyCode {
    /// The code as the API writes it (`VALID`, `NOT_FOUND`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::NotFound => "NOT_FOUND",
            Self::Malformed => "MALFORMED",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
            Self::Disabled => "DISABLED",
            Self::InsufficientScopes => "INSUFFICIENT_SCOPES",
            Self::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            Self::ForbiddenIp => "FORBIDDEN_IP",
            Self::RateLimited => "RATE_LIMITED",
            Self::UsageExceeded => "USAGE_EXCEEDED",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl From<keyhaven_core::VerifyCode> for VerifyCode {
    fn from(code: keyhaven_core::VerifyCode) -> Self {
        use keyhaven_core::VerifyCode as C;
        match code {
            C::Valid => Self::Valid,
            C::NotFound => Self::NotFound,
            C::Malformed => Self::Malformed,
            C::Expired => Self::Expired,
            C::Revoked => Self::Revoked,
            C::Disabled => Self::Disabled,
            C::InsufficientScopes => Self::InsufficientScopes,
            C::InsufficientPermissions => Self::InsufficientPermissions,
            C::ForbiddenIp => Self::ForbiddenIp,
            C::RateLimited => Self::RateLimited,
            C::UsageExceeded => Self::UsageExceeded,
        }
    }
}

/// The verify answer. Fields beyond `valid` and `code` are filled only once the secret
/// matched (for NOT_FOUND and MALFORMED they are `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub valid: bool,
    pub code: VerifyCode,
    pub key_id: Option<String>,
    pub keyspace_id: Option<String>,
    /// The keyspace's name.
    pub keyspace: Option<String>,
    pub owner: Option<VerifyOwner>,
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub meta: Option<Map<String, Value>>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// Set for a rotated key that still verifies during its grace period.
    pub rotation: Option<VerifyRotation>,
    /// The rate limits applied to this call (or the failed-verification limiter that
    /// answered RATE_LIMITED).
    pub ratelimits: Vec<VerifyRatelimit>,
    /// Remaining uses under the key's (or its owner's) quota; `None` without one.
    pub remaining: Option<u64>,
    /// For INSUFFICIENT_PERMISSIONS: the query's permissions the key lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_permissions: Option<Vec<String>>,
    /// A signed token was presented rather than the key (its scopes are the token's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token: bool,
}

impl VerifyResponse {
    /// An answer saying only `code` (as for an unknown key).
    pub fn refused(code: VerifyCode) -> Self {
        Self {
            valid: false,
            code,
            key_id: None,
            keyspace_id: None,
            keyspace: None,
            owner: None,
            name: None,
            scopes: None,
            meta: None,
            expires_at: None,
            rotation: None,
            ratelimits: Vec::new(),
            remaining: None,
            missing_permissions: None,
            token: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOwner {
    pub id: String,
    /// Your own id for this customer.
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRotation {
    /// The key that replaced this one.
    pub successor_key_id: String,
    /// When this key stops verifying (RFC 3339).
    pub grace_until: String,
}

/// Who a limit's bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LimitScope {
    Key,
    Owner,
    /// The failed-verification limiter's per-address budget.
    Client,
    #[serde(other)]
    Unknown,
}

/// One rate limit as applied to this call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRatelimit {
    pub name: String,
    pub scope: LimitScope,
    pub limit: u64,
    pub duration_ms: u64,
    /// Units that could still be taken now.
    pub remaining: u64,
    /// When the limit is whole again (RFC 3339, milliseconds).
    pub reset_at: String,
    /// For an exceeded limit: milliseconds until this call would pass again (absent when
    /// it never can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    pub exceeded: bool,
}

/// A named limit to check, at its own cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCost {
    pub name: String,
    /// Default: the call's `cost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
}

impl NamedCost {
    pub fn new(name: impl Into<String>, cost: Option<u64>) -> Self {
        Self {
            name: name.into(),
            cost,
        }
    }
}

/// What a verification asks beyond the key: scopes it must hold, the cost it takes from
/// the key's limits and quota, which named limits to check, and the address of the
/// client that presented it (failed verifications are limited per address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    pub scopes: Vec<String>,
    /// Default 1; 0 checks without consuming; at most 1,000.
    pub cost: Option<u64>,
    /// Default: every limit of the key at `cost`.
    pub ratelimits: Option<Vec<NamedCost>>,
    pub client_ip: Option<IpAddr>,
    /// A permission query (`documents.read AND (documents.write OR admin)`); calls with
    /// one always go to the server.
    pub permissions: Option<String>,
    /// For a signed token: the audience this service is (a token naming another
    /// audience, or naming one when this is unset, is refused).
    pub audience: Option<String>,
}

impl VerifyOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a scope the key must hold.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = Some(cost);
        self
    }

    pub fn ratelimits(mut self, named: Vec<NamedCost>) -> Self {
        self.ratelimits = Some(named);
        self
    }

    pub fn client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// A permission query the key must satisfy (else INSUFFICIENT_PERMISSIONS).
    pub fn permissions(mut self, query: impl Into<String>) -> Self {
        self.permissions = Some(query.into());
        self
    }

    /// The audience this service is, for signed tokens.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }
}

/// The request body, borrowing the key (never kept, never printed).
#[derive(Serialize)]
pub(crate) struct VerifyBody<'a> {
    pub key: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub scopes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimits: Option<&'a [NamedCost]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<&'a str>,
}

impl<'a> VerifyBody<'a> {
    pub fn new(key: &'a str, options: &'a VerifyOptions) -> Self {
        Self {
            key,
            scopes: &options.scopes,
            cost: options.cost,
            ratelimits: options.ratelimits.as_deref(),
            client_ip: options.client_ip,
            permissions: options.permissions.as_deref(),
            audience: options.audience.as_deref(),
        }
    }
}

/// `POST /v1/keys/verify/batch`'s body: each item a verify body.
#[derive(Serialize)]
pub(crate) struct VerifyBatchBody<'a> {
    pub items: Vec<VerifyBody<'a>>,
}

/// `POST /v1/keys/verify/batch`'s answer: one verify answer per item, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyBatchResponse {
    pub results: Vec<VerifyResponse>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_and_write_as_the_api_spells_them() {
        let code: VerifyCode = serde_json::from_str("\"INSUFFICIENT_SCOPES\"").unwrap();
        assert_eq!(code, VerifyCode::InsufficientScopes);
        assert_eq!(code.as_str(), "INSUFFICIENT_SCOPES");
        let unknown: VerifyCode = serde_json::from_str("\"FORBIDDEN\"").unwrap();
        assert_eq!(unknown, VerifyCode::Unknown);
        for code in keyhaven_core::VerifyCode::ALL {
            assert_eq!(VerifyCode::from(code).as_str(), code.as_str());
        }
    }

    #[test]
    fn batch_items_are_verify_bodies() {
        let plain = VerifyOptions::new();
        let asking = VerifyOptions::new()
            .scope("read")
            .cost(2)
            .permissions("a AND b");
        let body = VerifyBatchBody {
            items: vec![
                VerifyBody::new("acme_live_x", &plain),
                VerifyBody::new("acme_live_y", &asking),
            ],
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"items": [
                {"key": "acme_live_x"},
                {"key": "acme_live_y", "scopes": ["read"], "cost": 2, "permissions": "a AND b"},
            ]})
        );
    }
}
