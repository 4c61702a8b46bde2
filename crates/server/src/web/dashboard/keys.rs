//! The key list (search by key id, name or owner external id; filter by keyspace and
//! state; sort by creation or last use) and creating a key, whose plaintext is shown
//! once on the page that answers the form.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use keyhaven_service::idempotency::Idempotent;
use keyhaven_service::keys::{self, CreateKey, KeySort, KeyState, ListKeys};
use keyhaven_service::limits::spec::{QuotaBody, RateLimitBody, RefillBody};
use keyhaven_service::{Actor, Scope, ServiceError};
use keyhaven_store::{Keyspace, PageRequest};
use maud::{Markup, html};

use super::{fail, local_time, number, query, word_list};
use crate::state::AppState;
use crate::web::html::{self, Section, csrf, pager, state_badge, when_opt};
use crate::web::once::Once;
use crate::web::session::{DashboardForm, Fields, Operator};

const STATES: [&str; 4] = ["active", "disabled", "expired", "revoked"];

pub(super) async fn all_keyspaces(
    state: &AppState,
    actor: &Actor,
) -> Result<Vec<Keyspace>, ServiceError> {
    Ok(keyhaven_service::keyspaces::list(
        state,
        actor,
        PageRequest {
            limit: 500,
            after: None,
        },
    )
    .await?
    .items)
}

pub async fn list(State(state): State<AppState>, op: Operator, raw: RawQuery) -> Response {
    let q = query(raw);
    match render_list(&state, &op, &q).await {
        Ok(r) => r,
        Err(e) => fail(e),
    }
}

async fn render_list(
    state: &AppState,
    op: &Operator,
    q: &Fields,
) -> Result<Response, ServiceError> {
    op.actor.require(Scope::KeysRead)?;
    let search = q.opt("search");
    let keyspace = q.opt("keyspace_id");
    let owner = q.opt("owner_id");
    let state_filter = q.opt("state");
    let sort = KeySort::parse(q.get("sort").filter(|s| !s.is_empty()))?;
    // A last-use position is `<last used>.<seq>`; a creation position is `<seq>`.
    let (page, last_used_before) = match q.opt("cursor") {
        None => (
            PageRequest {
                limit: super::PAGE,
                after: None,
            },
            None,
        ),
        Some(c) => match c.split_once('.') {
            Some((lu, seq)) => (
                super::page_at(Some(seq))?,
                Some(lu.parse::<i64>().map_err(|_| {
                    ServiceError::bad_request("invalid_cursor", "that page link is not valid")
                })?),
            ),
            None => (super::page_at(Some(&c))?, None),
        },
    };
    let listed = keys::list(
        state,
        &op.actor,
        ListKeys {
            keyspace_id: keyspace.as_deref(),
            owner_id: owner.as_deref(),
            sort,
            search: search.as_deref(),
            state: keys::parse_state(state_filter.as_deref())?,
        },
        page,
        last_used_before,
    )
    .await?;
    let next = match (listed.page.next, listed.next_last_used) {
        (Some(seq), Some(lu)) => Some(format!("{lu}.{seq}")),
        (Some(seq), None) => Some(seq.to_string()),
        _ => None,
    };
    let keyspaces = all_keyspaces(state, &op.actor).await?;
    let now = state.clock.now();
    let sort_name = if sort == KeySort::LastUsed {
        "last_used"
    } else {
        "created"
    };
    let body = html! {
        div.head {
            div { h1 { "Keys" } p.muted { "Every API key, newest first or by last use." } }
            @if op.may_write() { a.button href="/dashboard/keys/new" { "Create key" } }
        }
        form.inline.card method="get" action="/dashboard/keys" role="search" {
            label { "Search" input type="search" name="search" value=[search.as_deref()] placeholder="Key id, name or owner external id"; }
            label { "Keyspace"
                select name="keyspace_id" {
                    option value="" { "All" }
                    @for ks in &keyspaces {
                        option value=(ks.id) selected[keyspace.as_deref() == Some(ks.id.as_str())] { (ks.name) }
                    }
                }
            }
            label { "State"
                select name="state" {
                    option value="" { "Any" }
                    @for s in STATES { option value=(s) selected[state_filter.as_deref() == Some(s)] { (s) } }
                }
            }
            label { "Sort"
                select name="sort" {
                    option value="created" selected[sort_name == "created"] { "Newest" }
                    option value="last_used" selected[sort_name == "last_used"] { "Last used" }
                }
            }
            @if let Some(owner) = &owner { input type="hidden" name="owner_id" value=(owner); }
            button type="submit" { "Apply" }
        }
        div.card { div.table-wrap { table {
            thead { tr { th { "Key" } th { "State" } th.hide-sm { "Keyspace" } th { "Last used" } th.hide-sm { "Created" } } }
            tbody {
                @for k in &listed.page.items {
                    tr {
                        td {
                            a href={"/dashboard/keys/" (k.key_id)} { (k.name.as_deref().unwrap_or("Unnamed key")) }
                            br; span.mono.muted.small { (keyhaven_core::format::display_form(listed.prefixes.of(&k.keyspace_id), &k.key_id, &k.last4)) }
                        }
                        td { (state_badge(KeyState::of(k, listed.prefixes.max_age(&k.keyspace_id), now))) }
                        td.hide-sm { (keyspaces.iter().find(|ks| ks.id == k.keyspace_id).map_or(k.keyspace_id.as_str(), |ks| ks.name.as_str())) }
                        td { (when_opt(k.last_used_at, "never")) }
                        td.hide-sm { (html::when(k.created_at)) }
                    }
                }
                @if listed.page.items.is_empty() { tr { td.empty colspan="5" { "No key matches." } } }
            }
        } } }
        (pager("/dashboard/keys", &[("search", search.as_deref()), ("keyspace_id", keyspace.as_deref()), ("owner_id", owner.as_deref()), ("state", state_filter.as_deref()), ("sort", Some(sort_name))], next.as_deref()))
    };
    Ok(op.page(Section::Keys, "Keys", body))
}

