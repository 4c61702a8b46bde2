//! `/v1/webhooks` (with their deliveries) and `/v1/events`.

use reqwest::Method;

use super::segment;
use crate::client::Client;
use crate::error::Result;
use crate::types::{
    CreateWebhook, CreatedWebhook, DeliveryFilter, DeliveryView, EventFilter, EventView, List,
    Page, UpdateWebhook, WebhookView,
};

/// `/v1/webhooks`: endpoints that receive events, signed (Standard Webhooks).
#[derive(Debug, Clone, Copy)]
pub struct Webhooks<'c>(pub(super) &'c Client);

impl Webhooks<'_> {
    /// Creates a webhook; its signing secret is in the answer, this once.
    pub async fn create(&self, input: &CreateWebhook) -> Result<CreatedWebhook> {
        (self.0)
            .call("webhooks", Method::POST, "/v1/webhooks", None, Some(input))
            .await
    }

    pub async fn get(&self, id: &str) -> Result<WebhookView> {
        let path = format!("/v1/webhooks/{}", segment(id));
        self.0
            .call("webhooks", Method::GET, &path, None, None)
            .await
    }

    pub async fn list(&self, page: &Page) -> Result<List<WebhookView>> {
        (self.0)
            .call("webhooks", Method::GET, "/v1/webhooks", Some(page), None)
            .await
    }

    pub async fn update(&self, id: &str, change: &UpdateWebhook) -> Result<WebhookView> {
        let path = format!("/v1/webhooks/{}", segment(id));
        (self.0)
            .call("webhooks", Method::PATCH, &path, None, Some(change))
            .await
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        let path = format!("/v1/webhooks/{}", segment(id));
        (self.0)
            .call_empty("webhooks", Method::DELETE, &path, None)
            .await
    }

    /// A page of the webhook's deliveries, newest first.
    pub async fn deliveries(
        &self,
        id: &str,
        filter: &DeliveryFilter,
    ) -> Result<List<DeliveryView>> {
        let path = format!("/v1/webhooks/{}/deliveries", segment(id));
        (self.0)
            .call("webhooks", Method::GET, &path, Some(filter), None)
            .await
    }

    /// One delivery with its attempts (`attempt_log`).
    pub async fn delivery(&self, id: &str, delivery_id: &str) -> Result<DeliveryView> {
        let path = delivery_path(id, delivery_id);
        self.0
            .call("webhooks", Method::GET, &path, None, None)
            .await
    }

    /// Queues the delivery again (a new attempt soon, whatever its status).
    pub async fn resend(&self, id: &str, delivery_id: &str) -> Result<DeliveryView> {
        let path = format!("{}/resend", delivery_path(id, delivery_id));
        self.0
            .call("webhooks", Method::POST, &path, None, None)
            .await
    }
}

fn delivery_path(id: &str, delivery_id: &str) -> String {
    format!(
        "/v1/webhooks/{}/deliveries/{}",
        segment(id),
        segment(delivery_id)
    )
}

/// `/v1/events`: the append-only event log that webhooks deliver.
#[derive(Debug, Clone, Copy)]
pub struct Events<'c>(pub(super) &'c Client);

impl Events<'_> {
    pub async fn list(&self, filter: &EventFilter) -> Result<List<EventView>> {
        (self.0)
            .call("events", Method::GET, "/v1/events", Some(filter), None)
            .await
    }
}
