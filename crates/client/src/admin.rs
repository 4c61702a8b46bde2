//! The admin API, one handle per resource: `client.keyspaces()`, `client.keys()`,
//! `client.owners()`, `client.usage()`, `client.audit()`, `client.roles()`,
//! `client.plans()`, `client.root_keys()`, `client.webhooks()`, `client.events()`,
//! `client.ratelimits()`, `client.leaks()` and `client.portal()` (verification, one key
//! or a batch, is [`Client::verify_with`] and [`Client::verify_batch`]). Each call needs
//! the root key's scope for it (`keys:write`, `owners:read`, …) and answers the API's
//! types, or [`Error::Api`](crate::Error::Api) with the problem document.
//!
//! A call that got no answer is sent again (see
//! [`ClientBuilder::attempts`](crate::ClientBuilder::attempts)); the POSTs the server
//! deduplicates (creates, revoke, rotate, credits) carry one `Idempotency-Key` across
//! those attempts, so a request that did arrive is not applied twice; other POSTs are
//! sent again only when no connection was made.
//!
//! Routes without a typed handle (use [`Client::request`]), none of them for an API
//! client:
//! - `GET /healthz`, `GET /readyz`, `GET /metrics`: probes and Prometheus metrics, for
//!   load balancers, orchestrators and scrapers.
//! - `GET /v1/changes`: the change stream (server-sent events), which the verify cache
//!   follows by itself.
//! - `GET /v1/auth`: forward authentication for a reverse proxy (nginx `auth_request`,
//!   Traefik `forwardAuth`), answered in headers; a client verifies with
//!   [`Client::verify_with`].
//! - `POST /v1/leaks/github`: GitHub's secret scanning partner callback, signed by GitHub.
//! - The dashboard's and the portal's HTML pages (outside `docs/openapi.json`).

mod access;
mod leaks;
mod portal;
mod ratelimits;
mod root_keys;
mod webhooks;

use reqwest::Method;

pub use self::access::{Plans, Roles};
pub use self::leaks::Leaks;
pub use self::portal::Portal;
pub use self::ratelimits::Ratelimits;
pub use self::root_keys::RootKeys;
pub use self::webhooks::{Events, Webhooks};
use crate::client::Client;
use crate::error::Result;
use crate::types::{
    AuditEventView, AuditFilter, ChangeCredits, CreateKey, CreateKeyspace, CreateOwner, CreatedKey,
    CreditsView, ExpiringFilter, ExpiringKeyView, ImportRequest, ImportResponse, KeyFilter,
    KeyView, KeyspaceView, List, OwnerView, Page, RevealedKey, RevokeKey, RotateKey, SelfRevoke,
    SelfRevokedView, UpdateKey, UpdateKeyspace, UpdateOwner, UsageRange, UsageSeries, UsageTotals,
};

impl Client {
    pub fn keyspaces(&self) -> Keyspaces<'_> {
        Keyspaces(self)
    }

    pub fn keys(&self) -> Keys<'_> {
        Keys(self)
    }

    pub fn owners(&self) -> Owners<'_> {
        Owners(self)
    }

    pub fn usage(&self) -> Usage<'_> {
        Usage(self)
    }

    pub fn audit(&self) -> Audit<'_> {
        Audit(self)
    }

    pub fn roles(&self) -> Roles<'_> {
        Roles(self)
    }

    pub fn plans(&self) -> Plans<'_> {
        Plans(self)
    }

    pub fn root_keys(&self) -> RootKeys<'_> {
        RootKeys(self)
    }

    pub fn webhooks(&self) -> Webhooks<'_> {
        Webhooks(self)
    }

    pub fn events(&self) -> Events<'_> {
        Events(self)
    }

    pub fn ratelimits(&self) -> Ratelimits<'_> {
        Ratelimits(self)
    }

    pub fn leaks(&self) -> Leaks<'_> {
        Leaks(self)
    }

    pub fn portal(&self) -> Portal<'_> {
        Portal(self)
    }
}

/// `/v1/keyspaces`.
#[derive(Debug, Clone, Copy)]
pub struct Keyspaces<'c>(&'c Client);

