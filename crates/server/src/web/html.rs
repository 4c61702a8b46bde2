//! The page frame of the dashboard and the portal, their error pages, and the small
//! pieces every page shares (times, key states, hidden CSRF fields, pagers).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use keyhaven_service::ServiceError;
use keyhaven_service::keys::KeyState;
use keyhaven_service::validate::rfc3339;
use keyhaven_store::{Branding, Timestamp};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use keyhaven_store::OperatorRole;

/// The dashboard's sections, for its navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Keys,
    Keyspaces,
    Owners,
    Activity,
    Webhooks,
    RootKeys,
}

const SECTIONS: &[(Section, &str, &str)] = &[
    (Section::Overview, "Overview", "/dashboard/"),
    (Section::Keys, "Keys", "/dashboard/keys"),
    (Section::Keyspaces, "Keyspaces", "/dashboard/keyspaces"),
    (Section::Owners, "Owners", "/dashboard/owners"),
    (Section::Activity, "Audit & events", "/dashboard/audit"),
    (Section::Webhooks, "Webhooks", "/dashboard/webhooks"),
    (Section::RootKeys, "Root keys", "/dashboard/root-keys"),
];

fn head(title: &str, extra_css: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="robots" content="noindex";
            title { (title) }
            link rel="stylesheet" href="/assets/app.css";
            @if let Some(css) = extra_css { link rel="stylesheet" href=(css); }
            script src="/assets/app.js" defer {}
        }
    }
}

/// Who is signed in, as the dashboard's frame shows them.
#[derive(Debug)]
pub struct SignedIn<'a> {
    pub email: &'a str,
    pub role: OperatorRole,
    pub csrf: String,
}

/// A dashboard page: the frame around `body`.
pub fn dashboard(op: &SignedIn<'_>, section: Section, title: &str, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · Keyhaven"), None))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/dashboard/" { span.mark aria-hidden="true" {} "Keyhaven" }
                    nav aria-label="Dashboard" {
                        @for (s, label, href) in SECTIONS {
                            @if *s == section {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    div.who {
                        span { (op.email) " " span class={"badge " (op.role.as_str())} { (op.role.as_str()) } }
                        form method="post" action="/dashboard/logout" {
                            (csrf(&op.csrf))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    };
    Html(page.into_string()).into_response()
}

/// A portal page, in the keyspace's branding.
pub fn portal(
    branding: &Branding,
    return_url: Option<&str>,
    csrf_token: &str,
    title: &str,
    body: Markup,
) -> Response {
    let name = branding.name.as_deref().unwrap_or("API keys");
    let accent = branding
        .accent_color
        .as_deref()
        .map(|c| format!("/assets/accent/{}.css", c.trim_start_matches('#')));
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · {name}"), accent.as_deref()))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/portal/" {
                        @if let Some(logo) = &branding.logo_url {
                            img src=(logo) alt="";
                        } @else {
                            span.mark aria-hidden="true" {}
                        }
                        (name)
                    }
                    nav aria-label="Portal" { a href="/portal/" aria-current="page" { "API keys" } }
                    div.who {
                        @if let Some(url) = return_url {
                            a href=(url) { "Back to " (branding.name.as_deref().unwrap_or("the app")) }
                        }
                        form method="post" action="/portal/logout" {
                            (csrf(csrf_token))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    };
    Html(page.into_string()).into_response()
}

/// A page with only a message (errors, ended sessions, used links).
pub fn message_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · Keyhaven"), None))
            body {
                main #main.auth {
                    div.card {
                        h1 { (title) }
                        p { (detail) }
                    }
                }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
}

/// An operation's error as a page: a refused input says why; anything this actor may
/// not see is "not found"; an unexpected failure is logged and shown generically.
pub fn service_error(e: ServiceError, home: &str) -> Response {
    let back = |status, title: &str, detail: &str| {
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                (head(&format!("{title} · Keyhaven"), None))
                body {
                    main #main.auth {
                        div.card {
                            h1 { (title) }
                            p { (detail) }
                            p { a href=(home) { "Back to the start" } }
                        }
                    }
                }
            }
        };
        (status, Html(page.into_string())).into_response()
    };
    match e {
        ServiceError::Invalid { detail, .. } => {
            back(StatusCode::BAD_REQUEST, "That did not work", &detail)
        }
        ServiceError::NotFound => back(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here. It may have been deleted, or the address may be wrong.",
        ),
        ServiceError::Forbidden { detail, .. } => {
            back(StatusCode::FORBIDDEN, "Not allowed", &detail)
        }
        ServiceError::MissingScope(_) => back(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "You are not allowed to do this.",
        ),
        ServiceError::Conflict { detail, .. } => {
            back(StatusCode::CONFLICT, "That did not work", &detail)
        }
        ServiceError::IdempotencyMismatch(detail) => {
            back(StatusCode::CONFLICT, "That did not work", detail)
        }
        ServiceError::Unexpected(e) => {
            let mut response = back(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server could not finish this. Nothing was changed; try again in a moment.",
            );
            // Logged by the request log, with the method, route and request id.
            response
                .extensions_mut()
                .insert(crate::error::Failure(format!("{e:#}")));
            response
        }
    }
}

/// The hidden CSRF field of every form.
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A time, readable, with its exact value for machines and on hover.
pub fn when(t: Timestamp) -> Markup {
    let exact = rfc3339(t);
    let shown = t
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_else(|_| exact.clone());
    html! { time datetime=(exact) title=(exact) { (shown) } }
}

pub fn when_opt(t: Option<Timestamp>, none: &str) -> Markup {
    match t {
        Some(t) => when(t),
        None => html! { span.muted { (none) } },
    }
}

pub fn state_badge(state: KeyState) -> Markup {
    html! { span class={"badge " (state.as_str())} { (state.as_str()) } }
}

/// A notice at the top of a page after a change (`?done=…`), never holding a secret.
pub fn done_notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("revoked") => "The key was revoked. It no longer verifies.",
        Some("updated") => "Saved.",
        Some("enabled") => "The key was enabled.",
        Some("disabled") => "The key was disabled. It verifies as DISABLED until enabled again.",
        Some("created") => "Created.",
        Some("resent") => "The delivery was queued again.",
        Some("deleted") => "Deleted.",
        _ => return html! {},
    };
    html! { div.notice.ok role="status" { (text) } }
}

