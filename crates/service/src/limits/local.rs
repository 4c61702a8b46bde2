//! Rate-limit state in this process: one TAT per bucket, in shards so that verifications
//! of different keys rarely touch the same lock. A decision over several buckets locks
//! their shards in ascending order (no deadlock), decides every bucket, and commits
//! only if all admit: a denied request consumes nothing anywhere.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use keyhaven_core::ratelimit::{Gcra, Outcome};

const SHARDS: usize = 64;

type Shard = HashMap<String, i64>;

#[derive(Debug)]
pub struct LocalBuckets {
    shards: Vec<Mutex<Shard>>,
}

/// One bucket of a decision: its id, its limit and the cost to take from it.
#[derive(Debug, Clone)]
pub struct BucketRequest<'a> {
    pub id: &'a str,
    pub limit: Gcra,
    pub cost: u64,
}

impl Default for LocalBuckets {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

/// Locked shards, by index, in ascending order.
#[derive(Debug)]
pub struct Locked<'a> {
    guards: Vec<(usize, MutexGuard<'a, Shard>)>,
    owner: &'a LocalBuckets,
}

impl LocalBuckets {
    /// The shard of a bucket: FNV-1a, cheap and good enough to spread locks (which
    /// shard a bucket lands in never changes a decision; the maps inside use the
    /// standard, flood-resistant hasher).
    fn shard_of(&self, id: &str) -> usize {
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        usize::try_from(h % SHARDS as u64).unwrap_or(0)
    }

    /// Locks the shards that hold `ids`, in ascending order.
    pub fn lock<'a>(&'a self, ids: impl Iterator<Item = &'a str>) -> Locked<'a> {
        let mut idx: Vec<usize> = ids.map(|id| self.shard_of(id)).collect();
        idx.sort_unstable();
        idx.dedup();
        let guards = idx
            .into_iter()
            .filter_map(|i| {
                self.shards
                    .get(i)
                    .map(|m| (i, m.lock().unwrap_or_else(|p| p.into_inner())))
            })
            .collect();
        Locked {
            guards,
            owner: self,
        }
    }

    /// Decides `requests` all-or-nothing at `now` (µs). Outcomes in request order.
    pub fn decide(&self, requests: &[BucketRequest<'_>], now: i64) -> Vec<Outcome> {
        let mut locked = self.lock(requests.iter().map(|r| r.id));
        locked.decide(requests, now, true)
    }

    /// Forgets buckets that are full again (a missing bucket is a full one).
    pub fn sweep(&self, now: i64) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, tat| *tat > now);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Locked<'_> {
    fn shard(&mut self, i: usize) -> Option<&mut Shard> {
        self.guards
            .iter_mut()
            .find(|(j, _)| *j == i)
            .map(|(_, g)| &mut **g)
    }

    /// Decides every request against the locked state; commits them all when all admit
    /// and `commit` is set.
    pub fn decide(
        &mut self,
        requests: &[BucketRequest<'_>],
        now: i64,
        commit: bool,
    ) -> Vec<Outcome> {
        let outcomes: Vec<Outcome> = requests
            .iter()
            .map(|r| {
                let shard = self.owner.shard_of(r.id);
                let tat = self.shard(shard).and_then(|s| s.get(r.id).copied());
                r.limit.admit(tat, now, r.cost)
            })
            .collect();
        if commit && outcomes.iter().all(|o| o.admitted) {
            self.commit(requests, &outcomes);
        }
        outcomes
    }

    /// Stores the outcomes' states (only after every one admitted).
    pub fn commit(&mut self, requests: &[BucketRequest<'_>], outcomes: &[Outcome]) {
        for (r, o) in requests.iter().zip(outcomes) {
            if r.cost == 0 {
                continue;
            }
            let shard = self.owner.shard_of(r.id);
            if let Some(shard) = self.shard(shard) {
                match shard.get_mut(r.id) {
                    Some(tat) => *tat = o.tat,
                    None => {
                        shard.insert(r.id.to_owned(), o.tat);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, limit: u64) -> BucketRequest<'_> {
        BucketRequest {
            id,
            limit: Gcra {
                limit,
                period_ms: 60_000,
                burst: limit,
            },
            cost: 1,
        }
    }

    #[test]
    fn a_denial_by_one_bucket_takes_nothing_from_the_others() {
        let b = LocalBuckets::default();
        let both = [req("k:a:requests", 10), req("o:x:requests", 2)];
        assert!(b.decide(&both, 0).iter().all(|o| o.admitted));
        assert!(b.decide(&both, 0).iter().all(|o| o.admitted));
        let third = b.decide(&both, 0);
        assert!(third[0].admitted && !third[1].admitted);
        // The key's own bucket still has 8: the denied call took none of it.
        assert_eq!(b.decide(&[req("k:a:requests", 10)], 0)[0].remaining, 7);
        b.sweep(60_000_000);
        assert!(b.is_empty(), "full buckets are forgotten");
    }
}