impl Keyspaces<'_> {
    pub async fn create(&self, input: &CreateKeyspace) -> Result<KeyspaceView> {
        (self.0)
            .call(
                "keyspaces",
                Method::POST,
                "/v1/keyspaces",
                None,
                Some(input),
            )
            .await
    }

    pub async fn get(&self, id: &str) -> Result<KeyspaceView> {
        let path = format!("/v1/keyspaces/{}", segment(id));
        self.0
            .call("keyspaces", Method::GET, &path, None, None)
            .await
    }

    pub async fn list(&self, page: &Page) -> Result<List<KeyspaceView>> {
        (self.0)
            .call("keyspaces", Method::GET, "/v1/keyspaces", Some(page), None)
            .await
    }

    pub async fn update(&self, id: &str, change: &UpdateKeyspace) -> Result<KeyspaceView> {
        let path = format!("/v1/keyspaces/{}", segment(id));
        (self.0)
            .call("keyspaces", Method::PATCH, &path, None, Some(change))
            .await
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        let path = format!("/v1/keyspaces/{}", segment(id));
        (self.0)
            .call_empty("keyspaces", Method::DELETE, &path, None)
            .await
    }
}

/// `/v1/keys`.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'c>(&'c Client);

impl Keys<'_> {
    /// Creates a key; its plaintext is in the answer, this once.
    pub async fn create(&self, input: &CreateKey) -> Result<CreatedKey> {
        (self.0)
            .call("keys", Method::POST, "/v1/keys", None, Some(input))
            .await
    }

    /// Creates up to 1,000 keys in one transaction (`POST /v1/keys/batch`): every key, in
    /// the order given, or none (an item that cannot be made refuses the whole batch).
    pub async fn create_batch(&self, keys: &[CreateKey]) -> Result<Vec<CreatedKey>> {
        #[derive(serde::Serialize)]
        struct Batch<'a> {
            keys: &'a [CreateKey],
        }
        #[derive(serde::Deserialize)]
        struct Created {
            keys: Vec<CreatedKey>,
        }
        let created: Created = (self.0)
            .call(
                "keys",
                Method::POST,
                "/v1/keys/batch",
                None,
                Some(&Batch { keys }),
            )
            .await?;
        Ok(created.keys)
    }

    pub async fn get(&self, key_id: &str) -> Result<KeyView> {
        let path = format!("/v1/keys/{}", segment(key_id));
        self.0.call("keys", Method::GET, &path, None, None).await
    }

    pub async fn list(&self, filter: &KeyFilter) -> Result<List<KeyView>> {
        (self.0)
            .call("keys", Method::GET, "/v1/keys", Some(filter), None)
            .await
    }

    pub async fn update(&self, key_id: &str, change: &UpdateKey) -> Result<KeyView> {
        let path = format!("/v1/keys/{}", segment(key_id));
        (self.0)
            .call("keys", Method::PATCH, &path, None, Some(change))
            .await
    }

    /// Revokes a key, at once and for good.
    pub async fn revoke(&self, key_id: &str, input: &RevokeKey) -> Result<KeyView> {
        let path = format!("/v1/keys/{}/revoke", segment(key_id));
        (self.0)
            .call("keys", Method::POST, &path, None, Some(input))
            .await
    }

    /// A new key with the same settings; the old one verifies until its grace ends.
    pub async fn rotate(&self, key_id: &str, input: &RotateKey) -> Result<CreatedKey> {
        let path = format!("/v1/keys/{}/rotate", segment(key_id));
        (self.0)
            .call("keys", Method::POST, &path, None, Some(input))
            .await
    }

    pub async fn delete(&self, key_id: &str) -> Result<()> {
        let path = format!("/v1/keys/{}", segment(key_id));
        (self.0)
            .call_empty("keys", Method::DELETE, &path, None)
            .await
    }

    /// Sets, raises or lowers the key's credits (its quota's uses left) atomically.
    pub async fn credits(&self, key_id: &str, change: &ChangeCredits) -> Result<CreditsView> {
        let path = format!("/v1/keys/{}/credits", segment(key_id));
        (self.0)
            .call("keys", Method::POST, &path, None, Some(change))
            .await
    }

    /// Keys within their keyspace's expiry warning, soonest expiry first.
    pub async fn expiring(&self, filter: &ExpiringFilter) -> Result<List<ExpiringKeyView>> {
        (self.0)
            .call("keys", Method::GET, "/v1/keys/expiring", Some(filter), None)
            .await
    }

    /// Imports keys from another system by their stored digests (1 to 1,000).
    pub async fn import(&self, input: &ImportRequest) -> Result<ImportResponse> {
        (self.0)
            .call("keys", Method::POST, "/v1/keys/import", None, Some(input))
            .await
    }

    /// The plaintext of a recoverable key (needs `keys:reveal`; audited).
    pub async fn reveal(&self, key_id: &str) -> Result<RevealedKey> {
        let path = format!("/v1/keys/{}/reveal", segment(key_id));
        self.0.call("keys", Method::POST, &path, None, None).await
    }

    /// Revokes `key` with itself as the credential (not the root key): for a key
    /// holder who finds it exposed. A key that does not work answers 401.
    pub async fn self_revoke(&self, key: &str, input: &SelfRevoke) -> Result<SelfRevokedView> {
        (self.0)
            .call_as(
                "keys",
                key,
                Method::POST,
                "/v1/keys/self-revoke",
                Some(input),
            )
            .await
    }
}

