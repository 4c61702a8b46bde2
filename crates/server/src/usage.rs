//! Usage counters kept in memory on the verify path and written to the store in batches:
//! per key, per minute, per outcome, plus each key's `last_used_at`. A verify never
//! writes to the database; [`UsageRecorder::flush`] runs every `usage_flush_interval`
//! (default 5 s) and once more at shutdown, so a crash loses at most one interval of
//! counts, never a key or an audit event.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use keyhaven_core::VerifyCode;
use keyhaven_store::{Store, StoreError, Timestamp, UsageBatch, UsageCount};

#[derive(Debug, Default)]
struct Pending {
    counts: HashMap<(String, i64, VerifyCode), u64>,
    last_used: HashMap<String, Timestamp>,
}

#[derive(Debug, Default)]
pub struct UsageRecorder {
    pending: Mutex<Pending>,
}

impl UsageRecorder {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one verification of a known key. `last_used_at` moves only on success.
    pub fn record(&self, key_id: &str, code: VerifyCode, now: Timestamp) {
        let ts = now.unix_timestamp();
        let minute = ts - ts.rem_euclid(60);
        let mut pending = self.pending();
        *pending
            .counts
            .entry((key_id.to_owned(), minute, code))
            .or_insert(0) += 1;
        if code == VerifyCode::Valid {
            let slot = pending.last_used.entry(key_id.to_owned()).or_insert(now);
            if *slot < now {
                *slot = now;
            }
        }
    }

    fn take(&self) -> UsageBatch {
        let Pending { counts, last_used } = std::mem::take(&mut *self.pending());
        UsageBatch {
            counts: counts
                .into_iter()
                .map(|((key_id, minute, code), count)| UsageCount {
                    key_id,
                    minute,
                    outcome: code.as_str().to_owned(),
                    count,
                })
                .collect(),
            last_used: last_used.into_iter().collect(),
        }
    }

    fn put_back(&self, batch: UsageBatch) {
        let mut pending = self.pending();
        for c in batch.counts {
            let Some(code) = VerifyCode::ALL
                .into_iter()
                .find(|x| x.as_str() == c.outcome)
            else {
                continue;
            };
            *pending
                .counts
                .entry((c.key_id, c.minute, code))
                .or_insert(0) += c.count;
        }
        for (key_id, at) in batch.last_used {
            let slot = pending.last_used.entry(key_id).or_insert(at);
            if *slot < at {
                *slot = at;
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
