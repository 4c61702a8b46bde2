//! Webhooks: endpoints (with a form to add one, whose signing secret is shown once),
//! and an endpoint's delivery log with re-send.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::webhooks::{deliveries, endpoints};
use keyhaven_service::{Scope, ServiceError};
use keyhaven_store::EVENT_TYPES;
use maud::html;
use secrecy::ExposeSecret as _;

use super::keys::all_keyspaces;
use super::{fail, page_at, query};
use crate::state::AppState;
use crate::web::html::{self, Section, csrf, done_notice, pager, when};
use crate::web::once::{Once, unstored};
use crate::web::session::{DashboardForm, Operator};

pub async fn list(State(state): State<AppState>, op: Operator, raw: RawQuery) -> Response {
    let q = query(raw);
    let result = async {
        op.actor.require(Scope::WebhooksRead)?;
        let hooks = endpoints::list(
            &state,
            &op.actor,
            page_at(q.get("cursor").filter(|c| !c.is_empty()))?,
        )
        .await?;
        let keyspaces = all_keyspaces(&state, &op.actor).await?;
        Ok::<_, ServiceError>((hooks, keyspaces))
    };
    let (hooks, keyspaces) = match result.await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let next = hooks.next.map(|n| n.to_string());
    let body = html! {
        div.head { div { h1 { "Webhooks" } p.muted { "Endpoints that receive key events, signed, retried until they answer." } } }
        (done_notice(q.get("done")))
        div.card { div.table-wrap { table {
            thead { tr { th { "Endpoint" } th { "Events" } th.hide-sm { "Keyspace" } th { "State" } } }
            tbody {
                @for h in &hooks.items {
                    tr {
                        td { a href={"/dashboard/webhooks/" (h.id)} { (h.url) } @if let Some(d) = &h.description { br; span.muted.small { (d) } } }
                        td.small { @for t in &h.event_types { code { (t) } " " } }
                        td.hide-sm { (h.keyspace_id.as_deref().unwrap_or("all")) }
                        td { @if h.enabled { span.badge.active { "enabled" } } @else { span.badge.disabled { "disabled" } } }
                    }
                }
                @if hooks.items.is_empty() { tr { td.empty colspan="4" { "No webhook yet." } } }
            }
        } } }
        (pager("/dashboard/webhooks", &[], next.as_deref()))
        @if op.may_write() {
            section.card aria-labelledby="new-hook" {
                h2 #new-hook { "Add an endpoint" }
                form.stack method="post" action="/dashboard/webhooks" {
                    (csrf(&op.csrf()))
                    label { "URL" input type="url" name="url" required maxlength="2048" placeholder="https://example.com/keyhaven-events"; }
                    label { "Description" input type="text" name="description" maxlength="200"; }
                    fieldset {
                        legend { "Events" }
                        label.check { input type="checkbox" name="event_types" value="*" checked; "All events" }
                        @for t in EVENT_TYPES { label.check { input type="checkbox" name="event_types" value=(t); code { (t) } } }
                    }
                    label { "Keyspace"
                        select name="keyspace_id" {
                            option value="" { "All keyspaces" }
                            @for ks in &keyspaces { option value=(ks.id) { (ks.name) } }
                        }
                    }
                    button type="submit" { "Add endpoint" }
                }
            }
        }
    };
    op.page(Section::Webhooks, "Webhooks", body)
}

