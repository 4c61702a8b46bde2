//! One key: its state, scopes, meta, limits, quota, expiry, rotation chain, usage, events
//! and audit entries; and the changes an admin can make to it (rotate with grace, revoke
//! with a reason, enable or disable, edit).

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyhaven_service::audit::{self, AuditQuery, EventQuery};
use keyhaven_service::credits::{self, ChangeCredits, CreditOpName, CreditsOf};
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::keys::{self, KeyState, RevokeKey, RotateKey, UpdateKey};
use keyhaven_service::limits::spec::{QuotaCtx, rate_limit_views};
use keyhaven_service::{Scope, ServiceError};
use keyhaven_store::{KeyForVerify, PageRequest, QuotaTarget, UsageTarget};
use maud::{Markup, html};

use super::keys::{quota_fields, quota_from, rate_limit_fields, ratelimits_from};
use super::{fail, local_time, query, word_list};
use crate::state::AppState;
use crate::web::html::{self, Section, csrf, done_notice, state_badge, when, when_opt};
use crate::web::once::{Once, unstored};
use crate::web::session::{DashboardForm, Operator};

/// The keys before and after this one in its rotations (at most 20 each way).
async fn rotation_chain(
    state: &AppState,
    op: &Operator,
    key: &KeyForVerify,
) -> Vec<(String, KeyState)> {
    let now = state.clock.now();
    let mut before = Vec::new();
    let mut cursor = key.key.rotated_from.clone();
    while let Some(id) = cursor.take() {
        if before.len() >= 20 {
            break;
        }
        if let Ok(k) = keys::find(state, &op.actor, &id).await {
            before.push((id, KeyState::of(&k.key, k.max_key_age, now)));
            cursor = k.key.rotated_from.clone();
        }
    }
    before.reverse();
    before.push((
        key.key.key_id.clone(),
        KeyState::of(&key.key, key.max_key_age, now),
    ));
    let mut cursor = key.key.rotation.as_ref().map(|r| r.successor.clone());
    while let Some(id) = cursor.take() {
        if before.len() >= 41 {
            break;
        }
        if let Ok(k) = keys::find(state, &op.actor, &id).await {
            before.push((id, KeyState::of(&k.key, k.max_key_age, now)));
            cursor = k.key.rotation.as_ref().map(|r| r.successor.clone());
        }
    }
    before
}

pub async fn page(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    raw: RawQuery,
) -> Response {
    let q = query(raw);
    match render(&state, &op, &id, q.get("done"), q.get("range")).await {
        Ok(r) => r,
        Err(e) => fail(e),
    }
}

