//! The portal's pages: the customer's keys, creating one (plaintext shown once), a key
//! with its usage, and renaming, rotating (with the keyspace's default grace) and
//! revoking it.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyhaven_service::ServiceError;
use keyhaven_service::actor::PortalPermission;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::keys::{
    self, CreateKey, KeySort, KeyState, ListKeys, RevokeKey, RotateKey, UpdateKey,
};
use keyhaven_service::usage_report::{self, SeriesParams};
use keyhaven_store::{Keyspace, PageRequest, UsageTarget};
use maud::{Markup, html};

use super::{branding, fail, require};
use crate::state::AppState;
use crate::web::chart;
use crate::web::html::{self, csrf, done_notice, state_badge, when, when_opt};
use crate::web::once::{Once, unstored};
use crate::web::session::{Customer, Fields, PortalForm};

async fn show(state: &AppState, customer: &Customer, title: &str, body: Markup) -> Response {
    let b = branding(state, customer).await;
    html::portal(
        &b,
        customer.grant.return_url.as_deref(),
        &customer.csrf(),
        title,
        body,
    )
}

async fn keyspaces(state: &AppState, customer: &Customer) -> Result<Vec<Keyspace>, ServiceError> {
    let page = keyhaven_service::keyspaces::list(
        state,
        &customer.actor,
        PageRequest {
            limit: 100,
            after: None,
        },
    )
    .await?;
    Ok(page.items)
}

pub async fn home(State(state): State<AppState>, customer: Customer, raw: RawQuery) -> Response {
    let q = raw
        .0
        .and_then(|q| Fields::parse(q.as_bytes()))
        .unwrap_or_default();
    let result = async {
        let spaces = keyspaces(&state, &customer).await?;
        let listed = if customer.grant.allows(PortalPermission::KeysRead) {
            Some(
                keys::list(
                    &state,
                    &customer.actor,
                    ListKeys {
                        sort: KeySort::Created,
                        ..Default::default()
                    },
                    PageRequest {
                        limit: 50,
                        after: q.get("cursor").and_then(|c| c.parse().ok()),
                    },
                    None,
                )
                .await?,
            )
        } else {
            None
        };
        Ok::<_, ServiceError>((spaces, listed))
    };
    let (spaces, listed) = match result.await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let now = state.clock.now();
    let csrf_token = customer.csrf();
    let body = html! {
        div.head { div { h1 { "Your API keys" } p.muted { "Create keys for your applications, rotate them, and revoke any you no longer use." } } }
        (done_notice(q.get("done")))
        @if let Some(listed) = &listed {
            div.card { div.table-wrap { table {
                thead { tr { th { "Key" } th { "State" } th { "Last used" } th.hide-sm { "Created" } } }
                tbody {
                    @for k in &listed.page.items {
                        tr {
                            td {
                                a href={"/portal/keys/" (k.key_id)} { (k.name.as_deref().unwrap_or("Unnamed key")) }
                                br; span.mono.small.muted { (keyhaven_core::format::display_form(listed.prefixes.of(&k.keyspace_id), &k.key_id, &k.last4)) }
                            }
                            td { (state_badge(KeyState::of(k, listed.prefixes.max_age(&k.keyspace_id), now))) }
                            td { (when_opt(k.last_used_at, "never")) }
                            td.hide-sm { (when(k.created_at)) }
                        }
                    }
                    @if listed.page.items.is_empty() { tr { td.empty colspan="4" { "You have no keys yet." } } }
                }
            } } }
        }
        @if let Some(next) = listed.as_ref().and_then(|l| l.page.next) {
            (html::pager("/portal/", &[], Some(&next.to_string())))
        }
        @if customer.grant.allows(PortalPermission::KeysCreate) {
            section.card aria-labelledby="new-key" {
                h2 #new-key { "Create a key" }
                form.stack method="post" action="/portal/keys" {
                    (csrf(&csrf_token))
                    label { "Name" span.hint { "So you can tell your keys apart, e.g. “Production server”." } input type="text" name="name" maxlength="200" required; }
                    @if spaces.len() > 1 {
                        label { "Kind of key"
                            select name="keyspace_id" { @for ks in &spaces { option value=(ks.id) { (ks.name) } } }
                        }
                    } @else if let Some(ks) = spaces.first() {
                        input type="hidden" name="keyspace_id" value=(ks.id);
                    }
                    button type="submit" { "Create key" }
                }
            }
        }
    };
    show(&state, &customer, "Your API keys", body).await
}

