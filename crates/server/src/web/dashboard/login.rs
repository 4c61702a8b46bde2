//! Signing in and out. The sign-in form is protected by a double-submit token (a cookie
//! and a hidden field that must match), failures are throttled per email and address
//! (`operators::login`), and the session cookie is set only on success.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use keyhaven_service::operators::LoginError;
use keyhaven_service::sessions::{self, SessionToken};
use maud::{DOCTYPE, html};
use secrecy::SecretString;

use super::{fail, query};
use crate::state::AppState;
use crate::web::html::csrf;
use crate::web::session::{DASHBOARD_COOKIE, DashboardForm, LOGIN_COOKIE, LoginForm, set_cookie};

/// Only a path inside the dashboard (never another site) is a place to return to.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/dashboard/")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/dashboard/",
    }
}

fn form_page(
    state: &AppState,
    status: StatusCode,
    next: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let token = match SessionToken::generate() {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { "Sign in · Keyhaven" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body {
                main #main.auth {
                    div.card {
                        h1 { "Sign in to Keyhaven" }
                        @if let Some(error) = error {
                            div.notice.bad role="alert" { (error) }
                        }
                        form.stack method="post" action="/dashboard/login" {
                            (csrf(token.expose()))
                            input type="hidden" name="next" value=(next);
                            label { "Email" input type="email" name="email" value=(email) autocomplete="username" required autofocus; }
                            label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                            button type="submit" { "Sign in" }
                        }
                        p.muted.small { "Operators are created with " code { "keyhaven operator create" } "." }
                    }
                }
            }
        }
    };
    let cookie = set_cookie(
        state,
        LOGIN_COOKIE,
        Some(token.expose()),
        "/dashboard/login",
        "Strict",
    );
    (
        status,
        [(header::SET_COOKIE, cookie)],
        Html(page.into_string()),
    )
        .into_response()
}

pub async fn page(State(state): State<AppState>, raw: RawQuery) -> Response {
    let q = query(raw);
    form_page(&state, StatusCode::OK, safe_next(q.get("next")), "", None)
}

pub async fn submit(State(state): State<AppState>, form: LoginForm) -> Response {
    let f = &form.fields;
    let email = f.get("email").unwrap_or("");
    let next = safe_next(f.get("next")).to_owned();
    let password = SecretString::from(f.get("password").unwrap_or("").to_owned());
    match sessions::sign_in(&state, email, password, form.ip).await {
        Ok((token, _)) => {
            let cookie = set_cookie(
                &state,
                DASHBOARD_COOKIE,
                Some(token.expose()),
                "/dashboard",
                "Lax",
            );
            let clear = set_cookie(&state, LOGIN_COOKIE, None, "/dashboard/login", "Strict");
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response.headers_mut().append(header::SET_COOKIE, clear);
            response
        }
        Err(LoginError::Wrong) => form_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &next,
            email,
            Some("Wrong email address or password."),
        ),
        Err(LoginError::Throttled {
            retry_after_minutes,
        }) => {
            let mut response = form_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                email,
                Some(&format!(
                    "Too many failed sign-ins. For your security, try again in {retry_after_minutes} minutes."
                )),
            );
            if let Ok(v) = (retry_after_minutes * 60).to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        Err(LoginError::Service(e)) => fail(e),
    }
}

pub async fn logout(State(state): State<AppState>, form: DashboardForm) -> Response {
    if let Err(e) =
        sessions::sign_out(&state, &form.op.actor, &form.op.operator.id, &form.op.token).await
    {
        return fail(e);
    }
    let clear = set_cookie(&state, DASHBOARD_COOKIE, None, "/dashboard", "Lax");
    let mut response = Redirect::to("/dashboard/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}
