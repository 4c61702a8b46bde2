//! Quota counters on this node. The first use of a key's (or owner's) quota loads its
//! stored counter; from then on this node decides from memory and writes the uses to the
//! store in batches (every `quota_flush_interval_ms`, and at shutdown), subtracting them
//! rather than overwriting, so a concurrent top-up or another writer is never lost.
//!
//! What a crash can lose is the uses not yet written: at most one flush interval's worth
//! (those uses are then given back to the key). With `quota_flush_interval_ms = 0` a
//! verification that used a quota answers only after its use is in the database
//! (concurrent verifications share one write), so an acknowledged use is never lost.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use keyhaven_core::quota::{self, QuotaState, Refill};
use keyhaven_store::{Quota, QuotaTarget, QuotaUse, Store, StoreError, from_unix};

#[derive(Debug, Clone, Copy)]
struct Cell {
    state: QuotaState,
    refill: Option<Refill>,
    /// The `refilled_at` of the stored quota this counter follows (raised by its own
    /// refills). A stored quota set later (a top-up through any node) has a newer one and
    /// replaces the counter.
    origin: i64,
    /// Uses since the last write (negative after a refund of uses already written).
    used: i64,
    /// A refill since the last write: (boundary, amount).
    refilled: Option<(i64, u64)>,
}

#[derive(Debug, Default)]
struct Counters {
    cells: HashMap<QuotaTarget, Cell>,
    /// Sequence number of the latest use (each use takes the next).
    last_use: u64,
    /// Every use up to this sequence number is in the database.
    durable: u64,
}

#[derive(Debug, Default)]
pub struct Quotas {
    counters: Mutex<Counters>,
    /// One write at a time; top-ups hold it across their own write.
    writer: tokio::sync::Mutex<()>,
}

/// One quota a verification draws from, with its stored form (used on first sight).
#[derive(Debug, Clone, Copy)]
pub struct QuotaRequest<'a> {
    pub target: &'a QuotaTarget,
    pub stored: &'a Quota,
    pub cost: u64,
}

/// Locked counters during a decision.
#[derive(Debug)]
pub struct LockedQuotas<'a>(MutexGuard<'a, Counters>);

