//! Reading a webhook's delivery log, and re-sending a delivery by hand. A delivery
//! exists for an actor exactly when its webhook does ([`super::endpoints::find`]).

use keyhaven_store::{Attempt, Change, Delivery, DeliveryStatus, Page, PageRequest, Webhook};
use serde_json::json;

use super::endpoints;
use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::ids;
use crate::service::Service;

/// A delivery status filter as given (`pending`, `delivered` or `failed`).
pub fn status(value: Option<&str>) -> Result<Option<DeliveryStatus>> {
    value
        .map(|s| {
            DeliveryStatus::parse(s).ok_or_else(|| {
                ServiceError::bad_request(
                    "invalid_query",
                    "status must be pending, delivered or failed",
                )
            })
        })
        .transpose()
}

/// A page of a webhook's deliveries, newest first.
#[tracing::instrument(skip_all)]
pub async fn list(
    service: &Service,
    actor: &Actor,
    webhook_id: &str,
    status: Option<DeliveryStatus>,
    page: PageRequest,
) -> Result<Page<Delivery>> {
    endpoints::find(service, actor, webhook_id).await?;
    service
        .store
        .list_deliveries(webhook_id, status, page)
        .await
        .map_err(ServiceError::from)
}

async fn find(
    service: &Service,
    actor: &Actor,
    webhook_id: &str,
    delivery_id: &str,
) -> Result<(Webhook, Delivery)> {
    let hook = endpoints::find(service, actor, webhook_id).await?;
    if !ids::is_plausible("dlv", delivery_id) {
        return Err(ServiceError::NotFound);
    }
    let delivery = service
        .store
        .delivery(webhook_id, delivery_id)
        .await?
        .ok_or(ServiceError::NotFound)?;
    Ok((hook, delivery))
}

/// A delivery with every attempt, oldest first.
#[tracing::instrument(skip_all)]
pub async fn get(
    service: &Service,
    actor: &Actor,
    webhook_id: &str,
    delivery_id: &str,
) -> Result<(Delivery, Vec<Attempt>)> {
    let (_, delivery) = find(service, actor, webhook_id, delivery_id).await?;
    let attempts = service.store.delivery_attempts(delivery_id).await?;
    Ok((delivery, attempts))
}

/// Puts a delivery back in the queue, due now, with a fresh retry period (whatever its
/// status: a delivered event can be sent again, under the same `webhook-id`). Returns
/// the delivery as queued.
#[tracing::instrument(skip_all)]
pub async fn resend(
    service: &Service,
    actor: &Actor,
    webhook_id: &str,
    delivery_id: &str,
) -> Result<Delivery> {
    let (hook, found) = find(service, actor, webhook_id, delivery_id).await?;
    let now_ms = service.clock.now_micros() / 1_000;
    let event = audit::event(
        actor,
        "webhook.resend",
        ("webhook", webhook_id),
        hook.keyspace_id.as_deref(),
        audit::created(&[
            ("delivery_id", json!(delivery_id)),
            ("event_id", json!(found.event_id)),
        ]),
        service.clock.now(),
    )?;
    service
        .store
        .resend_delivery(webhook_id, delivery_id, now_ms, Change::audited(&event))
        .await?;
    service
        .store
        .delivery(webhook_id, delivery_id)
        .await?
        .ok_or(ServiceError::NotFound)
}
