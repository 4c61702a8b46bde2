//! The audit log and the event log. Building audit events: every change an operation
//! makes is written with one, in the same transaction (the store's rule), with the
//! actor and what changed. Reading both logs: an actor limited to some keyspaces sees
//! only their entries (owner changes have no keyspace and are shown to unrestricted
//! actors only).

use keyhaven_store::{
    AuditEvent, AuditFilter, EVENT_TYPES, Event, EventFilter, Page, PageRequest, Timestamp,
};
use serde_json::{Map, Value};

use crate::actor::Actor;
use crate::error::{Result, ServiceError};
use crate::ids;
use crate::service::Service;
use crate::validate::query_time;

/// The audit event for `action` on `target` (`(type, id)`) by `actor`.
pub fn event(
    actor: &Actor,
    action: &str,
    target: (&str, &str),
    keyspace_id: Option<&str>,
    changes: Map<String, Value>,
    now: Timestamp,
) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: ids::new_id("evt")?,
        occurred_at: now,
        actor: actor.id().to_owned(),
        action: action.to_owned(),
        target_type: target.0.to_owned(),
        target_id: target.1.to_owned(),
        keyspace_id: keyspace_id.map(str::to_owned),
        changes,
        client_ip: actor.client_ip(),
    })
}

/// `{field: {"from": old, "to": new}}` for each field whose value differs.
pub fn diff(fields: &[(&str, Value, Value)]) -> Map<String, Value> {
    fields
        .iter()
        .filter(|(_, from, to)| from != to)
        .map(|(name, from, to)| {
            (
                (*name).to_owned(),
                serde_json::json!({ "from": from, "to": to }),
            )
        })
        .collect()
}

/// A list as audit events show it: `null` when empty (and so left out of a created
/// object's fields).
pub fn list_value<T: serde::Serialize>(items: &[T]) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        serde_json::json!(items)
    }
}

/// `{field: value}` for a newly created object (null fields left out).
pub fn created(fields: &[(&str, Value)]) -> Map<String, Value> {
    fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Which audit events to read; every filter is optional. Times are RFC 3339 as given.
#[derive(Debug, Default)]
pub struct AuditQuery {
    pub keyspace_id: Option<String>,
    pub target_id: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Events at or after.
    pub since: Option<String>,
    /// Events before.
    pub until: Option<String>,
}

/// A page of the audit events the actor may see, newest first. Asking for a keyspace
/// the actor may not see answers an empty page.
#[tracing::instrument(skip_all)]
pub async fn list(
    service: &Service,
    actor: &Actor,
    query: &AuditQuery,
    page: PageRequest,
) -> Result<Page<AuditEvent>> {
    actor.require_all_owners("audit:read")?;
    if let Some(ks) = &query.keyspace_id
        && !actor.sees_keyspace(ks)
    {
        return Ok(empty());
    }
    let filter = AuditFilter {
        visible: actor.visible(),
        keyspace_id: query.keyspace_id.as_deref(),
        target_id: query.target_id.as_deref(),
        action: query.action.as_deref(),
        actor: query.actor.as_deref(),
        since: query_time("since", query.since.as_deref())?,
        until: query_time("until", query.until.as_deref())?,
    };
    service
        .store
        .list_audit_events(&filter, page)
        .await
        .map_err(ServiceError::from)
}

/// Which events of the event log to read; every filter is optional. Times are RFC 3339
/// as given.
#[derive(Debug, Default)]
pub struct EventQuery {
    /// One of [`EVENT_TYPES`].
    pub kind: Option<String>,
    pub key_id: Option<String>,
    pub keyspace_id: Option<String>,
    /// Events at or after.
    pub since: Option<String>,
    /// Events before.
    pub until: Option<String>,
}

/// A page of the event log as the actor may see it, newest first. Asking for a keyspace
/// the actor may not see answers an empty page.
#[tracing::instrument(skip_all)]
pub async fn events(
    service: &Service,
    actor: &Actor,
    query: &EventQuery,
    page: PageRequest,
) -> Result<Page<Event>> {
    actor.require_all_owners("keys:read (events)")?;
    if let Some(kind) = query.kind.as_deref()
        && !EVENT_TYPES.contains(&kind)
    {
        return Err(ServiceError::bad_request(
            "invalid_query",
            format!("type must be one of {}", EVENT_TYPES.join(", ")),
        ));
    }
    if let Some(ks) = &query.keyspace_id
        && !actor.sees_keyspace(ks)
    {
        return Ok(empty());
    }
    let filter = EventFilter {
        visible: actor.visible(),
        kind: query.kind.as_deref(),
        key_id: query.key_id.as_deref(),
        keyspace_id: query.keyspace_id.as_deref(),
        since: query_time("since", query.since.as_deref())?,
        until: query_time("until", query.until.as_deref())?,
    };
    service
        .store
        .list_events(&filter, page)
        .await
        .map_err(ServiceError::from)
}

fn empty<T>() -> Page<T> {
    Page {
        items: Vec::new(),
        next: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_lists_only_changed_fields() {
        let d = diff(&[
            ("name", "a".into(), "b".into()),
            ("enabled", true.into(), true.into()),
        ]);
        assert_eq!(
            serde_json::Value::Object(d),
            serde_json::json!({"name": {"from": "a", "to": "b"}})
        );
    }
}