async fn render(
    state: &AppState,
    op: &Operator,
    id: &str,
    done: Option<&str>,
    range: Option<&str>,
) -> Result<Response, ServiceError> {
    op.actor.require(Scope::KeysRead)?;
    let found = keys::find(state, &op.actor, id).await?;
    let key = &found.key;
    let now = state.clock.now();
    let key_state = KeyState::of(key, found.max_key_age, now);
    let chain = rotation_chain(state, op, &found).await;
    let usage = super::usage_card(state, &op.actor, UsageTarget::Key(id), range).await?;
    let events = audit::events(
        state,
        &op.actor,
        &EventQuery {
            key_id: Some(id.to_owned()),
            ..Default::default()
        },
        PageRequest {
            limit: 20,
            after: None,
        },
    )
    .await?;
    let changes = audit::list(
        state,
        &op.actor,
        &AuditQuery {
            target_id: Some(id.to_owned()),
            ..Default::default()
        },
        PageRequest {
            limit: 20,
            after: None,
        },
    )
    .await?;
    let quota = QuotaCtx::of(state).view(
        QuotaTarget::Key(key.key_id.clone()),
        key.limits.quota.as_ref(),
    );
    let limits = rate_limit_views(&key.limits.ratelimits);
    let title = key.name.clone().unwrap_or_else(|| "Unnamed key".to_owned());
    let start =
        keyhaven_core::format::display_form(&found.keyspace_prefix, &key.key_id, &key.last4);
    let body = html! {
        div.head {
            div {
                div.crumbs { a href="/dashboard/keys" { "Keys" } " / " span.mono { (key.key_id) } }
                h1 { (title) " " (state_badge(key_state)) }
                p.mono.muted { (start) }
            }
        }
        (done_notice(done))
        div.grid {
            section.card aria-labelledby="facts" {
                h2 #facts { "Details" }
                dl.facts {
                    dt { "Key id" } dd.mono { (key.key_id) }
                    dt { "Keyspace" } dd { a href={"/dashboard/keyspaces/" (key.keyspace_id)} { (found.keyspace_name) } }
                    dt { "Owner" } dd {
                        @if let Some(owner) = &key.owner_id {
                            a href={"/dashboard/owners/" (owner)} { (found.owner_external_id.as_deref().unwrap_or(owner)) }
                        } @else { span.muted { "none" } }
                    }
                    dt { "Scopes" } dd {
                        @if key.scopes.is_empty() { span.muted { "none" } }
                        @for s in &key.scopes { code { (s) } " " }
                    }
                    dt { "Roles" } dd {
                        @if key.grants.roles.is_empty() { span.muted { "none" } }
                        @for r in &key.grants.roles { code { (r) } " " }
                    }
                    dt { "Permissions" } dd {
                        @if found.permissions.is_empty() { span.muted { "none" } }
                        @for p in &found.permissions { code { (p) } " " }
                    }
                    dt { "IP allowlist" } dd {
                        @match &key.ip_allowlist {
                            None => span.muted { "any address" },
                            Some(list) => @for net in list.entries() { code { (net) } " " },
                        }
                    }
                    dt { "Meta" } dd {
                        @if key.meta.is_empty() { span.muted { "none" } } @else { code { (serde_json::Value::Object(key.meta.clone())) } }
                    }
                    dt { "Rate limits" } dd {
                        @if limits.is_empty() { span.muted { "keyspace defaults only" } }
                        @for l in &limits { (l.limit) " per " (l.duration_ms / 1000) " s (" code { (l.name) } ") " }
                    }
                    dt { "Quota" } dd {
                        @match &quota {
                            Some(q) => { (q.remaining) " uses left" @if let Some(r) = &q.refill { ", refills " (r.interval) " to " (r.amount) } }
                            None => span.muted { "none" },
                        }
                    }
                    dt { "Expires" } dd { (when_opt(key.expires_at, "never")) }
                    dt { "Created" } dd { (when(key.created_at)) }
                    dt { "Last used" } dd { (when_opt(key.last_used_at, "never")) }
                    @if let Some(t) = key.revoked_at {
                        dt { "Revoked" } dd { (when(t)) @if let Some(r) = &key.revoked_reason { " — " (r) } }
                    }
                    @if let Some(r) = &key.rotation {
                        dt { "Grace until" } dd { (when(r.grace_until)) }
                    }
                }
            }
            section.card aria-labelledby="chain" {
                h2 #chain { "Rotation chain" }
                @if chain.len() == 1 { p.muted { "This key has not been rotated." } }
                ol {
                    @for (kid, s) in &chain {
                        li {
                            @if kid == id { strong.mono { (kid) } " (this key) " } @else { a.mono href={"/dashboard/keys/" (kid)} { (kid) } " " }
                            (state_badge(*s))
                        }
                    }
                }
            }
        }
        @if op.may_write() && key_state.is_live() { (actions(op, &found, key_state)) }
        (usage)
        div.grid {
            section.card aria-labelledby="events" {
                h2 #events { "Events" }
                @if events.items.is_empty() { p.muted { "No events." } }
                ul {
                    @for e in &events.items { li { (when(e.created_at)) " " code { (e.kind) } } }
                }
                p { a href={"/dashboard/events?key_id=" (id)} { "All events of this key →" } }
            }
            section.card aria-labelledby="audit" {
                h2 #audit { "Audit entries" }
                @if changes.items.is_empty() { p.muted { "No changes recorded." } }
                ul {
                    @for e in &changes.items { li { (when(e.occurred_at)) " " code { (e.action) } " by " span.mono { (e.actor) } } }
                }
                p { a href={"/dashboard/audit?target_id=" (id)} { "The whole audit trail →" } }
            }
        }
    };
    Ok(op.page(Section::Keys, &title, body))
}

