//! `/v1/root-keys`.

use reqwest::Method;

use super::segment;
use crate::client::Client;
use crate::error::Result;
use crate::types::{
    CreateRootKey, CreatedRootKey, List, Page, RevokeRootKey, RootKeyView, RotateRootKey,
};

/// `/v1/root-keys`: the admin API's own credentials (an unrestricted root key's
/// business).
#[derive(Debug, Clone, Copy)]
pub struct RootKeys<'c>(pub(super) &'c Client);

impl RootKeys<'_> {
    /// Creates a root key; its plaintext is in the answer, this once.
    pub async fn create(&self, input: &CreateRootKey) -> Result<CreatedRootKey> {
        (self.0)
            .call(
                "root keys",
                Method::POST,
                "/v1/root-keys",
                None,
                Some(input),
            )
            .await
    }

    pub async fn get(&self, key_id: &str) -> Result<RootKeyView> {
        let path = format!("/v1/root-keys/{}", segment(key_id));
        (self.0)
            .call("root keys", Method::GET, &path, None, None)
            .await
    }

    pub async fn list(&self, page: &Page) -> Result<List<RootKeyView>> {
        (self.0)
            .call("root keys", Method::GET, "/v1/root-keys", Some(page), None)
            .await
    }

    /// Revokes a root key at once (it may be the client's own).
    pub async fn revoke(&self, key_id: &str, input: &RevokeRootKey) -> Result<RootKeyView> {
        let path = format!("/v1/root-keys/{}/revoke", segment(key_id));
        (self.0)
            .call("root keys", Method::POST, &path, None, Some(input))
            .await
    }

    /// A new root key with the same scopes; the old one works until its grace ends.
    pub async fn rotate(&self, key_id: &str, input: &RotateRootKey) -> Result<CreatedRootKey> {
        let path = format!("/v1/root-keys/{}/rotate", segment(key_id));
        (self.0)
            .call("root keys", Method::POST, &path, None, Some(input))
            .await
    }
}
