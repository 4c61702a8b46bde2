//! The customer portal's front half: a company's backend asks for a portal link for one
//! of its owners (`POST /v1/portal/sessions`); the customer opens it and manages that
//! owner's keys in the keyspaces the link names, with the permissions it grants. The
//! session itself is [`crate::sessions`]; what a portal customer may see is
//! [`Actor::owner`] and [`Actor::visible`].

use keyhaven_store::{PageRequest, Timestamp};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::actor::{Actor, PortalGrant, PortalPermission, Scope};
use crate::error::{Result, ServiceError};
use crate::ids;
use crate::service::Service;
use crate::sessions;

/// Default lifetime of a portal link (seconds).
pub const DEFAULT_LINK_TTL: u64 = 600;
/// Shortest and longest lifetime a link may be given (seconds).
pub const LINK_TTL_RANGE: std::ops::RangeInclusive<u64> = 60..=86_400;
/// Most keyspaces one portal session may show.
pub const MAX_KEYSPACES: usize = 100;
/// Longest `return_url`.
pub const MAX_RETURN_URL: usize = 2000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortalSession {
    /// The owner whose keys the customer manages.
    pub owner_id: String,
    /// Keyspaces shown (default: every keyspace this root key may see); 1-100.
    #[schema(min_items = 1, max_items = 100)]
    pub keyspace_ids: Option<Vec<String>>,
    /// What the customer may do; a subset of `keys:read`, `keys:create`, `keys:rotate`,
    /// `keys:revoke`, `usage:read` (default: all).
    #[schema(min_items = 1, max_items = 5)]
    pub permissions: Option<Vec<String>>,
    /// Where the portal's "back" link leads: an `http(s)://` address, at most 2000
    /// characters.
    #[schema(max_length = 2000)]
    pub return_url: Option<String>,
    /// How long the link may wait to be opened: 60 seconds to 1 day (default 600). It
    /// works once.
    #[schema(minimum = 60, maximum = 86400)]
    pub ttl_seconds: Option<u64>,
}

/// A portal link, to hand to the customer (it works once).
#[derive(Debug)]
pub struct PortalLink {
    pub url: String,
    pub expires_at: Timestamp,
}

fn plain_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    url.len() <= MAX_RETURN_URL
        && rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && url.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`')
        })
}

async fn keyspaces_for(
    service: &Service,
    actor: &Actor,
    asked: Option<Vec<String>>,
) -> Result<Vec<String>> {
    let Some(mut ids) = asked else {
        let page = crate::keyspaces::list(
            service,
            actor,
            PageRequest {
                limit: MAX_KEYSPACES as u32,
                after: None,
            },
        )
        .await?;
        if page.items.is_empty() {
            return Err(ServiceError::invalid(
                "there is no keyspace to show in the portal",
            ));
        }
        return Ok(page.items.into_iter().map(|ks| ks.id).collect());
    };
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_KEYSPACES {
        return Err(ServiceError::invalid(format!(
            "keyspace_ids must hold 1 to {MAX_KEYSPACES} ids"
        )));
    }
    for id in &ids {
        if crate::keyspaces::visible(service.store.as_ref(), actor, id)
            .await?
            .is_none()
        {
            return Err(ServiceError::invalid(format!(
                "keyspace_ids: `{}` does not name a keyspace",
                crate::validate::redact(id)
            )));
        }
    }
    Ok(ids)
}

/// Makes a single-use link to a portal session for one owner (audited
/// `portal.link.create`). The actor must be unrestricted and hold the key scopes the
/// permissions amount to (`keys:write` to create, rotate or revoke; `keys:read` to read). Whoever holds the link can manage that owner's keys until it
/// is opened or expires: hand it to the signed-in customer only.
#[tracing::instrument(skip_all)]
pub async fn create_link(
    service: &Service,
    actor: &Actor,
    input: CreatePortalSession,
) -> Result<PortalLink> {
    // Binding keys to an owner is for actors not limited to keyspaces (as `owner_id` on
    // a key), and a link grants nothing its maker could not do itself.
    if actor.is_restricted() {
        return Err(ServiceError::MissingScope(
            "portal:write (unrestricted root key)",
        ));
    }
    let owner_exists = ids::is_plausible("own", &input.owner_id)
        && service.store.owner(&input.owner_id).await?.is_some();
    if !owner_exists {
        return Err(ServiceError::invalid("owner_id does not name an owner"));
    }
    let keyspace_ids = keyspaces_for(service, actor, input.keyspace_ids).await?;
    let permissions = match input.permissions {
        None => PortalPermission::ALL.to_vec(),
        Some(names) => {
            let mut permissions = Vec::new();
            for name in &names {
                let p = PortalPermission::parse(name).ok_or_else(|| {
                    ServiceError::invalid(format!(
                        "permissions: `{}` is not one of keys:read, keys:create, keys:rotate, \
                         keys:revoke, usage:read",
                        crate::validate::redact(name)
                    ))
                })?;
                if !permissions.contains(&p) {
                    permissions.push(p);
                }
            }
            if permissions.is_empty() {
                return Err(ServiceError::invalid(
                    "permissions must name at least one permission",
                ));
            }
            permissions
        }
    };
    for p in &permissions {
        actor.require(match p {
            PortalPermission::KeysRead | PortalPermission::UsageRead => Scope::KeysRead,
            PortalPermission::KeysCreate
            | PortalPermission::KeysRotate
            | PortalPermission::KeysRevoke => Scope::KeysWrite,
        })?;
    }
    if let Some(url) = &input.return_url
        && !plain_url(url)
    {
        return Err(ServiceError::invalid(format!(
            "return_url must be an http:// or https:// address of at most {MAX_RETURN_URL} \
             characters, without spaces, quotes or angle brackets"
        )));
    }
    let ttl = input.ttl_seconds.unwrap_or(DEFAULT_LINK_TTL);
    if !LINK_TTL_RANGE.contains(&ttl) {
        return Err(ServiceError::invalid(format!(
            "ttl_seconds must be between {} and {}",
            LINK_TTL_RANGE.start(),
            LINK_TTL_RANGE.end()
        )));
    }
    let grant = PortalGrant::new(input.owner_id, keyspace_ids, permissions, input.return_url);
    let (token, expires_at) = sessions::create_portal_link(
        service,
        actor,
        &grant,
        time::Duration::seconds(i64::try_from(ttl).unwrap_or(600)),
    )
    .await?;
    Ok(PortalLink {
        url: format!(
            "{}/portal/start/{}",
            service.config.public_base(),
            token.expose()
        ),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_urls_must_be_plain_web_addresses() {
        assert!(plain_url("https://acme.example/account?tab=keys"));
        assert!(plain_url("http://localhost:3000/"));
        for bad in [
            "javascript:alert(1)",
            "https://",
            "https:///x",
            "//evil.example",
            "https://a.example/\"x",
            "https://a b",
        ] {
            assert!(!plain_url(bad), "{bad}");
        }
    }
}
