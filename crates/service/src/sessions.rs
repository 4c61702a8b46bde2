//! Browser sessions of the dashboard and the customer portal.
//!
//! A session is a random 256-bit token in an `HttpOnly` cookie; the database keeps only
//! its SHA-256, so a copy of the database opens no session. Sessions live in the
//! database, so any node serves them. A dashboard session ends after
//! `session_idle_minutes` unused or `session_max_hours` after sign-in; a portal session
//! `portal_session_minutes` after its link was opened.
//!
//! Every form carries a CSRF token derived from the session's own token (a hash of it
//! under a label of its own): nothing more to store, it changes with every session, and a
//! page of another site can neither read nor compute it.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyhaven_store::{Change, Operator, SessionKind, Timestamp, WebSession};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::actor::{Actor, PortalGrant, PortalPermission};
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::operators::{self, LoginError, LoginLimits};
use crate::service::Service;

/// A session's activity is written at most this often (seconds).
const TOUCH_EVERY: i64 = 60;

/// A session or portal link token: 32 random bytes, base64url. Never logged.
pub struct SessionToken(SecretString);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl SessionToken {
    pub fn generate() -> Result<Self> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        keyhaven_core::random::fill(&mut *bytes).map_err(|e| {
            ServiceError::Unexpected(anyhow::anyhow!("reading the OS random source: {e}"))
        })?;
        Ok(Self(SecretString::from(URL_SAFE_NO_PAD.encode(*bytes))))
    }

    /// A token as a cookie or link carries it; anything else is no token.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 43
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(SecretString::from(text.to_owned())))
    }

    /// The token itself, for the cookie or link that carries it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.expose_secret().as_bytes()).into()
    }

    /// The CSRF token of this session's forms: a hash of the token under a label of
    /// its own (unlike the stored hash, which has none), so neither gives the other.
    pub fn csrf(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"keyhaven csrf v1\0");
        h.update(self.0.expose_secret().as_bytes());
        URL_SAFE_NO_PAD.encode(h.finalize())
    }

    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        bool::from(self.csrf().as_bytes().ct_eq(given.as_bytes()))
    }
}

fn minutes(n: u64) -> time::Duration {
    time::Duration::minutes(i64::try_from(n).unwrap_or(i64::MAX / 60))
}

/// The sign-in limits of this deployment.
pub fn login_limits(service: &Service) -> LoginLimits {
    LoginLimits {
        per_email: service.config.login_failures_per_email,
        per_ip: service.config.login_failures_per_ip,
        window: minutes(service.config.login_failure_window_minutes),
    }
}

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct OperatorSession {
    pub actor: Actor,
    pub operator: Operator,
}

/// Checks the password and starts a dashboard session (audited `operator.login`).
pub async fn sign_in(
    service: &Service,
    email: &str,
    password: SecretString,
    ip: Option<IpAddr>,
) -> std::result::Result<(SessionToken, OperatorSession), LoginError> {
    let now = service.clock.now();
    let store = service.store.as_ref();
    let operator = operators::login(store, email, password, ip, login_limits(service), now).await?;
    let actor = Actor::operator(&operator.email, operator.role, ip);
    let token = SessionToken::generate()?;
    let session = WebSession {
        token_hash: token.hash(),
        kind: SessionKind::Operator,
        subject: operator.id.clone(),
        grants: Map::new(),
        created_at: now,
        last_seen_at: now,
        expires_at: now
            + time::Duration::hours(i64::try_from(service.config.session_max_hours).unwrap_or(12)),
    };
    let event = audit::event(
        &actor,
        "operator.login",
        ("operator", &operator.id),
        None,
        Map::new(),
        now,
    )?;
    store
        .create_session(&session, Change::audited(&event))
        .await
        .map_err(ServiceError::from)?;
    Ok((token, OperatorSession { actor, operator }))
}

/// The live session behind `token` of `kind`: not past its absolute end nor (with
/// `idle`) unused for longer than that. Its activity is noted.
async fn live(
    service: &Service,
    token: &SessionToken,
    kind: SessionKind,
    idle: Option<time::Duration>,
) -> Result<Option<WebSession>> {
    let now = service.clock.now();
    let Some(session) = service.store.session(&token.hash(), kind).await? else {
        return Ok(None);
    };
    let idle_out = idle.is_some_and(|idle| session.last_seen_at + idle <= now);
    if session.expires_at <= now || idle_out {
        return Ok(None);
    }
    if (now - session.last_seen_at).whole_seconds() >= TOUCH_EVERY {
        service
            .store
            .touch_session(&session.token_hash, now)
            .await?;
    }
    Ok(Some(session))
}

/// The operator signed in with `token`, if that session is live. The role is read
/// afresh, so a changed or deleted operator takes effect on the next request.
pub async fn operator_session(
    service: &Service,
    token: &SessionToken,
    ip: Option<IpAddr>,
) -> Result<Option<OperatorSession>> {
    let idle = minutes(service.config.session_idle_minutes);
    let Some(session) = live(service, token, SessionKind::Operator, Some(idle)).await? else {
        return Ok(None);
    };
    let Some(operator) = service.store.operator(&session.subject).await? else {
        return Ok(None);
    };
    Ok(Some(OperatorSession {
        actor: Actor::operator(&operator.email, operator.role, ip),
        operator,
    }))
}

