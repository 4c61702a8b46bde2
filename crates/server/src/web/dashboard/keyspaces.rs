//! Keyspaces: the list with a form to create one, and a keyspace's page with its policy,
//! default rate limit, portal branding and usage.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyhaven_service::branding::BrandingBody;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::keyspaces::{self, CreateKeyspace, UpdateKeyspace};
use keyhaven_service::leaks::LeakPolicyName;
use keyhaven_service::limits::spec::{RateLimitBody, rate_limit_views};
use keyhaven_service::{Scope, ServiceError};
use keyhaven_store::{Keyspace, UsageTarget};
use maud::{Markup, html};

use super::keys::{all_keyspaces, rate_limit_fields, ratelimits_from};
use super::{fail, number, query};
use crate::state::AppState;
use crate::web::html::{Section, csrf, done_notice, when};
use crate::web::once::unstored;
use crate::web::session::{DashboardForm, Fields, Operator};

fn days(seconds: Option<i64>) -> String {
    match seconds {
        None => "—".to_owned(),
        Some(s) if s % 86_400 == 0 => format!("{} days", s / 86_400),
        Some(s) if s % 3600 == 0 => format!("{} hours", s / 3600),
        Some(s) => format!("{s} s"),
    }
}

pub async fn list(State(state): State<AppState>, op: Operator, raw: RawQuery) -> Response {
    let q = query(raw);
    match all_keyspaces(&state, &op.actor).await {
        Ok(list) => op.page(
            Section::Keyspaces,
            "Keyspaces",
            list_body(&op, &list, None, &q),
        ),
        Err(e) => fail(e),
    }
}

fn list_body(op: &Operator, list: &[Keyspace], error: Option<&str>, f: &Fields) -> Markup {
    html! {
        div.head { div { h1 { "Keyspaces" } p.muted { "Families of keys sharing a prefix, lifecycle policy and default limits: e.g. live and test keys." } } }
        (done_notice(f.get("done")))
        div.card { div.table-wrap { table {
            thead { tr { th { "Name" } th { "Prefix" } th.hide-sm { "Max key age" } th.hide-sm { "Default grace" } th.hide-sm { "Created" } } }
            tbody {
                @for ks in list {
                    tr {
                        td { a href={"/dashboard/keyspaces/" (ks.id)} { (ks.name) } }
                        td.mono { (ks.prefix) "_…" }
                        td.hide-sm { (days(ks.policy.max_key_age)) }
                        td.hide-sm { (days(ks.policy.default_grace)) }
                        td.hide-sm { (when(ks.created_at)) }
                    }
                }
                @if list.is_empty() { tr { td.empty colspan="5" { "No keyspace yet." } } }
            }
        } } }
        @if op.may_write() {
            section.card aria-labelledby="new-ks" {
                h2 #new-ks { "Create a keyspace" }
                @if let Some(error) = error { div.notice.bad role="alert" { (error) } }
                form.stack method="post" action="/dashboard/keyspaces" {
                    (csrf(&op.csrf()))
                    label { "Name" input type="text" name="name" required maxlength="200" value=[f.get("name")] placeholder="Production"; }
                    label { "Prefix" span.hint { "Lower-case letters, digits and _; keys look like prefix_…" }
                        input type="text" name="prefix" required maxlength="20" pattern="[a-z][a-z0-9_]*" value=[f.get("prefix")] placeholder="acme_live";
                    }
                    (policy_fields(None))
                    button type="submit" { "Create keyspace" }
                }
            }
        }
    }
}

/// A policy duration as the form shows it: whole `unit`s (rounded down; [`super::was`]
/// keeps a save from writing the rounding back).
fn shown(seconds: Option<i64>, unit: i64) -> String {
    seconds.map(|s| (s / unit).to_string()).unwrap_or_default()
}

fn policy_fields(ks: Option<&Keyspace>) -> Markup {
    let p = ks.map(|k| k.policy).unwrap_or_default();
    let limits = ks
        .map(|k| rate_limit_views(&k.ratelimits))
        .unwrap_or_default();
    let fields = [
        (
            "max_age_days",
            "Max key age (days)",
            shown(p.max_key_age, 86_400),
            "1",
        ),
        (
            "grace_hours",
            "Default grace (hours)",
            shown(p.default_grace, 3600),
            "0",
        ),
        (
            "warning_days",
            "Expiry warning (days)",
            shown(p.expiry_warning, 86_400),
            "1",
        ),
    ];
    html! {
        fieldset {
            legend { "Policy" }
            div.row {
                @for (name, label, value, min) in &fields {
                    (super::was(name, value))
                    label { (label) input type="number" name=(name) min=(min) value=(value); }
                }
            }
        }
        (rate_limit_fields(&limits, "The default limit of every key in the keyspace; empty for none."))
    }
}

