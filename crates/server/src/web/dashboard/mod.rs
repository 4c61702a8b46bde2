//! The operator dashboard: `/dashboard/…`. Each page reads its input (query or
//! CSRF-checked form), calls the operations with the signed-in operator as the actor,
//! and renders the answer. A viewer sees no button that changes anything, and its
//! forms are refused (`session::DashboardForm`).

use axum::Router;
use axum::extract::RawQuery;
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use keyhaven_service::ServiceError;
use keyhaven_service::usage_report::{self, SeriesParams};
use keyhaven_service::validate::rfc3339;
use keyhaven_store::{PageRequest, UsageTarget};
use maud::{Markup, html};

use super::session::Fields;
use super::{chart, html};
use crate::state::AppState;

mod activity;
mod home;
mod key;
mod keys;
mod keyspaces;
mod login;
mod owners;
mod roles;
mod root_keys;
mod webhooks;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/dashboard",
            get(|| async { Redirect::permanent("/dashboard/") }),
        )
        .route("/dashboard/", get(home::page))
        .route("/dashboard/login", get(login::page).post(login::submit))
        .route("/dashboard/logout", post(login::logout))
        .route("/dashboard/keys", get(keys::list).post(keys::create))
        .route("/dashboard/keys/new", get(keys::new))
        .route("/dashboard/keys/{id}", get(key::page))
        .route("/dashboard/keys/{id}/update", post(key::update))
        .route("/dashboard/keys/{id}/rotate", post(key::rotate))
        .route("/dashboard/keys/{id}/revoke", post(key::revoke))
        .route("/dashboard/keys/{id}/enabled", post(key::set_enabled))
        .route("/dashboard/keys/{id}/credits", post(key::change_credits))
        .route(
            "/dashboard/keyspaces",
            get(keyspaces::list).post(keyspaces::create),
        )
        .route(
            "/dashboard/keyspaces/{id}",
            get(keyspaces::page).post(keyspaces::update),
        )
        .route("/dashboard/keyspaces/{id}/roles", post(roles::create))
        .route(
            "/dashboard/keyspaces/{id}/roles/{name}",
            post(roles::update),
        )
        .route(
            "/dashboard/keyspaces/{id}/roles/{name}/delete",
            post(roles::delete),
        )
        .route("/dashboard/owners", get(owners::list).post(owners::create))
        .route("/dashboard/owners/{id}", get(owners::page))
        .route("/dashboard/audit", get(activity::audit))
        .route("/dashboard/events", get(activity::events))
        .route(
            "/dashboard/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route("/dashboard/webhooks/{id}", get(webhooks::page))
        .route(
            "/dashboard/webhooks/{id}/deliveries/{delivery_id}/resend",
            post(webhooks::resend),
        )
        .route(
            "/dashboard/root-keys",
            get(root_keys::list).post(root_keys::create),
        )
        .route("/dashboard/root-keys/{id}/revoke", post(root_keys::revoke))
        .route(
            "/dashboard/{*rest}",
            get(|| async { fail(ServiceError::NotFound) }),
        )
}

/// An operation's error as a dashboard page.
fn fail(e: ServiceError) -> Response {
    html::service_error(e, "/dashboard/")
}

/// A page's query string as fields (malformed: none).
fn query(raw: RawQuery) -> Fields {
    raw.0
        .and_then(|q| Fields::parse(q.as_bytes()))
        .unwrap_or_default()
}

/// A hidden copy of the value a form field shows, so a save can tell what was changed.
fn was(name: &str, value: &str) -> Markup {
    html! { input type="hidden" name={(name) "__was"} value=(value); }
}

/// Whether any of the fields differs from the value it was shown with ([`was`]).
fn changed(f: &Fields, names: &[&str]) -> bool {
    names
        .iter()
        .any(|n| f.get(n).unwrap_or("") != f.get(&format!("{n}__was")).unwrap_or(""))
}

/// A usage card: verifications of `target` by outcome over the period `range` names
/// (`24h` by hour, the default; `7d` by hour; `30d` by day), with its period picker.
async fn usage_card(
    state: &AppState,
    actor: &keyhaven_service::Actor,
    target: UsageTarget<'_>,
    range: Option<&str>,
) -> Result<Markup, ServiceError> {
    let now = state.clock.now();
    let (params, caption, chosen) = match range {
        Some("7d") => (
            SeriesParams {
                from: Some(rfc3339(now - time::Duration::days(7))),
                granularity: Some("hour".into()),
                ..Default::default()
            },
            "per hour, last 7 days",
            "7d",
        ),
        Some("30d") => (
            SeriesParams {
                granularity: Some("day".into()),
                ..Default::default()
            },
            "per day, last 30 days",
            "30d",
        ),
        _ => (SeriesParams::default(), "per hour, last 24 hours", "24h"),
    };
    let series = usage_report::series(state, actor, target, &params).await?;
    Ok(html! {
        section.card aria-labelledby="usage" {
            div.head {
                h2 #usage { "Verifications" }
                form.inline method="get" {
                    label { "Period"
                        select name="range" {
                            @for (value, label) in [("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")] {
                                option value=(value) selected[value == chosen] { (label) }
                            }
                        }
                    }
                    button.secondary type="submit" { "Show" }
                }
            }
            (chart::usage(caption, &series))
        }
    })
}

/// Rows per page in the dashboard's lists.
const PAGE: u32 = 25;

/// The page a list starts at: `cursor` is the `next` of the page before.
fn page_at(cursor: Option<&str>) -> Result<PageRequest, ServiceError> {
    let after = match cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ServiceError::bad_request("invalid_cursor", "that page link is not valid")
        })?),
    };
    Ok(PageRequest { limit: PAGE, after })
}

/// A number field: absent or empty is `None`; anything but a whole number is refused.
fn number<T: std::str::FromStr>(
    fields: &Fields,
    name: &str,
    label: &str,
) -> Result<Option<T>, ServiceError> {
    match fields.opt(name) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| ServiceError::invalid(format!("{label} must be a whole number"))),
    }
}

/// Scopes typed as a list separated by commas, spaces or new lines.
fn word_list(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split([',', ' ', '\n', '\r', '\t'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A `datetime-local` field (taken as UTC) as RFC 3339; empty is `None`.
fn local_time(fields: &Fields, name: &str) -> Option<String> {
    fields.opt(name).map(|t| {
        let t = if t.len() == 16 { format!("{t}:00") } else { t };
        if t.ends_with('Z') { t } else { format!("{t}Z") }
    })
}