pub async fn create(State(state): State<AppState>, form: PortalForm) -> Response {
    let (customer, f) = (&form.customer, &form.fields);
    let result = async {
        require(customer, PortalPermission::KeysCreate)?;
        let input = CreateKey {
            keyspace_id: f.get("keyspace_id").unwrap_or("").to_owned(),
            owner_id: None,
            name: f.opt("name"),
            scopes: Vec::new(),
            meta: Default::default(),
            expires_at: None,
            enabled: None,
            recoverable: None,
            ratelimits: Vec::new(),
            quota: None,
            ip_allowlist: Vec::new(),
            roles: Vec::new(),
            permissions: Vec::new(),
            // The owner's plan applies to its keys through the owner.
            plan: None,
        };
        let idem = Idempotent::none(&state, &customer.actor);
        let mut once = Once::default();
        let done = keys::create(&state, &customer.actor, input, &idem, once.key()).await?;
        once.take(done)
    };
    match result.await {
        Ok((plaintext, key_id)) => {
            let body = html::secret_page(
                html! { a href="/portal/" { "Your API keys" } " / new" },
                "Your new key",
                None,
                "key",
                &plaintext,
                (&format!("/portal/keys/{key_id}"), "I have copied it"),
            );
            show(&state, customer, "Your new key", body).await
        }
        Err(e) => fail(e),
    }
}