/// Ends the session behind `token` (audited as `operator.logout` or `portal.logout`,
/// with the operator's or owner's id as target, as at its start).
pub async fn sign_out(
    service: &Service,
    actor: &Actor,
    subject: &str,
    token: &SessionToken,
) -> Result<()> {
    let now = service.clock.now();
    let (action, target) = match actor.owner() {
        Some(owner) => ("portal.logout", ("owner", owner)),
        None => ("operator.logout", ("operator", subject)),
    };
    let event = audit::event(actor, action, target, None, Map::new(), now)?;
    Ok(service
        .store
        .end_session(&token.hash(), Change::audited(&event))
        .await?)
}

/// A portal grant as stored with its link and session.
fn grants_json(grant: &PortalGrant) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("keyspace_ids".into(), json!(grant.keyspace_ids));
    map.insert("permissions".into(), json!(grant.permissions));
    map.insert("return_url".into(), json!(grant.return_url));
    map
}

fn grant_from(session: &WebSession) -> Result<PortalGrant> {
    let field = |name: &str| session.grants.get(name).cloned().unwrap_or(Value::Null);
    let decode = |e: serde_json::Error| {
        ServiceError::Unexpected(anyhow::anyhow!("decoding a portal grant: {e}"))
    };
    Ok(PortalGrant::new(
        session.subject.clone(),
        serde_json::from_value(field("keyspace_ids")).map_err(decode)?,
        serde_json::from_value::<Vec<PortalPermission>>(field("permissions")).map_err(decode)?,
        serde_json::from_value(field("return_url")).map_err(decode)?,
    ))
}

/// Stores a single-use portal link for `grant`, valid for `ttl`; returns its token.
pub(crate) async fn create_portal_link(
    service: &Service,
    actor: &Actor,
    grant: &PortalGrant,
    ttl: time::Duration,
) -> Result<(SessionToken, Timestamp)> {
    let now = service.clock.now();
    let token = SessionToken::generate()?;
    let expires_at = now + ttl;
    let link = WebSession {
        token_hash: token.hash(),
        kind: SessionKind::PortalLink,
        subject: grant.owner_id.clone(),
        grants: grants_json(grant),
        created_at: now,
        last_seen_at: now,
        expires_at,
    };
    let mut changes = grants_json(grant);
    changes.insert(
        "expires_at".into(),
        json!(crate::validate::rfc3339(expires_at)),
    );
    let event = audit::event(
        actor,
        "portal.link.create",
        ("owner", &grant.owner_id),
        None,
        changes,
        now,
    )?;
    service
        .store
        .create_session(&link, Change::audited(&event))
        .await?;
    Ok((token, expires_at))
}

/// Opens a portal link: the link dies (whatever happens next) and, if it was live, a
/// portal session starts (audited `portal.session.start`). `None`: no such link, used
/// already, or expired.
pub async fn open_portal_link(
    service: &Service,
    link: &SessionToken,
    ip: Option<IpAddr>,
) -> Result<Option<SessionToken>> {
    let now = service.clock.now();
    let Some(taken) = service
        .store
        .take_session(&link.hash(), SessionKind::PortalLink)
        .await?
    else {
        return Ok(None);
    };
    if taken.expires_at <= now {
        return Ok(None);
    }
    let grant = grant_from(&taken)?;
    let actor = Actor::portal(Arc::new(grant.clone()), ip);
    let token = SessionToken::generate()?;
    let session = WebSession {
        token_hash: token.hash(),
        kind: SessionKind::Portal,
        subject: taken.subject.clone(),
        grants: taken.grants.clone(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + minutes(service.config.portal_session_minutes),
    };
    let event = audit::event(
        &actor,
        "portal.session.start",
        ("owner", &grant.owner_id),
        None,
        Map::new(),
        now,
    )?;
    service
        .store
        .create_session(&session, Change::audited(&event))
        .await?;
    Ok(Some(token))
}

/// The portal customer behind `token`, if that session is live.
pub async fn portal_session(
    service: &Service,
    token: &SessionToken,
    ip: Option<IpAddr>,
) -> Result<Option<(Actor, Arc<PortalGrant>)>> {
    let Some(session) = live(service, token, SessionKind::Portal, None).await? else {
        return Ok(None);
    };
    let grant = Arc::new(grant_from(&session)?);
    Ok(Some((Actor::portal(grant.clone(), ip), grant)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_csrf_tokens_differ_per_session() {
        let a = SessionToken::generate().unwrap_or_else(|_| SessionToken(SecretString::from("")));
        let b = SessionToken::generate().unwrap_or_else(|_| SessionToken(SecretString::from("")));
        assert_eq!(a.expose().len(), 43);
        assert!(SessionToken::parse(a.expose()).is_some());
        assert!(SessionToken::parse("short").is_none());
        assert!(SessionToken::parse(&format!("{}=", &a.expose()[..42])).is_none());
        assert_ne!(a.csrf(), b.csrf());
        assert!(a.csrf_matches(&a.csrf()));
        assert!(!a.csrf_matches(&b.csrf()));
        assert!(!a.csrf_matches(""));
        assert_eq!(format!("{a:?}"), "SessionToken(<redacted>)");
    }
}
