//! The overview: what needs attention (keys about to expire), recent changes, and the
//! way to everything else.

use axum::extract::State;
use axum::response::Response;
use keyhaven_service::audit::{self, AuditQuery};
use keyhaven_service::keys;
use keyhaven_store::PageRequest;
use maud::html;

use super::fail;
use crate::state::AppState;
use crate::web::html::{Section, when};
use crate::web::session::Operator;

pub async fn page(State(state): State<AppState>, op: Operator) -> Response {
    let expiring = match keys::expiring(&state, &op.actor, None, 10).await {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let recent = match audit::list(
        &state,
        &op.actor,
        &AuditQuery::default(),
        PageRequest {
            limit: 10,
            after: None,
        },
    )
    .await
    {
        Ok(p) => p.items,
        Err(e) => return fail(e),
    };
    let keyspaces = match keyhaven_service::keyspaces::list(
        &state,
        &op.actor,
        PageRequest {
            limit: 100,
            after: None,
        },
    )
    .await
    {
        Ok(p) => p.items,
        Err(e) => return fail(e),
    };
    let body = html! {
        div.head {
            div { h1 { "Overview" } p.muted { "Everything Keyhaven holds for this deployment." } }
            @if op.may_write() {
                div.actions {
                    a.button href="/dashboard/keys/new" { "Create key" }
                    a.button.secondary href="/dashboard/keyspaces" { "New keyspace" }
                }
            }
        }
        div.stats {
            div.stat { span.muted { "Keyspaces" } b { (keyspaces.len()) } }
            div.stat { span.muted { "Expiring soon" } b { (expiring.keys.len()) } }
        }
        div.grid {
            section.card aria-labelledby="exp" {
                h2 #exp { "Keys expiring soon" }
                @if expiring.keys.is_empty() {
                    p.muted { "No key is within its keyspace's expiry warning." }
                } @else {
                    div.table-wrap { table {
                        thead { tr { th { "Key" } th { "Expires" } } }
                        tbody {
                            @for e in &expiring.keys {
                                tr {
                                    td { a href={"/dashboard/keys/" (e.key.key_id)} { (e.key.name.as_deref().unwrap_or(&e.key.key_id)) } }
                                    td { (when(e.expires)) }
                                }
                            }
                        }
                    } }
                }
            }
            section.card aria-labelledby="recent" {
                h2 #recent { "Recent changes" }
                @if recent.is_empty() {
                    p.muted { "Nothing has changed yet." }
                } @else {
                    div.table-wrap { table {
                        thead { tr { th { "When" } th { "Who" } th { "What" } } }
                        tbody {
                            @for e in &recent {
                                tr { td { (when(e.occurred_at)) } td.mono { (e.actor) } td { code { (e.action) } } }
                            }
                        }
                    } }
                    p { a href="/dashboard/audit" { "The whole audit log →" } }
                }
            }
        }
    };
    op.page(Section::Overview, "Overview", body)
}
