//! Reading keys: a page of keys (newest or most recently used first) and the keys
//! about to expire, each with its keyspace's prefix. A keyspace the actor may not see
//! lists like an empty one. (One key: [`super::find`].)

use keyhaven_store::{ExpiringKey, KeyFilter, KeyRecord, KeyStateFilter, Page, PageRequest};

use crate::actor::Actor;
use crate::error::{Result, ServiceError};
use crate::service::Service;

/// The order of a list of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeySort {
    /// Newest first.
    #[default]
    Created,
    /// Most recently used first, never-used keys last.
    LastUsed,
}

impl KeySort {
    /// `created` (the default) or `last_used`.
    pub fn parse(sort: Option<&str>) -> Result<Self> {
        match sort {
            None | Some("created") => Ok(Self::Created),
            Some("last_used") => Ok(Self::LastUsed),
            Some(_) => Err(ServiceError::bad_request(
                "invalid_query",
                "sort must be `created` or `last_used`",
            )),
        }
    }
}

/// Longest search text of a key list.
pub const MAX_SEARCH: usize = 200;

/// A key list's state filter: `active`, `disabled`, `expired` or `revoked`.
pub fn parse_state(state: Option<&str>) -> Result<Option<KeyStateFilter>> {
    Ok(match state {
        None => None,
        Some("active") => Some(KeyStateFilter::Active),
        Some("disabled") => Some(KeyStateFilter::Disabled),
        Some("expired") => Some(KeyStateFilter::Expired),
        Some("revoked") => Some(KeyStateFilter::Revoked),
        Some(_) => {
            return Err(ServiceError::bad_request(
                "invalid_query",
                "state must be `active`, `disabled`, `expired` or `revoked`",
            ));
        }
    })
}

/// Which keys to list, in which order.
#[derive(Debug, Default)]
pub struct ListKeys<'a> {
    pub keyspace_id: Option<&'a str>,
    pub owner_id: Option<&'a str>,
    pub sort: KeySort,
    /// A key id prefix, part of a name, or an owner's external id.
    pub search: Option<&'a str>,
    /// Only keys in this state now.
    pub state: Option<KeyStateFilter>,
}

/// A page of keys.
#[derive(Debug)]
pub struct KeyList {
    pub page: Page<KeyRecord>,
    /// Sorted by last use, with a next page: the last key's last use (Unix seconds, 0 for
    /// never), which the next page's request carries as `last_used_before`.
    pub next_last_used: Option<i64>,
    pub prefixes: Prefixes,
}

/// The keys within their keyspace's expiry warning, soonest first.
#[derive(Debug)]
pub struct ExpiringKeys {
    pub keys: Vec<ExpiringKey>,
    pub prefixes: Prefixes,
}

/// A page of keys. `page` and `last_used_before` come from the previous page (its
/// [`Page::next`] and [`KeyList::next_last_used`]): a position by last use is refused
/// for a list by creation and the other way round.
#[tracing::instrument(skip_all)]
pub async fn list(
    service: &Service,
    actor: &Actor,
    query: ListKeys<'_>,
    page: PageRequest,
    last_used_before: Option<i64>,
) -> Result<KeyList> {
    if query.search.is_some_and(|s| s.chars().count() > MAX_SEARCH) {
        return Err(ServiceError::bad_request(
            "invalid_query",
            format!("search must be at most {MAX_SEARCH} characters"),
        ));
    }
    let by_last_used = query.sort == KeySort::LastUsed;
    if last_used_before.is_some() != (by_last_used && page.after.is_some()) {
        return Err(ServiceError::bad_request(
            "invalid_cursor",
            "cursor is not one this server returned for this sort",
        ));
    }
    // A portal customer lists its owner's keys only.
    let owner_id = match (actor.owner(), query.owner_id) {
        (Some(mine), Some(asked)) if mine != asked => None,
        (Some(mine), _) => Some(Some(mine)),
        (None, asked) => Some(asked),
    };
    let keyspace_hidden = query.keyspace_id.is_some_and(|ks| !actor.sees_keyspace(ks));
    let Some(owner_id) = owner_id.filter(|_| !keyspace_hidden) else {
        return Ok(KeyList {
            page: Page {
                items: Vec::new(),
                next: None,
            },
            next_last_used: None,
            prefixes: Prefixes::default(),
        });
    };
    let filter = KeyFilter {
        visible: actor.visible(),
        keyspace_id: query.keyspace_id,
        owner_id,
        by_last_used,
        last_used_before,
        search: query.search.filter(|s| !s.is_empty()),
        state: query
            .state
            .map(|state| (state, service.clock.now().unix_timestamp())),
        root_keys: false,
    };
    let page = service.store.list_keys(&filter, page).await?;
    let next_last_used = match (page.next, page.items.last()) {
        (Some(_), Some(last)) if by_last_used => {
            Some(last.last_used_at.map_or(0, |t| t.unix_timestamp()))
        }
        _ => None,
    };
    let prefixes = Prefixes::load(service, page.items.iter().map(|k| &*k.keyspace_id)).await?;
    Ok(KeyList {
        page,
        next_last_used,
        prefixes,
    })
}

/// Up to `limit` keys within their keyspace's expiry warning, soonest expiry first.
#[tracing::instrument(skip_all)]
pub async fn expiring(
    service: &Service,
    actor: &Actor,
    keyspace_id: Option<&str>,
    limit: u32,
) -> Result<ExpiringKeys> {
    actor.require_all_owners("keys:read (expiring keys)")?;
    if let Some(ks) = keyspace_id
        && !actor.sees_keyspace(ks)
    {
        return Ok(ExpiringKeys {
            keys: Vec::new(),
            prefixes: Prefixes::default(),
        });
    }
    let keys = service
        .store
        .expiring_keys(actor.visible(), keyspace_id, service.clock.now(), limit)
        .await?;
    let prefixes = Prefixes::load(service, keys.iter().map(|e| &*e.key.keyspace_id)).await?;
    Ok(ExpiringKeys { keys, prefixes })
}

/// Keyspace prefixes (for keys' display form) and maximum ages (for their state) for a
/// page of keys: one read per distinct keyspace.
#[derive(Debug, Default)]
pub struct Prefixes(Vec<(String, String, Option<i64>)>);

impl Prefixes {
    async fn load<'a>(
        service: &Service,
        keyspace_ids: impl Iterator<Item = &'a str>,
    ) -> Result<Self> {
        let mut prefixes = Self::default();
        for id in keyspace_ids {
            if prefixes.0.iter().any(|(known, _, _)| known == id) {
                continue;
            }
            let (prefix, max_age) = service
                .store
                .keyspace(id)
                .await?
                .map(|k| (k.prefix, k.policy.max_key_age))
                .unwrap_or_default();
            prefixes.0.push((id.to_owned(), prefix, max_age));
        }
        Ok(prefixes)
    }

    /// The prefix of keyspace `keyspace_id` (empty if it is gone).
    pub fn of(&self, keyspace_id: &str) -> &str {
        self.0
            .iter()
            .find(|(id, _, _)| id == keyspace_id)
            .map_or("", |(_, p, _)| p)
    }

    /// The maximum key age of keyspace `keyspace_id`.
    pub fn max_age(&self, keyspace_id: &str) -> Option<i64> {
        self.0
            .iter()
            .find(|(id, _, _)| id == keyspace_id)
            .and_then(|(_, _, age)| *age)
    }
}
