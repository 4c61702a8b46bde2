//! Operations on webhook endpoints: create (the signing secret is generated here, stored
//! sealed, and handed to the caller this once), update, delete and the reads.
//!
//! A webhook with a `keyspace_id` receives only that keyspace's events and exists for
//! actors that see the keyspace; one without receives every event and exists only for
//! actors not limited to keyspaces.

use keyhaven_store::{Change, EVENT_TYPES, Page, PageRequest, Webhook};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{SECRET_PURPOSE, signing, target};
use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::idempotency::{self, Done, Idempotent, Rendered};
use crate::ids;
use crate::keyspaces;
use crate::patch::double_option;
use crate::service::Service;

/// Most event types one webhook lists.
pub const MAX_EVENT_TYPES: usize = 16;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http(s)://…`, at most 2048 characters, no credentials; a public address unless
    /// the server allows private targets.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// 1-16 event types to deliver (default `["*"]`, every type).
    #[schema(min_items = 1, max_items = 16)]
    pub event_types: Option<Vec<String>>,
    /// Deliver only this keyspace's events (required for a keyspace-restricted root key).
    pub keyspace_id: Option<String>,
    /// At most 500 characters without control characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// `http(s)://…`, at most 2048 characters, no credentials; a public address unless
    /// the server allows private targets.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    /// Replaces the event types: 1-16 (`["*"]` for every type).
    #[schema(min_items = 1, max_items = 16)]
    pub event_types: Option<Vec<String>>,
    /// At most 500 characters without control characters; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    /// A disabled webhook gets no new deliveries, and those waiting are paused.
    pub enabled: Option<bool>,
}

fn validate_event_types(types: Option<Vec<String>>) -> Result<Vec<String>> {
    let mut types = types.unwrap_or_else(|| vec!["*".to_owned()]);
    if types.is_empty() || types.len() > MAX_EVENT_TYPES {
        return Err(ServiceError::invalid(format!(
            "event_types must list 1 to {MAX_EVENT_TYPES} types"
        )));
    }
    if let Some(bad) = types
        .iter()
        .find(|t| *t != "*" && !EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(ServiceError::invalid(format!(
            "unknown event type `{}`; known types: *, {}",
            bad.chars().take(64).collect::<String>(),
            EVENT_TYPES.join(", ")
        )));
    }
    types.sort_unstable();
    types.dedup();
    Ok(types)
}

fn validate_description(d: Option<&str>) -> Result<()> {
    match d {
        Some(d) if d.chars().count() > 500 || d.chars().any(char::is_control) => {
            Err(ServiceError::invalid(
                "description must be at most 500 characters without control characters",
            ))
        }
        _ => Ok(()),
    }
}

fn validate_url(service: &Service, url: &str) -> Result<()> {
    target::validate(url, service.config.webhook_allow_private_targets)
        .map(|_| ())
        .map_err(ServiceError::invalid)
}

fn sees(actor: &Actor, hook: &Webhook) -> bool {
    match &hook.keyspace_id {
        Some(ks) => actor.sees_keyspace(ks),
        None => !actor.is_restricted(),
    }
}

/// A webhook the actor may manage, or `NotFound` (exactly like a missing one).
pub async fn find(service: &Service, actor: &Actor, id: &str) -> Result<Webhook> {
    actor.require_all_owners("webhooks:read")?;
    if !ids::is_plausible("wh", id) {
        return Err(ServiceError::NotFound);
    }
    match service.store.webhook(id).await? {
        Some(h) if sees(actor, &h) => Ok(h),
        _ => Err(ServiceError::NotFound),
    }
}

/// A page of the webhooks the actor may manage.
#[tracing::instrument(skip_all)]
pub async fn list(service: &Service, actor: &Actor, page: PageRequest) -> Result<Page<Webhook>> {
    actor.require_all_owners("webhooks:read")?;
    service
        .store
        .list_webhooks(actor.visible(), page)
        .await
        .map_err(ServiceError::from)
}

