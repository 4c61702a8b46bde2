//! A keyspace's roles on its page: the list, and forms to create, change and delete
//! them (the rules are [`keyhaven_service::roles`]).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyhaven_service::Scope;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::roles::{self, CreateRole, UpdateRole};
use keyhaven_store::Role;
use maud::{Markup, html};

use super::{fail, word_list};
use crate::state::AppState;
use crate::web::html::csrf;
use crate::web::once::unstored;
use crate::web::session::{DashboardForm, Operator};

/// The roles card of keyspace `ks`.
pub fn card(op: &Operator, ks: &str, roles: &[Role]) -> Markup {
    let token = op.csrf();
    html! {
        section.card aria-labelledby="roles" {
            h2 #roles { "Roles" }
            p.muted { "Named sets of permissions. A key with a role holds its permissions; a change reaches every such key at its next verification." }
            @if roles.is_empty() { p.muted { "No roles yet." } }
            @for r in roles {
                div.role {
                    h3.mono { (r.name) }
                    @if let Some(d) = &r.description { p { (d) } }
                    p {
                        @if r.permissions.is_empty() { span.muted { "no permissions" } }
                        @for p in &r.permissions { code { (p) } " " }
                    }
                    @if op.may_write() {
                        details.action {
                            summary { "Change " (r.name) "…" }
                            form.stack method="post" action={"/dashboard/keyspaces/" (ks) "/roles/" (r.name)} {
                                (csrf(&token))
                                label { "Permissions" span.hint { "Separated by spaces or commas." }
                                    input type="text" name="permissions" value=(r.permissions.join(" "));
                                }
                                label { "Description" input type="text" name="description" maxlength="500" value=[r.description.as_deref()]; }
                                button.secondary type="submit" { "Save role" }
                            }
                            form method="post" action={"/dashboard/keyspaces/" (ks) "/roles/" (r.name) "/delete"} {
                                (csrf(&token))
                                button.danger type="submit" { "Delete role" }
                            }
                        }
                    }
                }
            }
            @if op.may_write() {
                details.action {
                    summary { "New role…" }
                    form.stack method="post" action={"/dashboard/keyspaces/" (ks) "/roles"} {
                        (csrf(&token))
                        label { "Name" span.hint { "e.g. editor" } input type="text" name="name" required maxlength="100"; }
                        label { "Permissions" span.hint { "e.g. documents.read documents.write" } input type="text" name="permissions"; }
                        label { "Description" input type="text" name="description" maxlength="500"; }
                        button type="submit" { "Create role" }
                    }
                }
            }
        }
    }
}

fn back_to(ks: &str) -> Response {
    Redirect::to(&format!("/dashboard/keyspaces/{ks}?done=updated#roles")).into_response()
}

pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: DashboardForm,
) -> Response {
    let (f, actor) = (&form.fields, &form.op.actor);
    let result = async {
        actor.require(Scope::KeyspacesWrite)?;
        let input = CreateRole {
            name: f.get("name").unwrap_or("").to_owned(),
            description: f.opt("description"),
            permissions: word_list(f.get("permissions")),
        };
        let idem = Idempotent::none(&state, actor);
        roles::create(&state, actor, &id, input, &idem, |_| Ok(unstored())).await
    };
    match result.await {
        Ok(_) => back_to(&id),
        Err(e) => fail(e),
    }
}

pub async fn update(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    form: DashboardForm,
) -> Response {
    let (f, actor) = (&form.fields, &form.op.actor);
    let result = async {
        actor.require(Scope::KeyspacesWrite)?;
        let input = UpdateRole {
            description: Some(f.opt("description")),
            permissions: Some(word_list(f.get("permissions"))),
        };
        roles::update(&state, actor, &id, &name, input).await
    };
    match result.await {
        Ok(_) => back_to(&id),
        Err(e) => fail(e),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    form: DashboardForm,
) -> Response {
    let actor = &form.op.actor;
    let result = async {
        actor.require(Scope::KeyspacesWrite)?;
        roles::delete(&state, actor, &id, &name).await
    };
    match result.await {
        Ok(()) => back_to(&id),
        Err(e) => fail(e),
    }
}