/// The standard periods of a rate limit in the forms.
const PERIODS: [(u64, &str); 4] = [
    (1000, "second"),
    (60_000, "minute"),
    (3_600_000, "hour"),
    (86_400_000, "day"),
];

/// The rate-limit fields of a form (create and edit forms of keys and keyspaces). The
/// form handles one limit without a burst; anything else is shown, not offered for
/// editing (a save then leaves it alone). Each field carries its shown value, so a save
/// changes only what was changed ([`super::changed`]).
pub(super) fn rate_limit_fields(limits: &[RateLimitBody], default_note: &str) -> Markup {
    let editable = limits.len() <= 1 && limits.first().is_none_or(|l| l.burst.is_none());
    let limit = limits.first();
    let per = limit.map_or(60_000, |l| l.duration_ms);
    html! {
        fieldset {
            legend { "Rate limit" }
            @if editable {
                input type="hidden" name="rl_name" value=(limit.map_or("default", |l| l.name.as_str()));
                (super::was("rl_limit", &limit.map(|l| l.limit.to_string()).unwrap_or_default()))
                (super::was("rl_per", &per.to_string()))
                div.row {
                    label { "Requests" input type="number" name="rl_limit" min="1" value=[limit.map(|l| l.limit)]; }
                    label { "Per"
                        select name="rl_per" {
                            @for (ms, name) in PERIODS { option value=(ms) selected[per == ms] { (name) } }
                            @if !PERIODS.iter().any(|(ms, _)| *ms == per) { option value=(per) selected { (per) " ms" } }
                        }
                    }
                }
                span.hint.small.muted { (default_note) }
            } @else {
                p.small {
                    @for l in limits { code { (l.name) } ": " (l.limit) " per " (l.duration_ms) " ms" @if let Some(b) = l.burst { " (burst " (b) ")" } br; }
                    span.muted { "Several limits or bursts are managed through the API; saving here leaves them as they are." }
                }
            }
        }
    }
}

/// The quota fields of a form.
pub(super) fn quota_fields() -> Markup {
    html! {
        fieldset {
            legend { "Quota" }
            div.row {
                label { "Uses left" input type="number" name="quota_remaining" min="0"; }
                label { "Refill"
                    select name="quota_refill" {
                        option value="" { "Never" }
                        option value="daily" { "Daily" }
                        option value="monthly" { "Monthly" }
                    }
                }
                label { "Refill to" input type="number" name="quota_amount" min="0"; }
            }
        }
    }
}

/// The rate limits a form sets, or `None` when it leaves them as they were.
pub(super) fn ratelimits_from(f: &Fields) -> Result<Option<Vec<RateLimitBody>>, ServiceError> {
    if !super::changed(f, &["rl_limit", "rl_per"]) {
        return Ok(None);
    }
    Ok(Some(match number::<u64>(f, "rl_limit", "Requests")? {
        None => Vec::new(),
        Some(limit) => vec![RateLimitBody {
            name: f.opt("rl_name").unwrap_or_else(|| "default".to_owned()),
            limit,
            duration_ms: number::<u64>(f, "rl_per", "Per")?.unwrap_or(60_000),
            burst: None,
        }],
    }))
}

/// The quota a form describes (`None`: none).
pub(super) fn quota_from(f: &Fields) -> Result<Option<QuotaBody>, ServiceError> {
    Ok(match number::<u64>(f, "quota_remaining", "Uses left")? {
        None => None,
        Some(remaining) => Some(QuotaBody {
            remaining,
            refill: match f.opt("quota_refill") {
                None => None,
                Some(interval) => Some(RefillBody {
                    interval,
                    amount: number::<u64>(f, "quota_amount", "Refill to")?.unwrap_or(remaining),
                    day: None,
                }),
            },
        }),
    })
}