/// The fields an audit event records (never the secret).
fn fields(h: &Webhook) -> [(&'static str, Value); 5] {
    [
        ("url", json!(h.url)),
        ("event_types", json!(h.event_types)),
        ("keyspace_id", json!(h.keyspace_id)),
        ("description", json!(h.description)),
        ("enabled", json!(h.enabled)),
    ]
}

/// Creates a webhook with a fresh signing secret. `render` shapes the answer from the
/// webhook and its secret (the only time the secret leaves the service); that
/// rendering is stored sealed with the change for `idem`'s replays.
#[tracing::instrument(skip_all)]
pub async fn create(
    service: &Service,
    actor: &Actor,
    input: CreateWebhook,
    idem: &Idempotent<'_>,
    render: impl FnOnce(&Webhook, &SecretString) -> Result<Rendered>,
) -> Result<Done> {
    actor.require_all_owners("webhooks:write")?;
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    validate_url(service, &input.url)?;
    validate_description(input.description.as_deref())?;
    let event_types = validate_event_types(input.event_types)?;
    match &input.keyspace_id {
        Some(ks) => {
            keyspaces::find(service, actor, ks)
                .await
                .map_err(|_| ServiceError::invalid("keyspace_id names no keyspace"))?;
        }
        None if actor.is_restricted() => {
            return Err(ServiceError::invalid(
                "a keyspace-restricted root key must give keyspace_id",
            ));
        }
        None => {}
    }
    let secret = signing::new_secret()?;
    let sealed_secret = idempotency::seal_for(
        SECRET_PURPOSE,
        &service.peppers,
        secret.expose_secret().as_bytes(),
    )?;
    let now = service.clock.now();
    let hook = Webhook {
        id: ids::new_id("wh")?,
        url: input.url,
        description: input.description,
        event_types,
        keyspace_id: input.keyspace_id,
        enabled: input.enabled.unwrap_or(true),
        sealed_secret,
        created_at: now,
        updated_at: now,
    };
    let answer = render(&hook, &secret)?;
    drop(secret);
    let event = audit::event(
        actor,
        "webhook.create",
        ("webhook", &hook.id),
        hook.keyspace_id.as_deref(),
        audit::created(&fields(&hook)),
        now,
    )?;
    idem.commit(answer, &event, now, async |change| {
        service.store.create_webhook(&hook, change).await
    })
    .await
}

/// Updates a webhook's target, event types, description or state; returns it as
/// stored.
#[tracing::instrument(skip_all)]
pub async fn update(
    service: &Service,
    actor: &Actor,
    id: &str,
    input: UpdateWebhook,
) -> Result<Webhook> {
    let before = find(service, actor, id).await?;
    let mut after = before.clone();
    if let Some(url) = input.url {
        validate_url(service, &url)?;
        after.url = url;
    }
    if let Some(types) = input.event_types {
        after.event_types = validate_event_types(Some(types))?;
    }
    if let Some(description) = input.description {
        validate_description(description.as_deref())?;
        after.description = description;
    }
    if let Some(enabled) = input.enabled {
        after.enabled = enabled;
    }
    let now = service.clock.now();
    after.updated_at = now;
    let changes: Vec<(&str, Value, Value)> = fields(&before)
        .into_iter()
        .zip(fields(&after))
        .map(|((name, from), (_, to))| (name, from, to))
        .collect();
    let event = audit::event(
        actor,
        "webhook.update",
        ("webhook", id),
        after.keyspace_id.as_deref(),
        audit::diff(&changes),
        now,
    )?;
    service
        .store
        .update_webhook(&after, Change::audited(&event))
        .await?;
    Ok(after)
}

/// Deletes a webhook.
#[tracing::instrument(skip_all)]
pub async fn delete(service: &Service, actor: &Actor, id: &str) -> Result<()> {
    let hook = find(service, actor, id).await?;
    let event = audit::event(
        actor,
        "webhook.delete",
        ("webhook", id),
        hook.keyspace_id.as_deref(),
        audit::created(&[("url", json!(hook.url))]),
        service.clock.now(),
    )?;
    service
        .store
        .delete_webhook(id, Change::audited(&event))
        .await
        .map_err(ServiceError::from)
}
