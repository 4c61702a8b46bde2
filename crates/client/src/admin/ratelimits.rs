//! `/v1/ratelimits`.

use reqwest::Method;
use serde::Serialize;

use crate::client::Client;
use crate::error::Result;
use crate::types::{LimitRequest, LimitResponse, List, OverrideView, SetOverride};

/// `/v1/ratelimits`: standalone rate limits (no key involved) and their overrides.
#[derive(Debug, Clone, Copy)]
pub struct Ratelimits<'c>(pub(super) &'c Client);

impl Ratelimits<'_> {
    /// Takes `cost` from the identifier's limit; `success` says whether the call may
    /// proceed (a refusal is an answer, not an error).
    pub async fn limit(&self, input: &LimitRequest) -> Result<LimitResponse> {
        (self.0)
            .call(
                "ratelimits",
                Method::POST,
                "/v1/ratelimits/limit",
                None,
                Some(input),
            )
            .await
    }

    /// Sets an override, replacing the one of the same namespace and identifier.
    pub async fn set_override(&self, input: &SetOverride) -> Result<OverrideView> {
        (self.0)
            .call(
                "ratelimits",
                Method::PUT,
                "/v1/ratelimits/overrides",
                None,
                Some(input),
            )
            .await
    }

    /// Every override of `namespace`, by identifier.
    pub async fn overrides(&self, namespace: &str) -> Result<List<OverrideView>> {
        #[derive(Serialize)]
        struct Query<'a> {
            namespace: &'a str,
        }
        (self.0)
            .call(
                "ratelimits",
                Method::GET,
                "/v1/ratelimits/overrides",
                Some(&Query { namespace }),
                None,
            )
            .await
    }

    /// Deletes the override of `identifier` (exactly as set, pattern or not).
    pub async fn delete_override(&self, namespace: &str, identifier: &str) -> Result<()> {
        #[derive(Serialize)]
        struct Query<'a> {
            namespace: &'a str,
            identifier: &'a str,
        }
        let query = Query {
            namespace,
            identifier,
        };
        (self.0)
            .call_empty(
                "ratelimits",
                Method::DELETE,
                "/v1/ratelimits/overrides",
                Some(&query),
            )
            .await
    }
}