/// A policy duration the form changed, in seconds: `None` when left as shown (the stored
/// value stays), `Some(None)` when emptied.
fn policy_field(
    f: &Fields,
    name: &str,
    label: &str,
    unit: i64,
) -> Result<Option<Option<i64>>, ServiceError> {
    if !super::changed(f, &[name]) {
        return Ok(None);
    }
    Ok(Some(
        number::<i64>(f, name, label)?.map(|n| n.saturating_mul(unit)),
    ))
}

struct Policy {
    max_key_age: Option<Option<i64>>,
    default_grace: Option<Option<i64>>,
    expiry_warning: Option<Option<i64>>,
    ratelimits: Option<Vec<RateLimitBody>>,
}

fn policy_from(f: &Fields) -> Result<Policy, ServiceError> {
    Ok(Policy {
        max_key_age: policy_field(f, "max_age_days", "Max key age", 86_400)?,
        default_grace: policy_field(f, "grace_hours", "Default grace", 3600)?,
        expiry_warning: policy_field(f, "warning_days", "Expiry warning", 86_400)?,
        ratelimits: ratelimits_from(f)?,
    })
}

pub async fn create(State(state): State<AppState>, form: DashboardForm) -> Response {
    let (op, f) = (&form.op, &form.fields);
    let mut created = None;
    let result = async {
        op.actor.require(Scope::KeyspacesWrite)?;
        let p = policy_from(f)?;
        let input = CreateKeyspace {
            name: f.get("name").unwrap_or("").to_owned(),
            prefix: f.get("prefix").unwrap_or("").to_owned(),
            max_key_age_seconds: p.max_key_age.flatten(),
            default_grace_seconds: p.default_grace.flatten(),
            expiry_warning_seconds: p.expiry_warning.flatten(),
            ratelimits: p.ratelimits.unwrap_or_default(),
            alerts: Default::default(),
            branding: BrandingBody::default(),
            leak_policy: LeakPolicyName::default(),
            ip_allowlist: Vec::new(),
            secret_bytes: None,
            token_max_ttl_seconds: None,
        };
        let idem = Idempotent::none(&state, &op.actor);
        keyspaces::create(&state, &op.actor, input, &idem, |ks| {
            created = Some(ks.id.clone());
            Ok(unstored())
        })
        .await
    };
    match result.await {
        Ok(_) => Redirect::to(&format!(
            "/dashboard/keyspaces/{}?done=created",
            created.unwrap_or_default()
        ))
        .into_response(),
        Err(ServiceError::Invalid { detail, .. } | ServiceError::Conflict { detail, .. }) => {
            let list = all_keyspaces(&state, &op.actor).await.unwrap_or_default();
            let mut r = op.page(
                Section::Keyspaces,
                "Keyspaces",
                list_body(op, &list, Some(&detail), f),
            );
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            r
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
        op.actor.require(Scope::KeyspacesRead)?;
        let ks = keyspaces::find(&state, &op.actor, &id).await?;
        let usage = super::usage_card(
            &state,
            &op.actor,
            UsageTarget::Keyspace(&id),
            q.get("range"),
        )
        .await?;
        let roles = keyhaven_service::roles::list(&state, &op.actor, &id).await?;
        Ok::<_, ServiceError>((ks, usage, roles))
    };
    let (ks, usage, roles) = match result.await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let b = &ks.branding;
    let ip_allowlist = ks
        .ip_allowlist
        .as_ref()
        .map(|l| l.entries().join(" "))
        .unwrap_or_default();
    let body = html! {
        div.head {
            div {
                div.crumbs { a href="/dashboard/keyspaces" { "Keyspaces" } " / " span.mono { (ks.id) } }
                h1 { (ks.name) }
                p.muted { "Keys look like " code { (ks.prefix) "_<key id>_<secret>" } }
            }
            div.actions { a.button.secondary href={"/dashboard/keys?keyspace_id=" (ks.id)} { "Its keys" } }
        }
        (done_notice(q.get("done")))
        (usage)
        (super::roles::card(&op, &ks.id, &roles))
        section.card aria-labelledby="settings" {
            h2 #settings { "Settings" }
            @if op.may_write() {
                form.stack method="post" action={"/dashboard/keyspaces/" (ks.id)} {
                    (csrf(&op.csrf()))
                    label { "Name" input type="text" name="name" required maxlength="200" value=(ks.name); }
                    (policy_fields(Some(&ks)))
                    fieldset {
                        legend { "Customer portal branding" }
                        (super::was("brand_name", b.name.as_deref().unwrap_or("")))
                        (super::was("brand_logo", b.logo_url.as_deref().unwrap_or("")))
                        (super::was("brand_color", b.accent_color.as_deref().unwrap_or("")))
                        div.row {
                            label { "Company name" input type="text" name="brand_name" maxlength="200" value=[b.name.as_deref()]; }
                            label { "Accent colour" input type="text" name="brand_color" placeholder="#4f46e5" pattern="#[0-9a-fA-F]{6}" value=[b.accent_color.as_deref()]; }
                        }
                        label { "Logo address" span.hint { "https:// only" } input type="url" name="brand_logo" value=[b.logo_url.as_deref()]; }
                    }
                    (super::was("ip_allowlist", &ip_allowlist))
                    label { "IP allowlist of every key" span.hint { "Addresses or CIDR networks separated by spaces or commas; empty for any address. Keys and owners may narrow it further." } input type="text" name="ip_allowlist" value=(ip_allowlist); }
                    label {
                        "When a key is reported leaked"
                        select name="leak_policy" {
                            @for (value, text) in LEAK_POLICIES {
                                option value=(value) selected[LeakPolicyName::from(ks.leak_policy) == *text_policy(value)] { (text) }
                            }
                        }
                    }
                    label {
                        "Secrets of new keys"
                        select name="secret_bytes" {
                            @for (bytes, text) in [(22u8, "30 characters (~175 bits)"), (32, "44 characters (~256 bits)")] {
                                option value=(bytes) selected[ks.policy.secret_length.bytes() == bytes] { (text) }
                            }
                        }
                    }
                    button type="submit" { "Save settings" }
                }
            } @else {
                dl.facts {
                    dt { "Max key age" } dd { (days(ks.policy.max_key_age)) }
                    dt { "Default grace" } dd { (days(ks.policy.default_grace)) }
                    dt { "Expiry warning" } dd { (days(ks.policy.expiry_warning.or(Some(keyhaven_store::DEFAULT_EXPIRY_WARNING)))) }
                    dt { "Portal name" } dd { (b.name.as_deref().unwrap_or("—")) }
                    dt { "Leaked keys" } dd { (ks.leak_policy.as_str()) }
                    dt { "Secrets of new keys" } dd { (ks.policy.secret_length.bytes()) " bytes" }
                    dt { "IP allowlist" } dd { @if ip_allowlist.is_empty() { span.muted { "any address" } } @else { code { (ip_allowlist) } } }
                }
            }
        }
    };
    op.page(Section::Keyspaces, &ks.name, body)
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: DashboardForm,
) -> Response {
    let f = &form.fields;
    let result = async {
        form.op.actor.require(Scope::KeyspacesWrite)?;
        let p = policy_from(f)?;
        let input = UpdateKeyspace {
            name: f.opt("name"),
            max_key_age_seconds: p.max_key_age,
            default_grace_seconds: p.default_grace,
            expiry_warning_seconds: p.expiry_warning,
            ratelimits: p.ratelimits,
            alerts: None,
            token_max_ttl_seconds: None,
            leak_policy: f.get("leak_policy").map(text_policy).copied(),
            secret_bytes: f
                .opt("secret_bytes")
                .map(|v| v.parse::<u8>())
                .transpose()
                .map_err(|_| ServiceError::invalid("secret_bytes must be 22 or 32"))?,
            ip_allowlist: super::changed(f, &["ip_allowlist"])
                .then(|| super::word_list(f.get("ip_allowlist"))),
            branding: super::changed(f, &["brand_name", "brand_logo", "brand_color"]).then(|| {
                BrandingBody {
                    name: f.opt("brand_name"),
                    logo_url: f.opt("brand_logo"),
                    accent_color: f.opt("brand_color"),
                }
            }),
        };
        keyspaces::update(&state, &form.op.actor, &id, input).await
    };
    match result.await {
        Ok(_) => Redirect::to(&format!("/dashboard/keyspaces/{id}?done=updated")).into_response(),
        Err(e) => fail(e),
    }
}

/// The leak policies the settings form offers: form value and label.
const LEAK_POLICIES: [(&str, &str); 3] = [
    ("revoke", "Revoke it at once"),
    ("disable", "Disable it (can be enabled again)"),
    ("notify", "Only record a key.leaked event"),
];

/// A form's leak policy value; anything unknown reads as the default (revoke).
fn text_policy(value: &str) -> &'static LeakPolicyName {
    match value {
        "disable" => &LeakPolicyName::Disable,
        "notify" => &LeakPolicyName::Notify,
        _ => &LeakPolicyName::Revoke,
    }
}