/// `/v1/owners`.
#[derive(Debug, Clone, Copy)]
pub struct Owners<'c>(&'c Client);

impl Owners<'_> {
    pub async fn create(&self, input: &CreateOwner) -> Result<OwnerView> {
        (self.0)
            .call("owners", Method::POST, "/v1/owners", None, Some(input))
            .await
    }

    pub async fn get(&self, id: &str) -> Result<OwnerView> {
        let path = format!("/v1/owners/{}", segment(id));
        self.0.call("owners", Method::GET, &path, None, None).await
    }

    /// A page of owners; `external_id` finds the one with your own id.
    pub async fn list(&self, external_id: Option<&str>, page: &Page) -> Result<List<OwnerView>> {
        #[derive(serde::Serialize)]
        struct Query<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            external_id: Option<&'a str>,
            #[serde(flatten)]
            page: &'a Page,
        }
        let query = Query { external_id, page };
        (self.0)
            .call("owners", Method::GET, "/v1/owners", Some(&query), None)
            .await
    }

    pub async fn update(&self, id: &str, change: &UpdateOwner) -> Result<OwnerView> {
        let path = format!("/v1/owners/{}", segment(id));
        (self.0)
            .call("owners", Method::PATCH, &path, None, Some(change))
            .await
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        let path = format!("/v1/owners/{}", segment(id));
        (self.0)
            .call_empty("owners", Method::DELETE, &path, None)
            .await
    }

    /// Sets, raises or lowers the owner's credits (its quota's uses left) atomically.
    pub async fn credits(&self, id: &str, change: &ChangeCredits) -> Result<CreditsView> {
        let path = format!("/v1/owners/{}/credits", segment(id));
        (self.0)
            .call("owners", Method::POST, &path, None, Some(change))
            .await
    }
}

/// Verification counts: per key, keyspace or owner over time, and totals per key.
#[derive(Debug, Clone, Copy)]
pub struct Usage<'c>(&'c Client);

impl Usage<'_> {
    pub async fn key(&self, key_id: &str, range: &UsageRange) -> Result<UsageSeries> {
        let path = format!("/v1/keys/{}/usage", segment(key_id));
        self.series(&path, range).await
    }

    pub async fn keyspace(&self, id: &str, range: &UsageRange) -> Result<UsageSeries> {
        let path = format!("/v1/keyspaces/{}/usage", segment(id));
        self.series(&path, range).await
    }

    pub async fn owner(&self, id: &str, range: &UsageRange) -> Result<UsageSeries> {
        let path = format!("/v1/owners/{}/usage", segment(id));
        self.series(&path, range).await
    }

    /// Totals for each of `key_ids` over `from`..`to` of `range`.
    pub async fn keys(&self, key_ids: &[&str], range: &UsageRange) -> Result<UsageTotals> {
        #[derive(serde::Serialize)]
        struct Query<'a> {
            key_ids: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            from: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            to: Option<&'a str>,
        }
        let query = Query {
            key_ids: key_ids.join(","),
            from: range.from.as_deref(),
            to: range.to.as_deref(),
        };
        (self.0)
            .call("usage", Method::GET, "/v1/keys/usage", Some(&query), None)
            .await
    }

    async fn series(&self, path: &str, range: &UsageRange) -> Result<UsageSeries> {
        self.0
            .call("usage", Method::GET, path, Some(range), None)
            .await
    }
}

/// `/v1/audit-events`.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'c>(&'c Client);

impl Audit<'_> {
    pub async fn list(&self, filter: &AuditFilter) -> Result<List<AuditEventView>> {
        (self.0)
            .call("audit", Method::GET, "/v1/audit-events", Some(filter), None)
            .await
    }
}

/// `id` as one path segment: everything but letters, digits, `-`, `_` and `~`
/// percent-encoded (`.` too, so `..` cannot climb out of the path).
fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(segment("ks_7Gx9QbWkP2mZ"), "ks_7Gx9QbWkP2mZ");
        assert_eq!(segment("../x y/%"), "%2E%2E%2Fx%20y%2F%25");
    }
}