fn actions(op: &Operator, found: &KeyForVerify, key_state: KeyState) -> Markup {
    let key = &found.key;
    let id = &key.key_id;
    let csrf_token = op.csrf();
    let limits = rate_limit_views(&key.limits.ratelimits);
    let scopes = key.scopes.join(" ");
    let ip_allowlist = key
        .ip_allowlist
        .as_ref()
        .map(|l| l.entries().join(" "))
        .unwrap_or_default();
    let expires = key.expires_at.and_then(|t| {
        t.format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]"
        ))
        .ok()
    });
    html! {
        section.card aria-labelledby="actions" {
            h2 #actions { "Change this key" }
            div.actions {
                form method="post" action={"/dashboard/keys/" (id) "/enabled"} {
                    (csrf(&csrf_token))
                    @if key.enabled {
                        input type="hidden" name="enabled" value="false";
                        button.secondary type="submit" { "Disable" }
                    } @else {
                        input type="hidden" name="enabled" value="true";
                        button.secondary type="submit" { "Enable" }
                    }
                }
            }
            @if key.limits.quota.is_some() {
                details.action {
                    summary { "Change credits…" }
                    p.muted { "Set the uses left, or add or take some (a refund, a purchase). Taking more than is left is refused." }
                    form.inline method="post" action={"/dashboard/keys/" (id) "/credits"} {
                        (csrf(&csrf_token))
                        label { "Change"
                            select name="op" {
                                option value="increment" { "Add" }
                                option value="decrement" { "Take" }
                                option value="set" { "Set to" }
                            }
                        }
                        label { "Uses" input type="number" name="amount" min="0" required; }
                        button.secondary type="submit" { "Apply" }
                    }
                }
            }
            @if key_state != KeyState::Rotating {
                details.action {
                    summary { "Rotate…" }
                    p.muted { "A new key replaces this one. This key keeps working during the grace period, so clients can switch over." }
                    form.inline method="post" action={"/dashboard/keys/" (id) "/rotate"} {
                        (csrf(&csrf_token))
                        label { "Grace period"
                            select name="grace" {
                                option value="" { "Keyspace default" }
                                option value="0" { "None: stop now" }
                                option value="3600" { "1 hour" }
                                option value="86400" { "24 hours" }
                                option value="604800" { "7 days" }
                            }
                        }
                        button type="submit" { "Rotate key" }
                    }
                }
            }
            details.action {
                summary { "Revoke…" }
                p.muted { "A revoked key stops verifying at once, for good." }
                form.inline method="post" action={"/dashboard/keys/" (id) "/revoke"} {
                    (csrf(&csrf_token))
                    label { "Reason" input type="text" name="reason" maxlength="500" placeholder="e.g. leaked in a log"; }
                    button.danger type="submit" { "Revoke key" }
                }
            }
            details.action {
                summary { "Edit…" }
                form.stack method="post" action={"/dashboard/keys/" (id) "/update"} {
                    (csrf(&csrf_token))
                    (super::was("name", key.name.as_deref().unwrap_or("")))
                    (super::was("scopes", &scopes))
                    (super::was("expires_at", expires.as_deref().unwrap_or("")))
                    (super::was("ip_allowlist", &ip_allowlist))
                    label { "Name" input type="text" name="name" maxlength="200" value=[key.name.as_deref()]; }
                    label { "Scopes" span.hint { "Separated by spaces or commas." } input type="text" name="scopes" value=(scopes); }
                    label { "Expires" span.hint { "UTC; empty for never." }
                        input type="datetime-local" name="expires_at" value=[expires.as_deref()];
                    }
                    label { "IP allowlist" span.hint { "Addresses or CIDR networks separated by spaces or commas; empty for any address." } input type="text" name="ip_allowlist" value=(ip_allowlist); }
                    (rate_limit_fields(&limits, "Empty removes the key's own limit (its keyspace's defaults still apply)."))
                    (quota_fields())
                    label.check { input type="checkbox" name="set_quota" value="1"; "Replace the quota with the one above (its counter restarts)" }
                    button type="submit" { "Save changes" }
                }
            }
        }
    }
}

fn back_to(id: &str, done: &str) -> Response {
    Redirect::to(&format!("/dashboard/keys/{id}?done={done}")).into_response()
}