impl Quotas {
    pub fn lock(&self) -> LockedQuotas<'_> {
        LockedQuotas(self.counters.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The counter as this node knows it, if it has used it.
    pub fn current(&self, target: &QuotaTarget) -> Option<QuotaState> {
        self.lock().0.cells.get(target).map(|c| c.state)
    }

    /// After `target`'s stored quota was set to `quota` (or removed): this node counts
    /// from the new value at once, whatever verifications still in flight read before.
    /// Uses this node admitted while the new value was being written (pending since the
    /// flush before the write) are kept: still to be written, and taken from it.
    fn set(&self, target: &QuotaTarget, quota: Option<&Quota>) {
        let mut c = self.lock();
        match quota {
            Some(q) => {
                let mut cell = Cell::from_stored(q);
                if let Some(old) = c.0.cells.get(target) {
                    cell.used = old.used;
                    cell.state.remaining =
                        (cell.state.remaining).saturating_sub(u64::try_from(old.used).unwrap_or(0));
                }
                c.0.cells.insert(target.clone(), cell);
            }
            None => {
                c.0.cells.remove(target);
            }
        }
    }

    /// Gives back what `decision` took (a call the shared rate limits then refused),
    /// unless the counter was refilled or set since.
    pub fn refund(&self, requests: &[QuotaRequest<'_>], decision: &QuotaDecision) {
        if decision.seq.is_none() {
            return;
        }
        let mut c = self.lock();
        for (r, taken_at) in requests.iter().zip(&decision.refilled_at) {
            if let Some(cell) = c.0.cells.get_mut(r.target)
                && cell.state.refilled_at == *taken_at
            {
                cell.state.remaining = cell.state.remaining.saturating_add(r.cost);
                cell.used -= i64::try_from(r.cost).unwrap_or(0);
            }
        }
    }

    /// Writes pending uses. On failure they stay pending for the next attempt.
    pub async fn flush(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let _writer = self.writer.lock().await;
        self.flush_locked(store).await
    }

    async fn flush_locked(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let (uses, upto) = {
            let mut c = self.lock();
            let upto = c.0.last_use;
            let uses: Vec<QuotaUse> =
                c.0.cells
                    .iter_mut()
                    .filter(|(_, cell)| cell.used != 0 || cell.refilled.is_some())
                    .map(|(target, cell)| {
                        let u = QuotaUse {
                            target: target.clone(),
                            used: cell.used,
                            refilled: cell.refilled.map(|(at, amount)| (from_unix(at), amount)),
                        };
                        cell.used = 0;
                        cell.refilled = None;
                        u
                    })
                    .collect();
            (uses, upto)
        };
        if uses.is_empty() {
            self.lock().0.durable = upto;
            return Ok(0);
        }
        match store.record_quota_use(&uses).await {
            Ok(()) => {
                let mut c = self.lock();
                c.0.durable = c.0.durable.max(upto);
                Ok(uses.len())
            }
            Err(e) => {
                let mut c = self.lock();
                for u in uses {
                    // After a newer refill the failed uses no longer count.
                    if let Some(cell) = c.0.cells.get_mut(&u.target)
                        && cell.refilled.is_none()
                    {
                        cell.used += u.used;
                        cell.refilled = u.refilled.map(|(at, n)| (at.unix_timestamp(), n));
                    }
                }
                Err(e)
            }
        }
    }

    /// Returns once the use numbered `seq` is in the database, writing it (and whatever
    /// else is pending) if no other write already did.
    pub async fn wait_durable(&self, store: &dyn Store, seq: u64) -> Result<(), StoreError> {
        loop {
            if self.lock().0.durable >= seq {
                return Ok(());
            }
            let _writer = self.writer.lock().await;
            if self.lock().0.durable >= seq {
                return Ok(());
            }
            self.flush_locked(store).await?;
        }
    }

    /// Sets a stored quota through `write` (the store update that carries it): uses
    /// counted so far are written first (so they are not taken from the new value), no
    /// flush runs meanwhile, and once `write` succeeded this node counts from `quota`.
    pub async fn replace(
        &self,
        store: &dyn Store,
        target: &QuotaTarget,
        quota: Option<&Quota>,
        write: impl std::future::Future<Output = Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        self.flush_locked(store).await?;
        write.await?;
        self.set(target, quota);
        Ok(())
    }

    /// Changes `target`'s stored counter through `write` (a credits change, which
    /// returns the quota as stored): as [`Self::replace`], this node's uses are written
    /// first and it counts from the stored result at once.
    pub async fn change_stored(
        &self,
        store: &dyn Store,
        target: &QuotaTarget,
        write: impl std::future::Future<Output = Result<Quota, StoreError>>,
    ) -> Result<Quota, StoreError> {
        let _writer = self.writer.lock().await;
        self.flush_locked(store).await?;
        let quota = write.await?;
        self.set(target, Some(&quota));
        Ok(quota)
    }
}

impl LockedQuotas<'_> {
    /// Decides `requests` at `now` (Unix seconds). Nothing is taken unless all can pay
    /// and `commit` is set; then the remaining uses are those after this call, and the
    /// use's sequence number is returned too. Otherwise the remaining uses are those that
    /// stand (for a denial: of the quota that could not pay).
    pub fn decide(
        &mut self,
        requests: &[QuotaRequest<'_>],
        now: i64,
        commit: bool,
    ) -> QuotaDecision {
        let mut remaining = Vec::with_capacity(requests.len());
        let mut next = Vec::with_capacity(requests.len());
        let mut refilled_at = Vec::with_capacity(requests.len());
        for r in requests {
            let stored_at = r.stored.refilled_at.unix_timestamp();
            let cell = match self.0.cells.get(r.target) {
                // The refill rule is the record's: a plan's can change without the
                // counter being set.
                Some(cell) if cell.origin >= stored_at => Cell {
                    refill: r.stored.refill,
                    ..*cell
                },
                // Set since (through another node): follow the store, keeping the uses
                // not yet written (they are still to be subtracted there too).
                Some(old) => {
                    let mut cell = Cell::from_stored(r.stored);
                    cell.used = old.used;
                    cell.state.remaining = cell
                        .state
                        .remaining
                        .saturating_sub(u64::try_from(old.used).unwrap_or(0));
                    cell
                }
                None => Cell::from_stored(r.stored),
            };
            let now_state = quota::current(cell.state, cell.refill, now);
            match quota::take(now_state, r.cost) {
                Some(after) => {
                    // Without a commit nothing is taken: report what stands.
                    remaining.push(if commit {
                        after.remaining
                    } else {
                        now_state.remaining
                    });
                    refilled_at.push(after.refilled_at);
                    next.push((r, cell, now_state, after));
                }
                None => {
                    return QuotaDecision {
                        admitted: false,
                        remaining: vec![now_state.remaining],
                        seq: None,
                        refilled_at: Vec::new(),
                    };
                }
            }
        }
        let mut seq = None;
        if commit {
            for (r, mut cell, now_state, after) in next {
                if now_state.refilled_at != cell.state.refilled_at {
                    cell.refilled = Some((now_state.refilled_at, now_state.remaining));
                    cell.used = 0;
                    cell.origin = cell.origin.max(now_state.refilled_at);
                }
                cell.used += i64::try_from(r.cost).unwrap_or(i64::MAX);
                cell.state = after;
                self.0.cells.insert(r.target.clone(), cell);
            }
            if !requests.is_empty() {
                self.0.last_use += 1;
                seq = Some(self.0.last_use);
            }
        }
        QuotaDecision {
            admitted: true,
            remaining,
            seq,
            refilled_at,
        }
    }
}

impl Cell {
    fn from_stored(q: &Quota) -> Self {
        Self {
            state: q.state(),
            refill: q.refill,
            origin: q.refilled_at.unix_timestamp(),
            used: 0,
            refilled: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaDecision {
    pub admitted: bool,
    /// Remaining uses after the decision, per request (for a denial: the one that could
    /// not pay).
    pub remaining: Vec<u64>,
    /// The use's sequence number, when one was taken.
    pub seq: Option<u64>,
    /// Each counter's refill time after the decision (for a refund).
    pub refilled_at: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use keyhaven_store::from_unix;

    use super::*;

    fn stored(remaining: u64, at: i64) -> Quota {
        Quota {
            remaining,
            refill: None,
            refilled_at: from_unix(at),
            from_plan: false,
        }
    }

    #[test]
    fn a_quota_set_here_keeps_the_uses_admitted_while_it_was_written() {
        let q = Quotas::default();
        let target = QuotaTarget::Key("k".into());
        let old = stored(10, 100);
        let request = [QuotaRequest {
            target: &target,
            stored: &old,
            cost: 3,
        }];
        assert_eq!(q.lock().decide(&request, 200, true).remaining, vec![7]);
        // The credits change (or top-up) wrote 100 meanwhile: the 3 uses, not yet
        // written, still count against it and are still to be written.
        q.set(&target, Some(&stored(100, 201)));
        assert_eq!(q.current(&target).map(|s| s.remaining), Some(97));
        assert_eq!(q.lock().0.cells.get(&target).map(|c| c.used), Some(3));
    }

    #[test]
    fn a_newer_stored_quota_replaces_the_counter_keeping_unwritten_uses() {
        let q = Quotas::default();
        let target = QuotaTarget::Key("k".into());
        let old = stored(10, 100);
        let take = |s: &Quota, cost| {
            q.lock().decide(
                &[QuotaRequest {
                    target: &target,
                    stored: s,
                    cost,
                }],
                200,
                true,
            )
        };
        assert_eq!(take(&old, 3).remaining, vec![7]);
        // A stale record (same set time) does not reset the counter.
        assert_eq!(take(&old, 1).remaining, vec![6]);
        // A top-up to 20 made elsewhere: the 4 unwritten uses still count against it.
        let topped = stored(20, 150);
        let d = take(&topped, 1);
        assert_eq!(d.remaining, vec![15]);
        q.refund(
            &[QuotaRequest {
                target: &target,
                stored: &topped,
                cost: 1,
            }],
            &d,
        );
        assert_eq!(q.current(&target).map(|s| s.remaining), Some(16));
        let c = q.lock();
        assert_eq!(c.0.cells.get(&target).map(|c| c.used), Some(4));
    }
}
