//! The verification decision after the secret matched: is this key usable right now for
//! these scopes? Pure: the caller passes `now` and the key's state.

/// The answer codes of `POST /v1/keys/verify` this crate decides. (Rate limits and
/// quotas add theirs on top.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifyCode {
    Valid,
    NotFound,
    Malformed,
    Expired,
    Revoked,
    Disabled,
    InsufficientScopes,
    /// The key does not hold the permissions the verification's query asks for.
    InsufficientPermissions,
    /// The key (or its owner or keyspace) has an IP allowlist that does not admit the
    /// client's address, or no address was given.
    ForbiddenIp,
    /// A rate limit (the key's, its owner's, or the failed-verification limiter's) is
    /// exhausted.
    RateLimited,
    /// A quota (remaining uses) is exhausted.
    UsageExceeded,
}

impl VerifyCode {
    pub const ALL: [Self; 11] = [
        Self::Valid,
        Self::NotFound,
        Self::Malformed,
        Self::Expired,
        Self::Revoked,
        Self::Disabled,
        Self::InsufficientScopes,
        Self::InsufficientPermissions,
        Self::ForbiddenIp,
        Self::RateLimited,
        Self::UsageExceeded,
    ];

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
        }
    }
}

/// The state of a key that [`decide`] looks at. Times are Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState<'a> {
    pub enabled: bool,
    pub revoked: bool,
    pub expires_at: Option<i64>,
    /// For a rotated key: the end of its grace period, from which it counts as revoked.
    pub grace_until: Option<i64>,
    pub scopes: &'a [String],
    /// Whether the client's address passes the IP allowlists of the key, its owner and
    /// its keyspace ([`crate::ip_allowlist::admitted`]; true when there are none).
    pub ip_admitted: bool,
}

/// Decides a matched key's code. Order matters and is part of the contract: a revoked
/// key (or a rotated one past its grace period) says REVOKED even if it also expired; a
/// disabled key says DISABLED before its expiry; then the client's address
/// (FORBIDDEN_IP); scopes are checked last, only for an otherwise usable key. Every boundary is inclusive: at `expires_at` or `grace_until`
/// the key no longer verifies.
pub fn decide(key: KeyState<'_>, required_scopes: &[String], now: i64) -> VerifyCode {
    if key.revoked || key.grace_until.is_some_and(|until| until <= now) {
        VerifyCode::Revoked
    } else if !key.enabled {
        VerifyCode::Disabled
    } else if key.expires_at.is_some_and(|at| at <= now) {
        VerifyCode::Expired
    } else if !key.ip_admitted {
        VerifyCode::ForbiddenIp
    } else if !required_scopes
        .iter()
        .all(|needed| scopes_grant(key.scopes, needed))
    {
        VerifyCode::InsufficientScopes
    } else {
        VerifyCode::Valid
    }
}

/// Whether `granted` covers `needed`: an exact match, `*`, or a `family:*` wildcard
/// covering `family:anything`. Wildcards are only honoured in what is granted, never in
/// what is asked for: asking for `keys:*` needs `keys:*` (or `*`) granted.
pub fn scopes_grant(granted: &[String], needed: &str) -> bool {
    granted.iter().any(|g| {
        g == needed
            || g == "*"
            || g.strip_suffix('*').is_some_and(|family| {
                family.ends_with(':') && needed.starts_with(family) && needed.len() > family.len()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn state(scopes: &[String]) -> KeyState<'_> {
        KeyState {
            enabled: true,
            revoked: false,
            expires_at: None,
            grace_until: None,
            scopes,
            ip_admitted: true,
        }
    }

    #[test]
    fn precedence_is_revoked_disabled_expired_address_scopes() {
        let scopes = s(&["read"]);
        let all_bad = KeyState {
            enabled: false,
            revoked: true,
            expires_at: Some(10),
            grace_until: None,
            scopes: &scopes,
            ip_admitted: false,
        };
        let need = s(&["write"]);
        assert_eq!(decide(all_bad, &need, 20), VerifyCode::Revoked);
        let k = KeyState {
            revoked: false,
            ..all_bad
        };
        assert_eq!(decide(k, &need, 20), VerifyCode::Disabled);
        let k = KeyState { enabled: true, ..k };
        assert_eq!(decide(k, &need, 20), VerifyCode::Expired);
        let k = KeyState {
            expires_at: None,
            ..k
        };
        assert_eq!(decide(k, &need, 20), VerifyCode::ForbiddenIp);
        let k = KeyState {
            ip_admitted: true,
            ..k
        };
        assert_eq!(decide(k, &need, 20), VerifyCode::InsufficientScopes);
        assert_eq!(decide(k, &s(&["read"]), 20), VerifyCode::Valid);
    }

    #[test]
    fn expiry_is_inclusive_of_its_second() {
        let scopes = s(&[]);
        let k = KeyState {
            expires_at: Some(100),
            ..state(&scopes)
        };
        assert_eq!(decide(k, &[], 99), VerifyCode::Valid);
        assert_eq!(decide(k, &[], 100), VerifyCode::Expired);
    }

    #[test]
    fn a_rotated_key_verifies_until_its_grace_ends() {
        let scopes = s(&[]);
        let k = KeyState {
            grace_until: Some(500),
            expires_at: Some(400),
            ..state(&scopes)
        };
        assert_eq!(decide(k, &[], 399), VerifyCode::Valid);
        assert_eq!(decide(k, &[], 400), VerifyCode::Expired);
        assert_eq!(decide(k, &[], 499), VerifyCode::Expired);
        assert_eq!(decide(k, &[], 500), VerifyCode::Revoked);
        let k = KeyState {
            expires_at: None,
            ..k
        };
        assert_eq!(decide(k, &[], 499), VerifyCode::Valid);
        assert_eq!(decide(k, &[], 500), VerifyCode::Revoked);
    }

    #[test]
    fn wildcards_grant_only_their_family() {
        let g = s(&["keys:*"]);
        assert!(scopes_grant(&g, "keys:read"));
        assert!(!scopes_grant(&g, "keys:"));
        assert!(!scopes_grant(&g, "keyspaces:read"));
        assert!(!scopes_grant(&g, "owners:read"));
        assert!(scopes_grant(&s(&["*"]), "anything"));
        assert!(!scopes_grant(&s(&["keys:read"]), "keys:*"));
        assert!(!scopes_grant(&s(&["admin*"]), "admin:read"));
        assert!(!scopes_grant(&[], "x"));
    }
}
