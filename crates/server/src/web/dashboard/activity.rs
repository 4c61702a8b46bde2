//! The audit log (who changed what, filtered by actor, action, target and keyspace) and
//! the event log (what happened to keys, by type, key and keyspace).

use axum::extract::{RawQuery, State};
use axum::response::Response;
use keyhaven_service::audit::{self, AuditQuery, EventQuery};
use keyhaven_service::{Scope, ServiceError};
use keyhaven_store::EVENT_TYPES;
use maud::html;

use super::{fail, page_at, query};
use crate::state::AppState;
use crate::web::html::{Section, pager, when};
use crate::web::session::{Fields, Operator};

fn tabs(current: &str) -> maud::Markup {
    html! {
        div.actions {
            @for (href, label) in [("/dashboard/audit", "Audit log"), ("/dashboard/events", "Events")] {
                @if href == current { a.button href=(href) aria-current="page" { (label) } }
                @else { a.button.secondary href=(href) { (label) } }
            }
        }
    }
}

pub async fn audit(State(state): State<AppState>, op: Operator, raw: RawQuery) -> Response {
    match render_audit(&state, &op, &query(raw)).await {
        Ok(r) => r,
        Err(e) => fail(e),
    }
}

async fn render_audit(
    state: &AppState,
    op: &Operator,
    q: &Fields,
) -> Result<Response, ServiceError> {
    op.actor.require(Scope::AuditRead)?;
    let filter = AuditQuery {
        keyspace_id: q.opt("keyspace_id"),
        target_id: q.opt("target_id"),
        action: q.opt("action"),
        actor: q.opt("actor"),
        since: None,
        until: None,
    };
    let page = audit::list(
        state,
        &op.actor,
        &filter,
        page_at(q.get("cursor").filter(|c| !c.is_empty()))?,
    )
    .await?;
    let next = page.next.map(|n| n.to_string());
    let body = html! {
        div.head { div { h1 { "Audit log" } p.muted { "Every change, who made it and from where. Nothing here ever holds a secret." } } (tabs("/dashboard/audit")) }
        form.inline.card method="get" action="/dashboard/audit" role="search" {
            label { "Actor" input type="text" name="actor" value=[filter.actor.as_deref()] placeholder="operator:ann@example.com, key id, cli"; }
            label { "Action" input type="text" name="action" value=[filter.action.as_deref()] placeholder="key.revoke"; }
            label { "Target id" input type="text" name="target_id" value=[filter.target_id.as_deref()]; }
            label { "Keyspace id" input type="text" name="keyspace_id" value=[filter.keyspace_id.as_deref()]; }
            button type="submit" { "Filter" }
        }
        div.card { div.table-wrap { table {
            thead { tr { th { "When" } th { "Actor" } th { "Action" } th { "Target" } th.hide-sm { "Changes" } th.hide-sm { "From" } } }
            tbody {
                @for e in &page.items {
                    tr {
                        td { (when(e.occurred_at)) }
                        td.mono { (e.actor) }
                        td { code { (e.action) } }
                        td.mono {
                            @if e.target_type == "key" { a href={"/dashboard/keys/" (e.target_id)} { (e.target_id) } } @else { (e.target_id) }
                        }
                        td.hide-sm.small { @if !e.changes.is_empty() { code { (serde_json::Value::Object(e.changes.clone())) } } }
                        td.hide-sm.mono.small { (e.client_ip.as_deref().unwrap_or("")) }
                    }
                }
                @if page.items.is_empty() { tr { td.empty colspan="6" { "No audit entry matches." } } }
            }
        } } }
        (pager("/dashboard/audit", &[("actor", filter.actor.as_deref()), ("action", filter.action.as_deref()), ("target_id", filter.target_id.as_deref()), ("keyspace_id", filter.keyspace_id.as_deref())], next.as_deref()))
    };
    Ok(op.page(Section::Activity, "Audit log", body))
}

pub async fn events(State(state): State<AppState>, op: Operator, raw: RawQuery) -> Response {
    match render_events(&state, &op, &query(raw)).await {
        Ok(r) => r,
        Err(e) => fail(e),
    }
}

async fn render_events(
    state: &AppState,
    op: &Operator,
    q: &Fields,
) -> Result<Response, ServiceError> {
    op.actor.require(Scope::KeysRead)?;
    let filter = EventQuery {
        kind: q.opt("type"),
        key_id: q.opt("key_id"),
        keyspace_id: q.opt("keyspace_id"),
        since: None,
        until: None,
    };
    let page = audit::events(
        state,
        &op.actor,
        &filter,
        page_at(q.get("cursor").filter(|c| !c.is_empty()))?,
    )
    .await?;
    let next = page.next.map(|n| n.to_string());
    let body = html! {
        div.head { div { h1 { "Events" } p.muted { "What happened to keys: created, rotated, revoked, expiring, anomalies. Webhooks deliver these." } } (tabs("/dashboard/events")) }
        form.inline.card method="get" action="/dashboard/events" role="search" {
            label { "Type"
                select name="type" {
                    option value="" { "Any" }
                    @for t in EVENT_TYPES { option value=(t) selected[filter.kind.as_deref() == Some(*t)] { (t) } }
                }
            }
            label { "Key id" input type="text" name="key_id" value=[filter.key_id.as_deref()]; }
            label { "Keyspace id" input type="text" name="keyspace_id" value=[filter.keyspace_id.as_deref()]; }
            button type="submit" { "Filter" }
        }
        div.card { div.table-wrap { table {
            thead { tr { th { "When" } th { "Type" } th { "Key" } th.hide-sm { "Details" } } }
            tbody {
                @for e in &page.items {
                    tr {
                        td { (when(e.created_at)) }
                        td { code { (e.kind) } }
                        td.mono { @if let Some(k) = &e.key_id { a href={"/dashboard/keys/" (k)} { (k) } } }
                        td.hide-sm.small { code { (serde_json::Value::Object(e.payload.clone())) } }
                    }
                }
                @if page.items.is_empty() { tr { td.empty colspan="4" { "No event matches." } } }
            }
        } } }
        (pager("/dashboard/events", &[("type", filter.kind.as_deref()), ("key_id", filter.key_id.as_deref()), ("keyspace_id", filter.keyspace_id.as_deref())], next.as_deref()))
    };
    Ok(op.page(Section::Activity, "Events", body))
}
