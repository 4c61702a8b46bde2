//! Root keys: the credentials of the admin API. Listed (never their secrets), created
//! (the plaintext shown once) and revoked.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyhaven_service::Scope;
use keyhaven_service::actor::ROOT_SCOPES;
use keyhaven_service::keys::KeyState;
use keyhaven_service::root_keys::{self, CreateRootKey};
use keyhaven_store::ROOT_PREFIX;
use maud::html;
use secrecy::ExposeSecret as _;

use super::{fail, page_at, query};
use crate::state::AppState;
use crate::web::html::{self, Section, csrf, done_notice, pager, state_badge, when, when_opt};
use crate::web::session::{DashboardForm, Operator};

pub async fn list(State(state): State<AppState>, op: Operator, raw: RawQuery) -> Response {
    let q = query(raw);
    let result = async {
        op.actor.require(Scope::RootKeysRead)?;
        root_keys::list(
            &state,
            &op.actor,
            page_at(q.get("cursor").filter(|c| !c.is_empty()))?,
        )
        .await
    };
    let page = match result.await {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let now = state.clock.now();
    let next = page.next.map(|n| n.to_string());
    let body = html! {
        div.head { div { h1 { "Root keys" } p.muted { "Credentials of the admin API (" code { "Authorization: Bearer kh_root_…" } "). Give each system its own, with only the scopes it needs." } } }
        (done_notice(q.get("done")))
        div.card { div.table-wrap { table {
            thead { tr { th { "Root key" } th { "Scopes" } th { "State" } th.hide-sm { "Last used" } th {} } }
            tbody {
                @for k in &page.items {
                    @let s = KeyState::of(k, None, now);
                    tr {
                        td { (k.name.as_deref().unwrap_or("Unnamed")) br; span.mono.small.muted { (keyhaven_core::format::display_form(ROOT_PREFIX, &k.key_id, &k.last4)) } }
                        td.small {
                            @for sc in &k.scopes { code { (sc) } " " }
                            @if let Some(ks) = &k.allowed_keyspaces { br; span.muted { "only " (ks.join(", ")) } }
                        }
                        td { (state_badge(s)) }
                        td.hide-sm { (when_opt(k.last_used_at, "never")) }
                        td {
                            @if op.may_write() && s.is_live() {
                                details.action {
                                    summary { "Revoke…" }
                                    form.inline method="post" action={"/dashboard/root-keys/" (k.key_id) "/revoke"} {
                                        (csrf(&op.csrf()))
                                        label { "Reason" input type="text" name="reason" maxlength="200"; }
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            } @else if let Some(t) = k.revoked_at { span.small.muted { "revoked " (when(t)) } }
                        }
                    }
                }
                @if page.items.is_empty() { tr { td.empty colspan="5" { "No root key." } } }
            }
        } } }
        (pager("/dashboard/root-keys", &[], next.as_deref()))
        @if op.may_write() {
            section.card aria-labelledby="new-root" {
                h2 #new-root { "Create a root key" }
                form.stack method="post" action="/dashboard/root-keys" {
                    (csrf(&op.csrf()))
                    label { "Name" input type="text" name="name" maxlength="200" placeholder="billing service"; }
                    fieldset {
                        legend { "Scopes" }
                        div.row {
                            @for s in ROOT_SCOPES.iter().filter(|s| root_keys::check_grantable(&op.actor, &[(**s).to_owned()]).is_ok()) {
                                label.check { input type="checkbox" name="scopes" value=(s); code { (s) } }
                            }
                        }
                    }
                    label { "Only these keyspaces" span.hint { "Optional: keyspace ids separated by spaces." } input type="text" name="keyspaces"; }
                    button type="submit" { "Create root key" }
                }
            }
        }
    };
    op.page(Section::RootKeys, "Root keys", body)
}

pub async fn create(State(state): State<AppState>, form: DashboardForm) -> Response {
    let (op, f) = (&form.op, &form.fields);
    let keyspaces = super::word_list(f.get("keyspaces"));
    let input = CreateRootKey {
        scopes: f.all("scopes"),
        keyspace_ids: (!keyspaces.is_empty()).then_some(keyspaces),
        name: f.opt("name"),
        expires_at: None,
    };
    let result = async {
        op.actor.require(Scope::RootKeysWrite)?;
        root_keys::create_as(&state, &op.actor, input).await
    };
    match result.await {
        Ok((generated, _)) => {
            let body = html::secret_page(
                html! { a href="/dashboard/root-keys" { "Root keys" } " / new" },
                "Root key created",
                None,
                "root key",
                generated.key().expose_secret(),
                (
                    "/dashboard/root-keys",
                    "I have copied it: back to root keys",
                ),
            );
            op.page(Section::RootKeys, "Root key created", body)
        }
        Err(e) => fail(e),
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: DashboardForm,
) -> Response {
    let result = async {
        form.op.actor.require(Scope::RootKeysWrite)?;
        root_keys::revoke(&state, &form.op.actor, &id, form.fields.opt("reason")).await
    };
    match result.await {
        Ok(()) => Redirect::to("/dashboard/root-keys?done=revoked").into_response(),
        Err(e) => fail(e),
    }
}
