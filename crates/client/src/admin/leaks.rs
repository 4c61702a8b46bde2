//! `POST /v1/leaks/report`.

use reqwest::Method;

use crate::client::Client;
use crate::error::Result;
use crate::types::{LeakResults, ReportLeaks};

/// Reports of leaked keys (a key's own revocation is
/// [`Keys::self_revoke`](crate::Keys::self_revoke)).
#[derive(Debug, Clone, Copy)]
pub struct Leaks<'c>(pub(super) &'c Client);

impl Leaks<'_> {
    /// Reports keys found exposed: each working key is acted on by its keyspace's leak
    /// policy. The request's bytes are wiped once sent, and no reported key appears in
    /// an error.
    pub async fn report(&self, input: &ReportLeaks) -> Result<LeakResults> {
        let keys: Vec<&str> = (input.keys.iter())
            .map(secrecy::ExposeSecret::expose_secret)
            .collect();
        (self.0)
            .call_secret("leaks", Method::POST, "/v1/leaks/report", input, &keys)
            .await
    }
}