pub async fn key(
    State(state): State<AppState>,
    customer: Customer,
    Path(id): Path<String>,
    raw: RawQuery,
) -> Response {
    let q = raw
        .0
        .and_then(|q| Fields::parse(q.as_bytes()))
        .unwrap_or_default();
    let result = async {
        require(&customer, PortalPermission::KeysRead)?;
        let found = keys::find(&state, &customer.actor, &id).await?;
        let series = if customer.grant.allows(PortalPermission::UsageRead) {
            Some(
                usage_report::series(
                    &state,
                    &customer.actor,
                    UsageTarget::Key(&id),
                    &SeriesParams::default(),
                )
                .await?,
            )
        } else {
            None
        };
        Ok::<_, ServiceError>((found, series))
    };
    let (found, series) = match result.await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let k = &found.key;
    let now = state.clock.now();
    let key_state = KeyState::of(k, found.max_key_age, now);
    let csrf_token = customer.csrf();
    let title = k.name.clone().unwrap_or_else(|| "Unnamed key".to_owned());
    let body = html! {
        div.head { div {
            div.crumbs { a href="/portal/" { "Your API keys" } " / " span.mono { (k.key_id) } }
            h1 { (title) " " (state_badge(key_state)) }
            p.mono.muted { (keyhaven_core::format::display_form(&found.keyspace_prefix, &k.key_id, &k.last4)) }
        } }
        (done_notice(q.get("done")))
        section.card {
            dl.facts {
                dt { "Created" } dd { (when(k.created_at)) }
                dt { "Last used" } dd { (when_opt(k.last_used_at, "never")) }
                dt { "Expires" } dd { (when_opt(k.expires_at, "never")) }
                @if let Some(r) = &k.rotation { dt { "Replaced; works until" } dd { (when(r.grace_until)) " (new key: " a.mono href={"/portal/keys/" (r.successor)} { (r.successor) } ")" } }
                @if let Some(t) = k.revoked_at { dt { "Revoked" } dd { (when(t)) } }
            }
        }
        @if let Some(series) = &series {
            section.card aria-labelledby="usage" { h2 #usage { "Requests, last 24 hours" } (chart::usage("per hour", series)) }
        }
        @if key_state.is_live() && customer.actor.require(keyhaven_service::Scope::KeysWrite).is_ok() {
            section.card aria-labelledby="manage" {
                h2 #manage { "Manage" }
                form.inline method="post" action={"/portal/keys/" (k.key_id) "/name"} {
                    (csrf(&csrf_token))
                    label { "Name" input type="text" name="name" maxlength="200" value=[k.name.as_deref()]; }
                    button.secondary type="submit" { "Rename" }
                }
                @if customer.grant.allows(PortalPermission::KeysRotate) && rotatable(key_state) {
                    details.action {
                        summary { "Rotate…" }
                        p.muted { "You get a new key. This one keeps working for a short grace period so you can switch over." }
                        form method="post" action={"/portal/keys/" (k.key_id) "/rotate"} {
                            (csrf(&csrf_token))
                            button type="submit" { "Rotate key" }
                        }
                    }
                }
                @if customer.grant.allows(PortalPermission::KeysRevoke) {
                    details.action {
                        summary { "Revoke…" }
                        p.muted { "A revoked key stops working at once, for good." }
                        form method="post" action={"/portal/keys/" (k.key_id) "/revoke"} {
                            (csrf(&csrf_token))
                            button.danger type="submit" { "Revoke key" }
                        }
                    }
                }
            }
        }
    };
    show(&state, &customer, &title, body).await
}

/// Whether a customer may rotate a key in this state: not once it has expired or is
/// already being replaced.
fn rotatable(state: KeyState) -> bool {
    matches!(state, KeyState::Active | KeyState::Disabled)
}

fn back(id: &str, done: &str) -> Response {
    Redirect::to(&format!("/portal/keys/{id}?done={done}")).into_response()
}

pub async fn rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: PortalForm,
) -> Response {
    let result = async {
        form.customer
            .actor
            .require(keyhaven_service::Scope::KeysWrite)?;
        let input = UpdateKey {
            name: Some(form.fields.opt("name")),
            ..UpdateKey::default()
        };
        keys::update(&state, &form.customer.actor, &id, input).await
    };
    match result.await {
        Ok(_) => back(&id, "updated"),
        Err(e) => fail(e),
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: PortalForm,
) -> Response {
    let actor = &form.customer.actor;
    let result = async {
        require(&form.customer, PortalPermission::KeysRevoke)?;
        let idem = Idempotent::none(&state, actor);
        keys::revoke(
            &state,
            actor,
            &id,
            RevokeKey {
                reason: Some("revoked in the customer portal".into()),
            },
            &idem,
            |_| Ok(unstored()),
        )
        .await
    };
    match result.await {
        Ok(_) => back(&id, "revoked"),
        Err(e) => fail(e),
    }
}

pub async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: PortalForm,
) -> Response {
    let customer = &form.customer;
    let result = async {
        require(customer, PortalPermission::KeysRotate)?;
        // An expired key stays expired: rotating it would hand out a fresh one.
        let found = keys::find(&state, &customer.actor, &id).await?;
        if !rotatable(KeyState::of(
            &found.key,
            found.max_key_age,
            state.clock.now(),
        )) {
            return Err(ServiceError::invalid(
                "This key cannot be rotated any more; create a new key instead.",
            ));
        }
        let idem = Idempotent::none(&state, &customer.actor);
        let mut once = Once::default();
        // No grace given: the keyspace's default applies.
        let input = RotateKey {
            grace_period_seconds: None,
        };
        let done = keys::rotate(&state, &customer.actor, &id, input, &idem, once.key()).await?;
        once.take(done)
    };
    match result.await {
        Ok((plaintext, new_id)) => {
            let body = html::secret_page(
                html! { a href="/portal/" { "Your API keys" } " / rotate" },
                "Your new key",
                Some("Your old key keeps working for its grace period. Replace it with this one:"),
                "key",
                &plaintext,
                (&format!("/portal/keys/{new_id}"), "I have copied it"),
            );
            show(&state, customer, "Your new key", body).await
        }
        Err(e) => fail(e),
    }
}
