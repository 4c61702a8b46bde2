//! `POST /v1/portal/sessions`.

use reqwest::Method;

use crate::client::Client;
use crate::error::Result;
use crate::types::{CreatePortalSession, PortalSessionView};

/// Links into the portal, where a customer manages their own keys.
#[derive(Debug, Clone, Copy)]
pub struct Portal<'c>(pub(super) &'c Client);

impl Portal<'_> {
    /// A single-use link for one owner: hand it to that customer only.
    pub async fn create_session(&self, input: &CreatePortalSession) -> Result<PortalSessionView> {
        (self.0)
            .call(
                "portal",
                Method::POST,
                "/v1/portal/sessions",
                None,
                Some(input),
            )
            .await
    }
}