pub async fn set_enabled(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: DashboardForm,
) -> Response {
    let enabled = form.fields.get("enabled") == Some("true");
    let input = UpdateKey {
        enabled: Some(enabled),
        ..UpdateKey::default()
    };
    let result = async {
        form.op.actor.require(Scope::KeysWrite)?;
        keys::update(&state, &form.op.actor, &id, input).await
    };
    match result.await {
        Ok(_) => back_to(&id, if enabled { "enabled" } else { "disabled" }),
        Err(e) => fail(e),
    }
}

pub async fn change_credits(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: DashboardForm,
) -> Response {
    let f = &form.fields;
    let actor = &form.op.actor;
    let result = async {
        actor.require(Scope::KeysWrite)?;
        let op = match f.get("op") {
            Some("set") => CreditOpName::Set,
            Some("increment") => CreditOpName::Increment,
            Some("decrement") => CreditOpName::Decrement,
            _ => return Err(ServiceError::invalid("choose add, take or set")),
        };
        let amount = super::number(f, "amount", "Uses")?
            .ok_or_else(|| ServiceError::invalid("Uses must be a whole number"))?;
        let input = ChangeCredits { op, amount };
        let idem = Idempotent::none(&state, actor);
        credits::change(&state, actor, CreditsOf::Key(&id), input, &idem, |_| {
            Ok(unstored())
        })
        .await
    };
    match result.await {
        Ok(_) => back_to(&id, "updated"),
        Err(e) => fail(e),
    }
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: DashboardForm,
) -> Response {
    let f = &form.fields;
    let result = async {
        form.op.actor.require(Scope::KeysWrite)?;
        // Only what the form changed: a field left as shown keeps its stored value
        // (shown rounded or not at all, it would otherwise be rewritten).
        let changed = |name: &str| super::changed(f, &[name]);
        let input = UpdateKey {
            name: changed("name").then(|| f.opt("name")),
            scopes: changed("scopes").then(|| word_list(f.get("scopes"))),
            expires_at: changed("expires_at").then(|| local_time(f, "expires_at")),
            ip_allowlist: changed("ip_allowlist").then(|| word_list(f.get("ip_allowlist"))),
            ratelimits: ratelimits_from(f)?,
            quota: if f.checked("set_quota") {
                Some(quota_from(f)?)
            } else {
                None
            },
            ..UpdateKey::default()
        };
        keys::update(&state, &form.op.actor, &id, input).await
    };
    match result.await {
        Ok(_) => back_to(&id, "updated"),
        Err(e) => fail(e),
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: DashboardForm,
) -> Response {
    let actor = &form.op.actor;
    let result = async {
        actor.require(Scope::KeysWrite)?;
        let idem = Idempotent::none(&state, actor);
        keys::revoke(
            &state,
            actor,
            &id,
            RevokeKey {
                reason: form.fields.opt("reason"),
            },
            &idem,
            |_| Ok(unstored()),
        )
        .await
    };
    match result.await {
        Ok(_) => back_to(&id, "revoked"),
        Err(e) => fail(e),
    }
}

pub async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: DashboardForm,
) -> Response {
    let op = &form.op;
    let result = async {
        op.actor.require(Scope::KeysWrite)?;
        let grace = super::number::<u64>(&form.fields, "grace", "Grace period")?;
        let idem = Idempotent::none(&state, &op.actor);
        let mut once = Once::default();
        let input = RotateKey {
            grace_period_seconds: grace,
        };
        let done = keys::rotate(&state, &op.actor, &id, input, &idem, once.key()).await?;
        once.take(done)
    };
    match result.await {
        Ok((plaintext, new_id)) => {
            let body = html::secret_page(
                html! { a href="/dashboard/keys" { "Keys" } " / " a.mono href={"/dashboard/keys/" (id)} { (id) } " / rotate" },
                "Key rotated",
                Some(
                    "The old key keeps verifying until its grace period ends. Give this new key to its user:",
                ),
                "new key",
                &plaintext,
                (
                    &format!("/dashboard/keys/{new_id}"),
                    "I have copied it: show the new key",
                ),
            );
            op.page(Section::Keys, "Key rotated", body)
        }
        Err(e) => fail(e),
    }
}