/// A "next page" link keeping the page's other query parameters.
pub fn pager(base: &str, query: &[(&str, Option<&str>)], cursor: Option<&str>) -> Markup {
    let Some(cursor) = cursor else {
        return html! {};
    };
    let mut href = format!("{base}?");
    for (k, v) in query {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            href.push_str(&format!("{k}={}&", url_encode(v)));
        }
    }
    href.push_str(&format!("cursor={}", url_encode(cursor)));
    html! { div.pager { a.button.secondary href=(href) { "Next page →" } } }
}

/// A box with a secret shown this once, with its copy button and a warning.
pub fn secret_once(id: &str, what: &str, secret: &str) -> Markup {
    html! {
        div.notice.warn role="alert" {
            strong { "Copy this " (what) " now. " }
            "It is shown only this once: Keyhaven keeps only a one-way hash of it and cannot show it again. Store it somewhere safe, such as a secrets manager."
        }
        div.secret-box {
            code #(id) { (secret) }
            button type="button" data-copy=(id) { "Copy" }
        }
    }
}

/// The page body that shows a new secret once: where it came from, the secret with its
/// warning and copy button, and the way on (`next`: address, label).
pub fn secret_page(
    crumbs: Markup,
    title: &str,
    intro: Option<&str>,
    what: &str,
    secret: &str,
    next: (&str, &str),
) -> Markup {
    html! {
        div.head { div { div.crumbs { (crumbs) } h1 { (title) } } }
        div.card {
            @if let Some(intro) = intro { p { (intro) } }
            (secret_once("plaintext", what, secret))
            div.actions { a.button href=(next.0) { (next.1) } }
        }
    }
}

/// Raw markup made by this crate (the SVG charts).
pub fn trusted(markup: String) -> Markup {
    PreEscaped(markup)
}

/// Percent-encodes everything but unreserved characters.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
