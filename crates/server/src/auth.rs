//! Root keys: how a request to the admin and verify API proves who it is, and what it may
//! touch. A root key is a key in the reserved `kh_root` keyspace; its scopes say which
//! operations it may call and `allowed_keyspaces` (when set) which keyspaces' objects it
//! may see. Everything outside them answers exactly like a missing object.

use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use keyhaven_service::Actor;
use keyhaven_service::verify;

use crate::error::ApiError;
use crate::state::AppState;

pub use keyhaven_service::actor::{ROOT_SCOPES, Scope, validate_root_scopes};

/// An authenticated root key and the request's origin: the [`Actor`] of the request.
#[derive(Debug, Clone)]
pub struct RootAuth(pub Actor);

impl Deref for RootAuth {
    type Target = Actor;

    fn deref(&self) -> &Actor {
        &self.0
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    bearer_token(parts.headers.get(AUTHORIZATION)?.to_str().ok()?)
}

/// The token of an `Authorization` header value (`Bearer <token>`, the scheme in any
/// case), trimmed; `None` for any other scheme. Pure, and pub for the fuzz targets.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The address of the connection a request came on (`None` only for requests that did
/// not come through the server's accept loop, as in-process tests send).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    fn of(parts: &Parts) -> Self {
        Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}

impl FromRequestParts<AppState> for RootAuth {
    type Rejection = ApiError;

    #[tracing::instrument(name = "authenticate", skip_all)]
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let ClientIp(client_ip) = ClientIp::of(parts);
        match verify::authenticate(state, token, client_ip).await? {
            Some(actor) => Ok(Self(actor)),
            None => Err(ApiError::Unauthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_takes_the_bearer_scheme_in_any_case_and_trims() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bEaReR   abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), Some(""));
        for refused in ["Basic abc", "Bearer", "Bearerabc", " Bearer abc", ""] {
            assert_eq!(bearer_token(refused), None, "{refused:?}");
        }
    }
}
