//! Change streams opened by root keys (`GET /v1/changes`): who may follow, what a
//! follower sees, and when its stream must end. The hub itself is [`crate::changes`],
//! which knows nothing of root keys.

use std::sync::Arc;
use std::time::Duration;

use keyhaven_core::VerifyCode;
use keyhaven_store::{ROOT_KEYSPACE_ID, Timestamp};

use crate::actor::{Actor, Scope};
use crate::cache::VerifyRecord;
use crate::changes::{Follower, Standing, Subscribe, SubscribeError, Subscription};
use crate::service::Service;
use crate::verify::key_state_code;

/// Opens a change stream for `actor`, a root key with `keys:verify`, resuming after
/// `cursor` when given; `Ok(None)` when [`MAX_STREAMS`](crate::changes::MAX_STREAMS) are
/// open. Heartbeats every quarter of `cache_coherence_ms`, only while this node's change
/// feed (several nodes) confirmed itself within half of it; a root key limited to
/// keyspaces gets `all` in place of other keys' ids; the stream ends once the actor's
/// own root key stops working (a change it no longer passes, or its expiry).
pub fn subscribe(
    service: &Service,
    actor: &Actor,
    cursor: Option<&str>,
) -> crate::Result<Option<Subscription>> {
    actor.require(Scope::KeysVerify)?;
    let coherence = service.config.cache_coherence();
    let node = service.clone();
    let how = Subscribe {
        cursor,
        heartbeat: coherence / 4,
        vouch: Box::new(move || node.cache.feed_confirmed_within(coherence / 2) != Some(false)),
        hide_key_ids: actor.is_restricted(),
        follower: actor
            .root_key_record()
            .map(|granted| follower(service, granted)),
    };
    match service.cache.changes().subscribe(how) {
        Ok(stream) => Ok(Some(stream)),
        Err(SubscribeError::Busy) => Ok(None),
        Err(e @ SubscribeError::MalformedCursor) => Err(crate::ServiceError::bad_request(
            "invalid_cursor",
            e.to_string(),
        )),
    }
}

/// A change stream's follower: `granted`, the root key that opened it, which ends the
/// stream once it no longer verifies VALID or its scopes or keyspaces changed (read from
/// the store, not the cache: the cache may be refilling it at that moment; a failed read
/// ends the stream too, and the follower authenticates again), and at its expiry or the
/// end of its rotation's grace period.
fn follower(service: &Service, granted: &Arc<VerifyRecord>) -> Follower {
    let until = works_until(service, granted, service.clock.now());
    let (service, granted) = (service.clone(), Arc::clone(granted));
    Follower {
        key_id: granted.key_id().to_owned(),
        until,
        every: service.config.cache_ttl(),
        still_allowed: Box::new(move || {
            let (service, granted) = (service.clone(), Arc::clone(&granted));
            Box::pin(async move {
                let current = match service.store.key_for_verify(granted.key_id()).await {
                    Ok(Some(current)) => Arc::new(VerifyRecord::of(current)),
                    Ok(None) => return Standing::Ended,
                    Err(e) => {
                        tracing::warn!(error = %e, "re-reading a change stream's root key failed; ending the stream");
                        return Standing::Ended;
                    }
                };
                let unchanged = current.scopes() == granted.scopes()
                    && current.allowed_keyspaces() == granted.allowed_keyspaces()
                    && current.keyspace_id() == ROOT_KEYSPACE_ID;
                let now = service.clock.now();
                let until = works_until(&service, &current, now);
                let too_old = crate::verify::root_key_deadline(&service, current.created_at())
                    .is_some_and(|end| end <= now);
                if unchanged && !too_old && key_state_code(current, now) == VerifyCode::Valid {
                    Standing::Works { until }
                } else {
                    Standing::Ended
                }
            })
        }),
    }
}

/// How long from `now` a key keeps working by itself: until the earliest of its expiry,
/// the end of its rotation's grace period and the deployment's maximum root key age;
/// `None` for good.
fn works_until(service: &Service, key: &VerifyRecord, now: Timestamp) -> Option<Duration> {
    [
        key.effective_expiry(),
        key.rotation().map(|r| r.grace_until),
        crate::verify::root_key_deadline(service, key.created_at()),
    ]
    .into_iter()
    .flatten()
    .min()
    .map(|at| Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}