fn new_form(op: &Operator, keyspaces: &[Keyspace], error: Option<&str>, f: &Fields) -> Markup {
    html! {
        div.head { div {
            div.crumbs { a href="/dashboard/keys" { "Keys" } " / new" }
            h1 { "Create a key" }
        } }
        @if let Some(error) = error { div.notice.bad role="alert" { (error) } }
        @if keyspaces.is_empty() {
            div.card { p { "Create a keyspace first: every key belongs to one." } a.button href="/dashboard/keyspaces" { "Create a keyspace" } }
        } @else {
            div.card {
                form.stack method="post" action="/dashboard/keys" {
                    (csrf(&op.csrf()))
                    label { "Keyspace"
                        select name="keyspace_id" required {
                            @for ks in keyspaces { option value=(ks.id) selected[f.get("keyspace_id") == Some(ks.id.as_str())] { (ks.name) " (" (ks.prefix) "_…)" } }
                        }
                    }
                    label { "Name" span.hint { "What the key is for, e.g. “Production server”." } input type="text" name="name" maxlength="200" value=[f.get("name")]; }
                    label { "Owner id" span.hint { "Optional: the owner (customer) the key belongs to, e.g. own_…" } input type="text" name="owner_id" value=[f.get("owner_id")]; }
                    label { "Scopes" span.hint { "Separated by spaces or commas, e.g. read:orders write:orders" } input type="text" name="scopes" value=[f.get("scopes")]; }
                    label { "Expires" span.hint { "Optional, UTC." } input type="datetime-local" name="expires_at" value=[f.get("expires_at")]; }
                    label { "Roles" span.hint { "Optional: roles of the keyspace, separated by spaces or commas." } input type="text" name="roles" value=[f.get("roles")]; }
                    label { "Permissions" span.hint { "Optional, e.g. documents.read documents.write" } input type="text" name="permissions" value=[f.get("permissions")]; }
                    label { "Plan" span.hint { "Optional: a plan's name; what the key sets itself overrides the plan's." } input type="text" name="plan" value=[f.get("plan")]; }
                    label { "IP allowlist" span.hint { "Optional: addresses or CIDR networks separated by spaces or commas, e.g. 203.0.113.0/24 2001:db8::/32. Verifications from elsewhere answer FORBIDDEN_IP." } input type="text" name="ip_allowlist" value=[f.get("ip_allowlist")]; }
                    (rate_limit_fields(&[], "Leave empty for no limit of the key's own (its keyspace's defaults still apply)."))
                    (quota_fields())
                    button type="submit" { "Create key" }
                }
            }
        }
    }
}

pub async fn new(State(state): State<AppState>, op: Operator, raw: RawQuery) -> Response {
    if !op.may_write() {
        return fail(ServiceError::MissingScope("keys:write"));
    }
    let keyspaces = match all_keyspaces(&state, &op.actor).await {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let q = query(raw);
    op.page(
        Section::Keys,
        "Create a key",
        new_form(&op, &keyspaces, None, &q),
    )
}

pub async fn create(State(state): State<AppState>, form: DashboardForm) -> Response {
    let op = &form.op;
    let f = &form.fields;
    let attempt = async {
        op.actor.require(Scope::KeysWrite)?;
        let input = CreateKey {
            keyspace_id: f.get("keyspace_id").unwrap_or("").to_owned(),
            owner_id: f.opt("owner_id"),
            name: f.opt("name"),
            scopes: word_list(f.get("scopes")),
            meta: Default::default(),
            expires_at: local_time(f, "expires_at"),
            enabled: None,
            recoverable: None,
            ratelimits: ratelimits_from(f)?.unwrap_or_default(),
            quota: quota_from(f)?,
            ip_allowlist: word_list(f.get("ip_allowlist")),
            roles: word_list(f.get("roles")),
            permissions: word_list(f.get("permissions")),
            plan: f.opt("plan"),
        };
        let mut once = Once::default();
        let idem = Idempotent::none(&state, &op.actor);
        let done = keys::create(&state, &op.actor, input, &idem, once.key()).await?;
        let (plaintext, key_id) = once.take(done)?;
        Ok(html::secret_page(
            html! { a href="/dashboard/keys" { "Keys" } " / new" },
            "Key created",
            None,
            "key",
            &plaintext,
            (
                &format!("/dashboard/keys/{key_id}"),
                "I have copied it: show the key",
            ),
        ))
    };
    match attempt.await {
        Ok(body) => op.page(Section::Keys, "Key created", body),
        Err(ServiceError::Invalid { detail, .. }) => {
            let keyspaces = all_keyspaces(&state, &op.actor).await.unwrap_or_default();
            let mut response = op.page(
                Section::Keys,
                "Create a key",
                new_form(op, &keyspaces, Some(&detail), f),
            );
            *response.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            response
        }
        Err(e) => fail(e),
    }
}
