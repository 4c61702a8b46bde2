//! Who is on the other end of a page: the session cookie, the signed-in operator or
//! portal customer it names, and forms checked against the session's CSRF token.
//!
//! Cookies are `HttpOnly`, `SameSite=Lax`, scoped to their front door's path, and
//! `Secure` when `public_url` is `https`. A form without the right `csrf` field is
//! refused with 403 before anything reads it; so is any dashboard form from a viewer
//! (signing out aside).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use keyhaven_service::Actor;
use keyhaven_service::actor::PortalGrant;
use keyhaven_service::sessions::{self, SessionToken};

use super::html;
use crate::state::AppState;

/// The dashboard's session cookie.
pub const DASHBOARD_COOKIE: &str = "kh_dashboard";
/// The portal's session cookie.
pub const PORTAL_COOKIE: &str = "kh_portal";
/// The sign-in form's own CSRF cookie (there is no session yet to derive one from).
pub const LOGIN_COOKIE: &str = "kh_login";
/// Largest form accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `value` for `path`, or an expired one to clear it.
pub fn set_cookie(
    state: &AppState,
    name: &str,
    value: Option<&str>,
    path: &str,
    same_site: &str,
) -> HeaderValue {
    let secure = if state.config.public_is_https() {
        "; Secure"
    } else {
        ""
    };
    let text = match value {
        Some(value) => {
            format!("{name}={value}; Path={path}; HttpOnly; SameSite={same_site}{secure}")
        }
        None => format!("{name}=; Path={path}; HttpOnly; SameSite={same_site}{secure}; Max-Age=0"),
    };
    // Names, tokens and paths are ASCII we made.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// A signed-in operator, with the session's token (for its CSRF token).
#[derive(Debug)]
pub struct Operator {
    pub actor: Actor,
    pub operator: keyhaven_store::Operator,
    pub token: SessionToken,
}

impl Operator {
    pub fn csrf(&self) -> String {
        self.token.csrf()
    }

    pub fn may_write(&self) -> bool {
        self.actor.may_write()
    }

    /// A dashboard page for this operator: the frame around `body`.
    pub fn page(&self, section: html::Section, title: &str, body: maud::Markup) -> Response {
        let who = html::SignedIn {
            email: &self.operator.email,
            role: self.operator.role,
            csrf: self.csrf(),
        };
        html::dashboard(&who, section, title, body)
    }
}

/// Where a request without a live session is sent: the sign-in page, which brings it
/// back to where it was going.
fn to_login(parts: &Parts) -> Response {
    let path = parts.uri.path();
    if parts.method == axum::http::Method::GET
        && path != "/dashboard/"
        && path.starts_with("/dashboard/")
    {
        let next: String =
            html::url_encode(parts.uri.path_and_query().map_or(path, |p| p.as_str()));
        Redirect::to(&format!("/dashboard/login?next={next}")).into_response()
    } else {
        Redirect::to("/dashboard/login").into_response()
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, DASHBOARD_COOKIE).and_then(SessionToken::parse)
        else {
            return Err(to_login(parts));
        };
        match sessions::operator_session(state, &token, client_ip(parts)).await {
            Ok(Some(session)) => Ok(Self {
                actor: session.actor,
                operator: session.operator,
                token,
            }),
            Ok(None) => Err(to_login(parts)),
            Err(e) => Err(html::service_error(e, "/dashboard/")),
        }
    }
}

/// A customer in the portal.
#[derive(Debug)]
pub struct Customer {
    pub actor: Actor,
    pub grant: Arc<PortalGrant>,
    pub token: SessionToken,
}

impl Customer {
    pub fn csrf(&self) -> String {
        self.token.csrf()
    }
}

impl FromRequestParts<AppState> for Customer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let ended = || {
            html::message_page(
                StatusCode::UNAUTHORIZED,
                "Your session has ended",
                "Open the key management page again from your account to continue.",
            )
        };
        let Some(token) = cookie(&parts.headers, PORTAL_COOKIE).and_then(SessionToken::parse)
        else {
            return Err(ended());
        };
        match sessions::portal_session(state, &token, client_ip(parts)).await {
            Ok(Some((actor, grant))) => Ok(Self {
                actor,
                grant,
                token,
            }),
            Ok(None) => Err(ended()),
            Err(e) => Err(html::service_error(e, "/portal/")),
        }
    }
}

/// The fields of a posted form, in order (checkboxes may repeat a name).
#[derive(Default)]
pub struct Fields(Vec<(String, String)>);

/// Names only: a form may hold a password or a CSRF token.
impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Fields {
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_urlencoded::from_bytes(body).ok().map(Self)
    }

    /// The first value of `name`, trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    /// The first value of `name`, trimmed, unless empty.
    pub fn opt(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// Whether a checkbox `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

async fn read_fields(req: Request, state: &AppState) -> Result<Fields, Response> {
    let body = Bytes::from_request(req, state).await.map_err(|_| {
        html::message_page(
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            "Go back and try again.",
        )
    })?;
    if body.len() > MAX_FORM_BYTES {
        return Err(html::message_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large",
            "Go back and shorten what you entered.",
        ));
    }
    Fields::parse(&body).ok_or_else(|| {
        html::message_page(
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            "Go back and try again.",
        )
    })
}

fn csrf_refused() -> Response {
    html::message_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "For your security the form was refused. Reload the page and submit it again.",
    )
}

/// A dashboard form from a signed-in operator, its CSRF token checked; from a viewer,
/// only the sign-out form is accepted.
#[derive(Debug)]
pub struct DashboardForm {
    pub op: Operator,
    pub fields: Fields,
}

impl FromRequest<AppState> for DashboardForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let op = Operator::from_request_parts(&mut parts, state).await?;
        let signing_out = parts.uri.path() == "/dashboard/logout";
        let fields = read_fields(Request::from_parts(parts, body), state).await?;
        if !fields.get("csrf").is_some_and(|c| op.token.csrf_matches(c)) {
            return Err(csrf_refused());
        }
        if !signing_out && !op.may_write() {
            return Err(html::message_page(
                StatusCode::FORBIDDEN,
                "Viewers cannot make changes",
                "Your role lets you read everything and change nothing. Ask an admin.",
            ));
        }
        Ok(Self { op, fields })
    }
}

/// A portal form from a customer, its CSRF token checked.
#[derive(Debug)]
pub struct PortalForm {
    pub customer: Customer,
    pub fields: Fields,
}

impl FromRequest<AppState> for PortalForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let customer = Customer::from_request_parts(&mut parts, state).await?;
        let fields = read_fields(Request::from_parts(parts, body), state).await?;
        if !fields
            .get("csrf")
            .is_some_and(|c| customer.token.csrf_matches(c))
        {
            return Err(csrf_refused());
        }
        Ok(Self { customer, fields })
    }
}

/// The sign-in form: its CSRF token is the `kh_login` cookie's value (double submit).
#[derive(Debug)]
pub struct LoginForm {
    pub fields: Fields,
    pub ip: Option<IpAddr>,
}

impl FromRequest<AppState> for LoginForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let expected = cookie(&parts.headers, LOGIN_COOKIE).and_then(SessionToken::parse);
        let ip = client_ip(&parts);
        let fields = read_fields(Request::from_parts(parts, body), state).await?;
        let given = fields.get("csrf").unwrap_or("");
        match expected {
            Some(token)
                if subtle::ConstantTimeEq::ct_eq(token.expose().as_bytes(), given.as_bytes())
                    .into() =>
            {
                Ok(Self { fields, ip })
            }
            _ => Err(csrf_refused()),
        }
    }
}