pub async fn create(State(state): State<AppState>, form: DashboardForm) -> Response {
    let (op, f) = (&form.op, &form.fields);
    let result = async {
        op.actor.require(Scope::WebhooksWrite)?;
        let input = endpoints::CreateWebhook {
            url: f.get("url").unwrap_or("").to_owned(),
            event_types: Some(f.all("event_types")).filter(|t| !t.is_empty()),
            keyspace_id: f.opt("keyspace_id"),
            description: f.opt("description"),
            enabled: None,
        };
        let idem = Idempotent::none(&state, &op.actor);
        let mut once = Once::default();
        let done = endpoints::create(&state, &op.actor, input, &idem, |hook, secret| {
            once.keep(secret.expose_secret(), &hook.id);
            Ok(unstored())
        })
        .await?;
        once.take(done)
    };
    match result.await {
        Ok((secret, id)) => {
            let body = html::secret_page(
                html! { a href="/dashboard/webhooks" { "Webhooks" } " / new" },
                "Endpoint added",
                Some(
                    "Deliveries are signed with this secret. Configure your receiver to check the signature with it.",
                ),
                "signing secret",
                &secret,
                (
                    &format!("/dashboard/webhooks/{id}"),
                    "I have copied it: show the endpoint",
                ),
            );
            op.page(Section::Webhooks, "Endpoint added", body)
        }
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
    let result = async {
        op.actor.require(Scope::WebhooksRead)?;
        let hook = endpoints::find(&state, &op.actor, &id).await?;
        let status = deliveries::status(q.opt("status").as_deref())?;
        let page = deliveries::list(
            &state,
            &op.actor,
            &id,
            status,
            page_at(q.get("cursor").filter(|c| !c.is_empty()))?,
        )
        .await?;
        Ok::<_, ServiceError>((hook, page))
    };
    let (hook, page) = match result.await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let status = q.opt("status");
    let next = page.next.map(|n| n.to_string());
    let body = html! {
        div.head { div {
            div.crumbs { a href="/dashboard/webhooks" { "Webhooks" } " / " span.mono { (hook.id) } }
            h1 { (hook.url) }
            p.muted { @for t in &hook.event_types { code { (t) } " " } }
        } }
        (done_notice(q.get("done")))
        form.inline.card method="get" action={"/dashboard/webhooks/" (hook.id)} {
            label { "Status"
                select name="status" {
                    option value="" { "Any" }
                    @for s in ["pending", "delivered", "failed"] { option value=(s) selected[status.as_deref() == Some(s)] { (s) } }
                }
            }
            button type="submit" { "Filter" }
        }
        section.card aria-labelledby="log" {
            h2 #log { "Delivery log" }
            div.table-wrap { table {
                thead { tr { th { "Created" } th { "Event" } th { "Status" } th.num { "Attempts" } th.hide-sm { "Last answer" } th {} } }
                tbody {
                    @for d in &page.items {
                        tr {
                            td { (when(d.created_at)) }
                            td { code { (d.event_type) } }
                            td { span class={"badge " (d.status.as_str())} { (d.status.as_str()) } }
                            td.num { (d.attempts) }
                            td.hide-sm.small {
                                @if let Some(s) = d.last_status { "HTTP " (s) " " }
                                @if let Some(e) = &d.last_error { span.muted { (e) } }
                            }
                            td {
                                @if op.may_write() {
                                    form method="post" action={"/dashboard/webhooks/" (hook.id) "/deliveries/" (d.id) "/resend"} {
                                        (csrf(&op.csrf()))
                                        button.secondary type="submit" { "Re-send" }
                                    }
                                }
                            }
                        }
                    }
                    @if page.items.is_empty() { tr { td.empty colspan="6" { "No delivery yet." } } }
                }
            } }
        }
        (pager(&format!("/dashboard/webhooks/{}", hook.id), &[("status", status.as_deref())], next.as_deref()))
    };
    op.page(Section::Webhooks, "Webhook", body)
}

pub async fn resend(
    State(state): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
    form: DashboardForm,
) -> Response {
    let result = async {
        form.op.actor.require(Scope::WebhooksWrite)?;
        deliveries::resend(&state, &form.op.actor, &id, &delivery_id).await
    };
    match result.await {
        Ok(_) => Redirect::to(&format!("/dashboard/webhooks/{id}?done=resent")).into_response(),
        Err(e) => fail(e),
    }
}
