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
use keyhaven_core::format::KEY_ID_LEN;
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

/// One key's pending usage. A key sees one or two minutes and outcomes per flush
/// interval, so the first count is kept inline and the rest in a vector that is usually
/// never allocated.
#[derive(Debug)]
struct KeyUsage {
    first: Count,
    more: Vec<Count>,
    last_used: Option<Timestamp>,
}

/// Verifications in one minute (unix seconds of its start) with one outcome.
type Count = (i64, Outcome, u64);

/// A key id as the recorder keeps it: a native id inline (a million keys used in one
/// interval must not cost a million small allocations), any other boxed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PendingId {
    Native([u8; KEY_ID_LEN]),
    Other(Box<str>),
}

impl PendingId {
    fn of(key_id: &str) -> Self {
        match <[u8; KEY_ID_LEN]>::try_from(key_id.as_bytes()) {
            Ok(bytes) => Self::Native(bytes),
            Err(_) => Self::Other(key_id.into()),
        }
    }

    fn to_key_id(&self) -> String {
        match self {
            // Native ids are ASCII: they were a `&str` when recorded.
            Self::Native(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Self::Other(id) => id.to_string(),
        }
    }
}

/// Shards of pending usage: each verification takes one shard's lock (two with root key
/// authentication), so request threads rarely wait on each other.
const SHARDS: usize = 16;

type Pending = HashMap<PendingId, KeyUsage>;

#[derive(Debug, Default)]
pub struct UsageRecorder {
    shards: [Mutex<Pending>; SHARDS],
}

fn lock(shard: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
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
    fn pending(&self, key_id: &str) -> MutexGuard<'_, Pending> {
        let [first, rest @ ..] = &self.shards;
        lock(rest.get(shard_of(key_id).wrapping_sub(1)).unwrap_or(first))
    }

    /// Counts one verification of a known key. `last_used_at` moves only on success.
    pub fn record(&self, key_id: &str, outcome: Outcome, now: Timestamp) {
        let ts = now.unix_timestamp();
        let minute = ts - ts.rem_euclid(60);
        let mut pending = self.pending(key_id);
        let usage = pending
            .entry(PendingId::of(key_id))
            .and_modify(|usage| usage.add(minute, outcome, 1))
            .or_insert_with(|| KeyUsage::new((minute, outcome, 1)));
        if outcome == Outcome::Answered(VerifyCode::Valid)
            && usage.last_used.is_none_or(|t| t < now)
        {
            usage.last_used = Some(now);
        }
    }

    /// Moves one shard's pending usage into `batch`.
    fn drain(&self, shard: &Mutex<Pending>, batch: &mut UsageBatch) {
        let pending = std::mem::take(&mut *lock(shard));
        for (id, usage) in pending {
            let key_id = id.to_key_id();
            for (minute, outcome, count) in std::iter::once(usage.first).chain(usage.more) {
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
    }

    #[cfg(test)]
    fn take(&self) -> UsageBatch {
        let mut batch = UsageBatch::default();
        for shard in &self.shards {
            self.drain(shard, &mut batch);
        }
        batch
    }

    fn put_back(&self, batch: UsageBatch) {
        for c in batch.counts {
            if let Some(outcome) = Outcome::parse(&c.outcome) {
                self.pending(&c.key_id)
                    .entry(PendingId::of(&c.key_id))
                    .and_modify(|usage| usage.add(c.minute, outcome, c.count))
                    .or_insert_with(|| KeyUsage::new((c.minute, outcome, c.count)));
            }
        }
        // Every last use comes with a count of the same key (a valid verification), so
        // its entry is there.
        for (key_id, at) in batch.last_used {
            let mut pending = self.pending(&key_id);
            if let Some(usage) = pending.get_mut(&PendingId::of(&key_id))
                && usage.last_used.is_none_or(|t| t < at)
            {
                usage.last_used = Some(at);
            }
        }
    }

    /// Writes what accumulated since the last flush, shard by shard, in transactions of
    /// about [`FLUSH_ROWS`] rows: a busy interval (a million keys used) neither copies
    /// all its counts at once nor holds the database's write lock for one long
    /// transaction. On failure the counts not yet written are kept for the next attempt.
    pub async fn flush(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let mut written = 0;
        let mut batch = UsageBatch::default();
        for (i, shard) in self.shards.iter().enumerate() {
            self.drain(shard, &mut batch);
            let last = i + 1 == SHARDS;
            if batch.is_empty() || (batch.counts.len() < FLUSH_ROWS && !last) {
                continue;
            }
            let rows = batch.counts.len();
            if let Err(e) = store.record_usage(&batch).await {
                self.put_back(batch);
                return Err(e);
            }
            written += rows;
            batch = UsageBatch::default();
        }
        Ok(written)
    }
}

/// Usage rows per flush transaction.
const FLUSH_ROWS: usize = 5_000;

impl KeyUsage {
    fn new(first: Count) -> Self {
        Self {
            first,
            more: Vec::new(),
            last_used: None,
        }
    }

    fn add(&mut self, minute: i64, outcome: Outcome, n: u64) {
        match std::iter::once(&mut self.first)
            .chain(&mut self.more)
            .find(|(m, o, _)| *m == minute && *o == outcome)
        {
            Some((_, _, count)) => *count = count.saturating_add(n),
            None => self.more.push((minute, outcome, n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn counts_by_minute_and_outcome_and_keeps_the_newest_use() {
        // "k1" is no native id (kept boxed); "k2nativeid12" is one (kept inline).
        assert_eq!("k2nativeid12".len(), KEY_ID_LEN);
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
        r.record("k2nativeid12", Outcome::Answered(VerifyCode::Expired), t0);
        r.record("k2nativeid12", Outcome::WrongSecret, t0);
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
                ("k2nativeid12", 0, "EXPIRED", 1),
                ("k2nativeid12", 0, "WRONG_SECRET", 1)
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
