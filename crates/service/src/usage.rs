//! Usage counters kept in memory on the verify path and written to the store in batches:
//! per key, per minute, per outcome, plus each key's `last_used_at`. A verify never
//! writes to the database; [`UsageRecorder::flush`] runs every `usage_flush_interval`
//! (default 5 s) and once more at shutdown, so a crash loses at most one interval of
//! counts, never a key or an audit event.
//!
//! Outcomes are the verify codes the caller was given, plus [`Outcome::WrongSecret`]:
//! the key's id presented with a wrong secret (the caller was told NOT_FOUND, or
//! RATE_LIMITED once such failures were over budget). Nothing is counted for ids that
//! match no stored key, so hostile input cannot grow the tables.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use keyhaven_core::VerifyCode;
use keyhaven_store::{Store, StoreError, Timestamp, UsageBatch, UsageCount};

/// What one verification of a stored key came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered(VerifyCode),
    WrongSecret,
}

impl Outcome {
    pub const WRONG_SECRET: &str = "WRONG_SECRET";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered(code) => code.as_str(),
            Self::WrongSecret => Self::WRONG_SECRET,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s == Self::WRONG_SECRET {
            return Some(Self::WrongSecret);
        }
        VerifyCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .map(Self::Answered)
    }
}

/// One key's pending usage. A key sees one or two minutes per flush interval, so a
/// short vector beats a map.
#[derive(Debug, Default)]
struct KeyUsage {
    counts: Vec<(i64, Outcome, u64)>,
    last_used: Option<Timestamp>,
}

/// Shards of pending usage: each verification takes one shard's lock (two with root key
/// authentication), so request threads rarely wait on each other.
const SHARDS: usize = 16;

#[derive(Debug, Default)]
pub struct UsageRecorder {
    // Keyed by key id: looking up an existing key allocates nothing.
    shards: [Mutex<HashMap<String, KeyUsage>>; SHARDS],
}

fn lock(shard: &Mutex<HashMap<String, KeyUsage>>) -> MutexGuard<'_, HashMap<String, KeyUsage>> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The shard of a key id: key ids are random, so their last bytes spread evenly.
fn shard_of(key_id: &str) -> usize {
    key_id
        .bytes()
        .rev()
        .take(2)
        .fold(0usize, |h, b| h * 31 + usize::from(b))
        % SHARDS
}

impl UsageRecorder {
    fn pending(&self, key_id: &str) -> MutexGuard<'_, HashMap<String, KeyUsage>> {
        let [first, rest @ ..] = &self.shards;
        lock(rest.get(shard_of(key_id).wrapping_sub(1)).unwrap_or(first))
    }

    /// Counts one verification of a known key. `last_used_at` moves only on success.
    pub fn record(&self, key_id: &str, outcome: Outcome, now: Timestamp) {
        let ts = now.unix_timestamp();
        let minute = ts - ts.rem_euclid(60);
        let mut pending = self.pending(key_id);
        let usage = match pending.get_mut(key_id) {
            Some(usage) => usage,
            None => pending.entry(key_id.to_owned()).or_default(),
        };
        usage.add(minute, outcome, 1);
        if outcome == Outcome::Answered(VerifyCode::Valid)
            && usage.last_used.is_none_or(|t| t < now)
        {
            usage.last_used = Some(now);
        }
    }

    fn take(&self) -> UsageBatch {
        let mut batch = UsageBatch::default();
        let pending = self
            .shards
            .iter()
            .flat_map(|s| std::mem::take(&mut *lock(s)));
        for (key_id, usage) in pending {
            for (minute, outcome, count) in usage.counts {
                batch.counts.push(UsageCount {
                    key_id: key_id.clone(),
                    minute,
                    outcome: outcome.as_str().to_owned(),
                    count,
                });
            }
            if let Some(at) = usage.last_used {
                batch.last_used.push((key_id, at));
            }
        }
        batch
    }

    fn put_back(&self, batch: UsageBatch) {
        for c in batch.counts {
            if let Some(outcome) = Outcome::parse(&c.outcome) {
                self.pending(&c.key_id)
                    .entry(c.key_id)
                    .or_default()
                    .add(c.minute, outcome, c.count);
            }
        }
        for (key_id, at) in batch.last_used {
            let mut pending = self.pending(&key_id);
            let usage = pending.entry(key_id).or_default();
            if usage.last_used.is_none_or(|t| t < at) {
                usage.last_used = Some(at);
            }
        }
    }

    /// Writes what accumulated since the last flush. On failure the counts are kept for
    /// the next attempt.
    pub async fn flush(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let batch = self.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let rows = batch.counts.len();
        match store.record_usage(&batch).await {
            Ok(()) => Ok(rows),
            Err(e) => {
                self.put_back(batch);
                Err(e)
            }
        }
    }
}

impl KeyUsage {
    fn add(&mut self, minute: i64, outcome: Outcome, n: u64) {
        match self
            .counts
            .iter_mut()
            .find(|(m, o, _)| *m == minute && *o == outcome)
        {
            Some((_, _, count)) => *count += n,
            None => self.counts.push((minute, outcome, n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn counts_by_minute_and_outcome_and_keeps_the_newest_use() {
        let r = UsageRecorder::default();
        let t0 = datetime!(2026-11-22 10:00:05 UTC);
        let valid = Outcome::Answered(VerifyCode::Valid);
        r.record("k1", valid, t0);
        r.record("k1", valid, t0 + time::Duration::seconds(30));
        r.record(
            "k1",
            Outcome::Answered(VerifyCode::Revoked),
            t0 + time::Duration::seconds(70),
        );
        r.record("k2", Outcome::Answered(VerifyCode::Expired), t0);
        r.record("k2", Outcome::WrongSecret, t0);
        let mut batch = r.take();
        batch.counts.sort_by(|a, b| {
            (&a.key_id, a.minute, &a.outcome).cmp(&(&b.key_id, b.minute, &b.outcome))
        });
        let rows: Vec<_> = batch
            .counts
            .iter()
            .map(|c| {
                (
                    c.key_id.as_str(),
                    c.minute - t0.unix_timestamp() + 5,
                    c.outcome.as_str(),
                    c.count,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("k1", 0, "VALID", 2),
                ("k1", 60, "REVOKED", 1),
                ("k2", 0, "EXPIRED", 1),
                ("k2", 0, "WRONG_SECRET", 1)
            ]
        );
        assert_eq!(
            batch.last_used,
            vec![("k1".to_owned(), t0 + time::Duration::seconds(30))]
        );
        assert!(r.take().is_empty());
        r.put_back(batch.clone());
        let mut again = r.take();
        again.counts.sort_by(|a, b| {
            (&a.key_id, a.minute, &a.outcome).cmp(&(&b.key_id, b.minute, &b.outcome))
        });
        assert_eq!(again, batch);
    }
}
