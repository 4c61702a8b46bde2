//! Credits: a key's or an owner's quota counter changed through the API
//! (`POST /v1/keys/{key_id}/credits`, `POST /v1/owners/{id}/credits`): set to an amount,
//! or raised or lowered by one. Each change is one database transaction holding the row,
//! so changes through any number of nodes all count and a decrement never takes the
//! counter below zero (it is refused, taking nothing). Verifications then spend from the
//! new counter: at once on this node, and on the others as they follow any stored quota
//! change (the cache-coherence bound), keeping their own uses not yet written.
//!
//! Audited (`key.credits`, `owner.credits`, with `remaining: {from, to}`) and idempotent:
//! a retried refund with the same `Idempotency-Key` is answered, not applied, again.

use keyhaven_store::{CreditOp, QuotaTarget, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::idempotency::{Done, Idempotent, Rendered};
use crate::limits::spec::MAX_QUOTA;
use crate::service::Service;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeCredits {
    /// `set` the credits to `amount`, or `increment` or `decrement` them by it.
    pub op: CreditOpName,
    /// 0 to 2^50 (1125899906842624).
    #[schema(maximum = 1125899906842624_u64)]
    pub amount: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CreditOpName {
    Set,
    Increment,
    Decrement,
}

/// Whose credits change.
#[derive(Debug, Clone, Copy)]
pub enum CreditsOf<'a> {
    Key(&'a str),
    Owner(&'a str),
}

/// Applies `input` to the credits of `of`. `render` shapes the answer from the credits
/// left after the change; it is stored with the change for `idem`'s replays.
#[tracing::instrument(skip_all)]
pub async fn change(
    service: &Service,
    actor: &Actor,
    of: CreditsOf<'_>,
    input: ChangeCredits,
    idem: &Idempotent<'_>,
    render: impl Fn(u64) -> Result<Rendered> + Send + Sync + 'static,
) -> Result<Done> {
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    if input.amount > MAX_QUOTA {
        return Err(ServiceError::invalid(format!(
            "amount must be at most {MAX_QUOTA}"
        )));
    }
    let (target, keyspace_id) = match of {
        CreditsOf::Key(key_id) => {
            let found = crate::keys::find(service, actor, key_id).await?;
            // A customer in the portal never tops up its own keys.
            if actor.owner().is_some() {
                return Err(ServiceError::MissingScope("keys:write"));
            }
            let keyspace = found.key.keyspace_id.clone();
            (QuotaTarget::Key(found.key.key_id), Some(keyspace))
        }
        CreditsOf::Owner(id) => {
            let owner = crate::owners::find(service, actor, id).await?;
            (QuotaTarget::Owner(owner.id), None)
        }
    };
    let (kind, id) = match &target {
        QuotaTarget::Key(id) => ("key", id.clone()),
        QuotaTarget::Owner(id) => ("owner", id.clone()),
    };
    let op = match input.op {
        CreditOpName::Set => CreditOp::Set(input.amount),
        CreditOpName::Increment => CreditOp::Increment(input.amount),
        CreditOpName::Decrement => CreditOp::Decrement(input.amount),
    };
    let now = service.clock.now();
    let event = audit::event(
        actor,
        &format!("{kind}.credits"),
        (kind, &id),
        keyspace_id.as_deref(),
        audit::created(&[("op", json!(input.op)), ("amount", json!(input.amount))]),
        now,
    )?;
    // Stored beside the change: rendered from what the transaction computed.
    let render = std::sync::Arc::new(render);
    let answer = {
        let (render, recorder) = (render.clone(), idem.recorder(now));
        move |remaining: u64| -> Result<Option<_>, StoreError> {
            let unexpected = |e: ServiceError| StoreError::Unexpected(anyhow::anyhow!("{e}"));
            recorder
                .record(&render(remaining).map_err(unexpected)?)
                .map_err(unexpected)
        }
    };
    // On a task of its own, so a caller cut off after the commit still updates this
    // node's counter and cache.
    let task = {
        let service = service.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let store = service.store.as_ref();
            let write = async {
                store
                    .change_credits(&target, op, MAX_QUOTA, now, &event, &answer)
                    .await
                    .map(|c| c.quota)
            };
            let result = (service.limits.quotas)
                .change_stored(store, &target, write)
                .await;
            match &target {
                QuotaTarget::Key(id) => service.cache.invalidate(id),
                QuotaTarget::Owner(_) => service.cache.invalidate_all(),
            }
            result
        })
    };
    let result = task
        .await
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("a credits change task failed: {e}")));
    match result.and_then(|r| r) {
        Ok(quota) => Ok(Done::Fresh(render(quota.remaining)?)),
        Err(e) => idem.recover(e).await,
    }
}
