//! Shared rate limits in Redis: one Lua script per decision, so every node's
//! verifications of a key go through one atomic check-and-set over all of its buckets.
//!
//! The script repeats [`Gcra::admit`](keyhaven_core::ratelimit::Gcra::admit)'s arithmetic
//! on the interval and capacity the node computed, and returns every bucket's state as it
//! was before the decision; the node then recomputes the same outcomes (remaining, reset)
//! with the core code, so the math that answers lives in one place. Time is the node's
//! (passed in, in µs): nodes must keep their clocks in sync (NTP), since a node whose
//! clock runs `s` ahead admits up to `s / interval` units early.
//!
//! A failing Redis is not retried on every request: after an error the connection is
//! dropped and Redis is left alone for a second ([`RETRY_AFTER`]), during which the
//! caller applies its fallback.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyhaven_core::ratelimit::Outcome;
use redis::aio::MultiplexedConnection;

use super::local::BucketRequest;

/// How long Redis is left alone after an error.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A node that has not said it is alive for this long no longer counts.
pub const NODE_TTL_MS: i64 = 15_000;
const KEY_PREFIX: &str = "keyhaven:rl:";
const NODES_KEY: &str = "keyhaven:nodes";

/// Why Redis did not decide a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Another task is connecting right now; this call falls back without waiting.
    Connecting,
    /// Redis failed (refused, timed out, errored): left alone for [`RETRY_AFTER`].
    Failed(redis::ErrorKind),
}

impl From<redis::RedisError> for Unavailable {
    fn from(e: redis::RedisError) -> Self {
        Self::Failed(e.kind())
    }
}

/// KEYS: the buckets. ARGV: now, then interval, capacity, cost for each bucket.
/// Returns {admitted, tat_1, …, tat_n} with each tat as stored before (-1: none).
const SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local ok = 1
local before = {}
local after = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local capacity = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local stored = redis.call('GET', KEYS[i])
  local tat = now
  before[i] = -1
  if stored then
    before[i] = tonumber(stored)
    if before[i] > now then tat = before[i] end
  end
  local candidate = tat + cost * interval
  if candidate - now > capacity then ok = 0 end
  after[i] = candidate
end
if ok == 1 then
  for i = 1, #KEYS do
    local cost = tonumber(ARGV[3 * i + 1])
    if cost > 0 then
      local ttl = math.floor((after[i] - now) / 1000) + 1
      redis.call('SET', KEYS[i], string.format('%d', after[i]), 'PX', string.format('%d', ttl))
    end
  end
end
local out = {ok}
for i = 1, #KEYS do out[i + 1] = before[i] end
return out
";

#[derive(Debug)]
pub struct RedisLimits {
    client: redis::Client,
    /// The shared connection (held only to clone it: never across an await).
    connection: Mutex<Option<MultiplexedConnection>>,
    /// Held by the one task that (re)connects; others do not wait for it but fall back.
    connecting: tokio::sync::Mutex<()>,
    down_until: Mutex<Option<Instant>>,
    script: redis::Script,
    timeout: Duration,
    node_id: String,
    nodes: AtomicU64,
}

impl RedisLimits {
    pub fn new(url: &str, timeout: Duration, node_id: String) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("redis_url is not a Redis URL ({:?})", e.kind()))?;
        Ok(Self {
            client,
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            down_until: Mutex::new(None),
            script: redis::Script::new(SCRIPT),
            timeout,
            node_id,
            nodes: AtomicU64::new(0),
        })
    }

    /// False while Redis is being left alone after an error.
    pub fn available(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        down.is_none_or(|until| Instant::now() >= until)
    }

    /// Live nodes, as last counted; `None` before the first count.
    pub fn counted_nodes(&self) -> Option<u64> {
        match self.nodes.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The shared connection, connecting when there is none. Only one task connects at
    /// a time, bounded by the timeout; any other call meanwhile fails at once (and
    /// falls back) instead of queueing behind it.
    async fn connection(&self) -> Result<MultiplexedConnection, Unavailable> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let Ok(_connecting) = self.connecting.try_lock() else {
            return Err(Unavailable::Connecting);
        };
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let connect = self.client.get_multiplexed_async_connection();
        let c = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| timed_out())?
            .map_err(Unavailable::from)?;
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    fn failed(&self, e: Unavailable) -> Unavailable {
        if e == Unavailable::Connecting {
            return e;
        }
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + RETRY_AFTER);
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
        e
    }

    /// Decides `requests` at `now` (µs) all-or-nothing in Redis.
    pub async fn decide(
        &self,
        requests: &[BucketRequest<'_>],
        now: i64,
    ) -> Result<Vec<Outcome>, Unavailable> {
        let result = self.invoke(requests, now).await;
        match result {
            Ok(before) => {
                *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(before)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn invoke(
        &self,
        requests: &[BucketRequest<'_>],
        now: i64,
    ) -> Result<Vec<Outcome>, Unavailable> {
        let mut conn = self.connection().await?;
        let mut call = self.script.prepare_invoke();
        call.arg(now);
        for r in requests {
            call.key(format!("{KEY_PREFIX}{}", r.id))
                .arg(r.limit.interval())
                .arg(r.limit.capacity())
                .arg(r.cost);
        }
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, call.invoke_async(&mut conn))
            .await
            .map_err(|_| timed_out())?
            .map_err(Unavailable::from)?;
        let admitted = reply.first() == Some(&1);
        let outcomes: Vec<Outcome> = requests
            .iter()
            .zip(reply.iter().skip(1))
            .map(|(r, before)| {
                let tat = (*before >= 0).then_some(*before);
                let mut o = r.limit.admit(tat, now, r.cost);
                if !admitted && o.admitted {
                    // Another bucket denied: this one was left as it was.
                    o = Outcome {
                        admitted: true,
                        tat: tat.unwrap_or(now).max(now),
                        remaining: r.limit.remaining(tat.unwrap_or(now), now),
                        reset_at: tat.unwrap_or(now).max(now),
                        retry_after: Some(0),
                    };
                }
                o
            })
            .collect();
        if outcomes.len() != requests.len() {
            return Err(Unavailable::Failed(redis::ErrorKind::UnexpectedReturnType));
        }
        Ok(outcomes)
    }

    /// Says this node is alive and counts the live nodes (for the fallback share).
    pub async fn heartbeat(&self, now_ms: i64) -> Result<u64, Unavailable> {
        let result = async {
            let mut conn = self.connection().await?;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .zadd(NODES_KEY, &self.node_id, now_ms)
                .ignore()
                .zrembyscore(NODES_KEY, "-inf", now_ms - NODE_TTL_MS)
                .ignore()
                .zcard(NODES_KEY);
            let (count,): (u64,) = tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
                .await
                .map_err(|_| timed_out())?
                .map_err(Unavailable::from)?;
            Ok(count)
        }
        .await;
        match result {
            Ok(count) => {
                self.nodes.store(count.max(1), Ordering::Relaxed);
                Ok(count)
            }
            Err(e) => Err(self.failed(e)),
        }
    }
}

fn timed_out() -> Unavailable {
    Unavailable::Failed(redis::ErrorKind::Io)
}
