//! Creating many keys at once (`POST /v1/keys/batch`): each checked and made exactly as
//! [`create`](super::create) makes one, then stored together in one transaction, so a
//! batch lands whole or not at all, with an audit event per key.

use keyhaven_store::KeyRecord;

use super::create::{CreateKey, NewKey, creation_event, prepare};
use super::lookups::Lookups;
use crate::actor::Actor;
use crate::error::{Result, ServiceError};
use crate::idempotency::{Done, Idempotent, Rendered};
use crate::service::Service;

/// Most keys in one [`create_batch`].
pub const MAX_CREATE_BATCH: usize = 1000;

/// Creates every key of `inputs` (1 to [`MAX_CREATE_BATCH`]), each as
/// [`create`](super::create) would, in one transaction: all of them, or none. An item
/// that cannot be made refuses the whole batch, naming it (`keys[3]: …`), before anything
/// is stored. `render` shapes the answer (the keys in order, their plaintexts shown this
/// once), stored sealed with the change for `idem`'s replays.
#[tracing::instrument(skip_all, fields(keys = inputs.len()))]
pub async fn create_batch(
    service: &Service,
    actor: &Actor,
    inputs: Vec<CreateKey>,
    idem: &Idempotent<'_>,
    render: impl FnOnce(&[NewKey]) -> Result<Rendered>,
) -> Result<Done> {
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    if inputs.is_empty() || inputs.len() > MAX_CREATE_BATCH {
        return Err(ServiceError::invalid(format!(
            "keys: 1 to {MAX_CREATE_BATCH} keys, not {}",
            inputs.len()
        )));
    }
    let now = service.clock.now();
    let mut lookups = Lookups::default();
    let mut made = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let new = prepare(service, actor, input, now, &mut lookups).await;
        made.push(new.map_err(|e| e.at_item("keys", i))?);
    }
    let answer = render(&made)?;
    let events = made
        .iter()
        .map(|new| creation_event(actor, &new.key, now))
        .collect::<Result<Vec<_>>>()?;
    let keys: Vec<KeyRecord> = made.iter().map(|new| new.key.clone()).collect();
    drop(made);
    let saved = idem.record(&answer, now)?;
    let result = service
        .store
        .create_keys(&keys, &events, saved.as_ref())
        .await;
    if result.is_ok() {
        for key in &keys {
            service.cache.invalidate(&key.key_id);
        }
    }
    idem.finish(result, answer).await
}
