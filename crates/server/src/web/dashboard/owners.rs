//! Owners: find one by external id, create one, and see one with its keys and usage.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::keys::{self, KeySort, KeyState, ListKeys};
use keyhaven_service::owners::{self, CreateOwner};
use keyhaven_service::{Scope, ServiceError};
use keyhaven_store::{PageRequest, UsageTarget};
use maud::html;

use super::{fail, page_at, query};
use crate::state::AppState;
use crate::web::html::{Section, csrf, done_notice, pager, state_badge, when, when_opt};
use crate::web::once::unstored;
use crate::web::session::{DashboardForm, Fields, Operator};

pub async fn list(State(state): State<AppState>, op: Operator, raw: RawQuery) -> Response {
    match render_list(&state, &op, &query(raw)).await {
        Ok(r) => r,
        Err(e) => fail(e),
    }
}

async fn render_list(
    state: &AppState,
    op: &Operator,
    q: &Fields,
) -> Result<Response, ServiceError> {
    op.actor.require(Scope::OwnersRead)?;
    let search = q.opt("external_id");
    let (owners, next) = match &search {
        Some(ext) => (
            owners::by_external_id(state, &op.actor, ext)
                .await?
                .into_iter()
                .collect::<Vec<_>>(),
            None,
        ),
        None => {
            let page = owners::list(
                state,
                &op.actor,
                page_at(q.get("cursor").filter(|c| !c.is_empty()))?,
            )
            .await?;
            (page.items, page.next.map(|n| n.to_string()))
        }
    };
    let body = html! {
        div.head { div { h1 { "Owners" } p.muted { "Your customers: the people or companies keys belong to, by your own id for them." } } }
        (done_notice(q.get("done")))
        form.inline.card method="get" action="/dashboard/owners" role="search" {
            label { "External id" input type="search" name="external_id" value=[search.as_deref()] placeholder="cus_123 (exact)"; }
            button type="submit" { "Find" }
            @if search.is_some() { a.button.secondary href="/dashboard/owners" { "Show all" } }
        }
        div.card { div.table-wrap { table {
            thead { tr { th { "External id" } th { "Name" } th.hide-sm { "Owner id" } th.hide-sm { "Created" } } }
            tbody {
                @for o in &owners {
                    tr {
                        td { a href={"/dashboard/owners/" (o.id)} { (o.external_id) } }
                        td { (o.name.as_deref().unwrap_or("")) }
                        td.hide-sm.mono.small { (o.id) }
                        td.hide-sm { (when(o.created_at)) }
                    }
                }
                @if owners.is_empty() { tr { td.empty colspan="4" { "No owner matches." } } }
            }
        } } }
        (pager("/dashboard/owners", &[], next.as_deref()))
        @if op.may_write() {
            section.card aria-labelledby="new-owner" {
                h2 #new-owner { "Add an owner" }
                form.inline method="post" action="/dashboard/owners" {
                    (csrf(&op.csrf()))
                    label { "External id" input type="text" name="external_id" required maxlength="255" placeholder="your id for the customer"; }
                    label { "Name" input type="text" name="name" maxlength="200"; }
                    label { "Plan" input type="text" name="plan" maxlength="100" placeholder="optional"; }
                    button type="submit" { "Add owner" }
                }
            }
        }
    };
    Ok(op.page(Section::Owners, "Owners", body))
}

pub async fn create(State(state): State<AppState>, form: DashboardForm) -> Response {
    let actor = &form.op.actor;
    let f = &form.fields;
    let mut created = None;
    let result = async {
        actor.require(Scope::OwnersWrite)?;
        let input = CreateOwner {
            external_id: f.get("external_id").unwrap_or("").to_owned(),
            name: f.opt("name"),
            meta: Default::default(),
            ratelimits: Vec::new(),
            quota: None,
            ip_allowlist: Vec::new(),
            roles: Vec::new(),
            permissions: Vec::new(),
            plan: f.opt("plan"),
        };
        let idem = Idempotent::none(&state, actor);
        owners::create(&state, actor, input, &idem, |o| {
            created = Some(o.id.clone());
            Ok(unstored())
        })
        .await
    };
    match result.await {
        Ok(_) => match created {
            Some(id) => Redirect::to(&format!("/dashboard/owners/{id}")).into_response(),
            None => Redirect::to("/dashboard/owners").into_response(),
        },
        Err(e) => fail(e),
    }
}

pub async fn page(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    raw: RawQuery,
) -> Response {
    let q = query(raw);
    match render(&state, &op, &id, q.get("range")).await {
        Ok(r) => r,
        Err(e) => fail(e),
    }
}

async fn render(
    state: &AppState,
    op: &Operator,
    id: &str,
    range: Option<&str>,
) -> Result<Response, ServiceError> {
    op.actor.require(Scope::OwnersRead)?;
    let owner = owners::find(state, &op.actor, id).await?;
    let listed = keys::list(
        state,
        &op.actor,
        ListKeys {
            owner_id: Some(id),
            sort: KeySort::Created,
            ..Default::default()
        },
        PageRequest {
            limit: 50,
            after: None,
        },
        None,
    )
    .await?;
    let usage = super::usage_card(state, &op.actor, UsageTarget::Owner(id), range).await?;
    let now = state.clock.now();
    let body = html! {
        div.head { div {
            div.crumbs { a href="/dashboard/owners" { "Owners" } " / " span.mono { (owner.id) } }
            h1 { (owner.name.as_deref().unwrap_or(&owner.external_id)) }
            p.muted { "External id " code { (owner.external_id) } }
        } }
        (usage)
        section.card aria-labelledby="keys" {
            h2 #keys { "Keys" }
            div.table-wrap { table {
                thead { tr { th { "Key" } th { "State" } th { "Last used" } } }
                tbody {
                    @for k in &listed.page.items {
                        tr {
                            td { a href={"/dashboard/keys/" (k.key_id)} { (k.name.as_deref().unwrap_or("Unnamed key")) } br; span.mono.small.muted { (k.key_id) } }
                            td { (state_badge(KeyState::of(k, listed.prefixes.max_age(&k.keyspace_id), now))) }
                            td { (when_opt(k.last_used_at, "never")) }
                        }
                    }
                    @if listed.page.items.is_empty() { tr { td.empty colspan="3" { "No keys yet." } } }
                }
            } }
            @if listed.page.next.is_some() { p { a href={"/dashboard/keys?owner_id=" (owner.id)} { "All their keys →" } } }
        }
    };
    Ok(op.page(Section::Owners, "Owner", body))
}
