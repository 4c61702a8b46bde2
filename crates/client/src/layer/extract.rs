//! [`VerifiedKey`]: the caller of a request the layer admitted, in its extensions, and
//! the axum extractor that reads it.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::response::Response;
use serde_json::{Map, Value};

use super::refusal;
use crate::types::{VerifyOwner, VerifyRatelimit, VerifyResponse};

/// Who is calling: the verified key's identity and what is left of its limits. Put in
/// the request's extensions by [`KeyhavenLayer`](super::KeyhavenLayer); take it in a
/// handler as an extractor (`VerifiedKey`, or `Option<VerifiedKey>` on a route that
/// also serves callers without one, as a fail-open layer lets through). Cheap to clone.
#[derive(Debug, Clone)]
pub struct VerifiedKey(pub(crate) Arc<VerifyResponse>);

/// Put in the extensions instead of a [`VerifiedKey`] when a fail-open layer let a
/// request through because Keyhaven could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyhavenUnavailable;

impl VerifiedKey {
    pub fn key_id(&self) -> &str {
        self.0.key_id.as_deref().unwrap_or_default()
    }

    pub fn keyspace_id(&self) -> &str {
        self.0.keyspace_id.as_deref().unwrap_or_default()
    }

    /// The keyspace's name.
    pub fn keyspace(&self) -> Option<&str> {
        self.0.keyspace.as_deref()
    }

    pub fn owner(&self) -> Option<&VerifyOwner> {
        self.0.owner.as_ref()
    }

    pub fn owner_id(&self) -> Option<&str> {
        self.0.owner.as_ref().map(|o| o.id.as_str())
    }

    /// Your own id for the key's owner.
    pub fn owner_external_id(&self) -> Option<&str> {
        self.0.owner.as_ref().and_then(|o| o.external_id.as_deref())
    }

    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The key's scopes (all of them, not only those the route asked for).
    pub fn scopes(&self) -> &[String] {
        self.0.scopes.as_deref().unwrap_or_default()
    }

    pub fn meta(&self) -> Option<&Map<String, Value>> {
        self.0.meta.as_ref()
    }

    /// The rate limits this request was counted against, after it.
    pub fn ratelimits(&self) -> &[VerifyRatelimit] {
        &self.0.ratelimits
    }

    /// Remaining uses under the key's quota, if it has one.
    pub fn remaining(&self) -> Option<u64> {
        self.0.remaining
    }

    /// The whole verify answer.
    pub fn response(&self) -> &VerifyResponse {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        if let Some(key) = parts.extensions.get::<VerifiedKey>() {
            return Ok(key.clone());
        }
        if parts.extensions.get::<KeyhavenUnavailable>().is_some() {
            return Err(refusal::unavailable());
        }
        Err(refusal::no_layer())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<VerifiedKey>().cloned())
    }
}
