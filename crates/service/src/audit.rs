//! Building audit events: every change an operation makes is written with one, in the
//! same transaction (the store's rule), with the actor and what changed.

use keyhaven_store::{AuditEvent, Timestamp};
use serde_json::{Map, Value};

use crate::actor::Actor;
use crate::error::Result;
use crate::ids;

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

/// `{field: value}` for a newly created object (null fields left out).
pub fn created(fields: &[(&str, Value)]) -> Map<String, Value> {
    fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
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
