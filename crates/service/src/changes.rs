//! The change stream for remote caches (`GET /v1/changes`): every invalidation of this
//! node's verify cache, as a sequence of events a proxy node or a client library follows
//! to drop the verify answers it cached.
//!
//! Where events come from: [`KeyCache`](crate::cache::KeyCache) publishes one for each of
//! its invalidations, which happen after every local mutation and, with several nodes on
//! PostgreSQL, for every change of another node the feed delivers (`coherence.rs`). So a
//! stream of any node carries every change of the deployment.
//!
//! What a follower may rely on:
//! - Events are numbered by a cursor `<epoch>-<sequence>`: the epoch is drawn at random
//!   when the process starts, the sequence counts this process's events. Resuming from a
//!   cursor delivers exactly the events after it while the in-memory ring still holds
//!   them; otherwise (another process's epoch, a cursor from the future, one older than
//!   the ring) the stream starts with [`EventKind::Reset`]: drop everything.
//! - Nothing is skipped silently: a follower too slow for the broadcast buffer gets
//!   `Reset` in place of what it missed.
//! - A heartbeat every `cache_coherence_ms / 4` says "everything up to this cursor was
//!   sent". A node sends heartbeats only while it can vouch for its own cache (with
//!   several nodes: its change feed confirmed its own ping within half of
//!   `cache_coherence_ms`); when it cannot, it stays silent, so followers that fail closed
//!   after `cache_coherence_ms` of silence do, and when it can again it sends `Reset`.
//! - The stream ends when the server shuts down ([`Changes::close`]), and when the
//!   follower's own root key stops permitting it: after a change to that key that the
//!   key no longer passes ([`Follower::still_allowed`], asked at the start, after every
//!   event naming it or `Reset`, at its expiry, and every `cache_ttl_ms` for changes no
//!   event announces; so an echo of a change that left it working, such as its creation
//!   arriving through another node's feed, ends nothing). Followers reconnect with their
//!   last cursor.
//!
//! This module knows nothing of HTTP (the server writes the events as server-sent
//! events) nor of the [`Service`](crate::Service) (which builds subscriptions with
//! `streams::subscribe`), so the cache can hold the hub without a module cycle.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};

/// Most streams open at once. Each holds a connection that is never idle (so never
/// evicted by the connection cap): without a bound, streams alone could fill the cap and
/// lock out verification. A deployment has one stream per proxy node or client process.
pub const MAX_STREAMS: usize = 1_024;
/// Events kept for resuming (about an hour of a busy admin API; older cursors get
/// `Reset`).
const RING_CAPACITY: usize = 4_096;
/// Events a stream may fall behind the newest before it is sent `Reset` instead.
const BROADCAST_CAPACITY: usize = 1_024;
/// Characters of a process epoch (base58, ~70 bits).
const EPOCH_CHARS: usize = 12;
const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// An invalidation of the verify cache, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One key's record changed: drop its cached answers.
    Key(String),
    /// An owner or keyspace changed (or keys were imported): every record may have.
    All,
    /// This node's cache was wholly dropped (its change feed (re)started): changes may
    /// have been missed.
    Reset,
}

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The resume cursor: everything up to here has been sent.
    pub id: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `key` `{"key_id": "..."}`: drop this key's cached answers.
    Key(String),
    /// `all` `{}`: drop every cached answer.
    All,
    /// `reset` `{}`: drop every cached answer; events may have been missed.
    Reset,
    /// `heartbeat` `{}`: nothing changed; the stream is live and vouched for.
    Heartbeat,
}

impl EventKind {
    /// The event's name on the wire (the SSE `event:` field).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::All => "all",
            Self::Reset => "reset",
            Self::Heartbeat => "heartbeat",
        }
    }

    /// The event's data, as one line of JSON.
    pub fn data(&self) -> String {
        match self {
            Self::Key(key_id) => serde_json::json!({ "key_id": key_id }).to_string(),
            Self::All | Self::Reset | Self::Heartbeat => "{}".to_owned(),
        }
    }
}

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The cursor is not of the shape `<epoch>-<sequence>` this server hands out.
    #[error("the cursor is not one this server hands out (`<epoch>-<sequence>`)")]
    MalformedCursor,
    /// [`MAX_STREAMS`] are open.
    #[error("too many change streams are open")]
    Busy,
}

/// What a stream is opened with.
pub struct Subscribe<'a> {
    /// Where to resume (`Last-Event-ID`); `None` starts at the newest event.
    pub cursor: Option<&'a str>,
    /// How often to send a heartbeat.
    pub heartbeat: Duration,
    /// Whether this node can vouch for its cache now (asked before each heartbeat).
    pub vouch: Box<dyn Fn() -> bool + Send + Sync>,
    /// Send `key` events as `all` (a follower that may not learn other keyspaces' key
    /// ids).
    pub hide_key_ids: bool,
    /// The root key following, when the stream must end once that key stops working.
    pub follower: Option<Follower>,
}

/// Whether the follower's root key still permits the stream, asked again after each
/// change to it.
pub type StillAllowed =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Standing> + Send>> + Send + Sync>;

/// A follower's root key, as read again after a change to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It works, until this long from now (expiry, a rotation's grace period) or for
    /// good: the stream goes on.
    Works { until: Option<Duration> },
    /// Revoked, disabled, its scopes or keyspaces changed, or it could not be read: the
    /// stream ends.
    Ended,
}

/// The root key a stream is opened with: the stream ends when it stops working.
pub struct Follower {
    /// Its key id: a `key` event naming it makes the stream ask [`Self::still_allowed`]
    /// once the events before it are sent.
    pub key_id: String,
    /// Its standing now; [`Standing::Ended`] ends the stream.
    pub still_allowed: StillAllowed,
    /// When it stops working by itself (expiry, the end of a rotation's grace period),
    /// from now; no event marks that moment, so the stream asks
    /// [`Self::still_allowed`] then.
    pub until: Option<Duration>,
    /// Asked at least this often, for changes no event announces (another process
    /// writing the same SQLite file, as `keyhaven root-key revoke` does).
    pub every: Duration,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("key_id", &self.key_id)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Subscribe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribe")
            .field("cursor", &self.cursor)
            .field("heartbeat", &self.heartbeat)
            .field("hide_key_ids", &self.hide_key_ids)
            .field("follower", &self.follower)
            .finish_non_exhaustive()
    }
}

/// The publishing side, held by the verify cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct Changes(Arc<Hub>);

#[derive(Debug)]
struct Hub {
    epoch: String,
    ring: Mutex<Ring>,
    sender: broadcast::Sender<(u64, Change)>,
    closed: watch::Sender<bool>,
    streams: Arc<Semaphore>,
}

#[derive(Debug, Default)]
struct Ring {
    /// The newest event's sequence (0: none yet).
    last: u64,
    recent: VecDeque<(u64, Change)>,
}

impl Default for Changes {
    fn default() -> Self {
        Self::new()
    }
}

impl Changes {
    /// A hub with a fresh random epoch.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self(Arc::new(Hub {
            epoch: new_epoch(),
            ring: Mutex::new(Ring::default()),
            sender,
            closed: watch::Sender::new(false),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }))
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.0
            .ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Numbers `change`, keeps it for resuming and sends it to every open stream.
    pub fn publish(&self, change: Change) {
        let mut ring = self.ring();
        ring.last = ring.last.wrapping_add(1);
        let seq = ring.last;
        if ring.recent.len() >= RING_CAPACITY {
            ring.recent.pop_front();
        }
        ring.recent.push_back((seq, change.clone()));
        // Under the ring's lock, so a subscriber sees each event once: in its backlog or
        // from the channel, never both nor neither. No receiver is not an error.
        let _ = self.0.sender.send((seq, change));
    }

    /// The cursor of the newest event.
    pub fn cursor(&self) -> String {
        let last = self.ring().last;
        self.cursor_at(last)
    }

    fn cursor_at(&self, seq: u64) -> String {
        format!("{}-{seq}", self.0.epoch)
    }

    /// Ends every open stream (the server is shutting down and waits for its responses)
    /// and every stream opened from now on, after its first event.
    pub fn close(&self) {
        self.0.closed.send_replace(true);
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        MAX_STREAMS.saturating_sub(self.0.streams.available_permits())
    }

    /// Opens a stream: its first event is the backlog after `cursor` (or `Reset` when
    /// that cannot be honoured), or without a cursor a heartbeat naming the newest one.
    pub fn subscribe(&self, how: Subscribe<'_>) -> Result<Subscription, SubscribeError> {
        let resume = how.cursor.map(parse_cursor).transpose()?;
        let permit = self
            .0
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| SubscribeError::Busy)?;
        let mut pending = VecDeque::new();
        let ring = self.ring();
        let receiver = self.0.sender.subscribe();
        let last = ring.last;
        let mut vouching = true;
        match resume {
            None => {
                if (how.vouch)() {
                    pending.push_back(self.event(last, EventKind::Heartbeat));
                } else {
                    // Nothing until the node can vouch again, then `Reset`.
                    vouching = false;
                }
            }
            Some((epoch, seq)) => {
                let oldest = ring.recent.front().map_or(last.wrapping_add(1), |e| e.0);
                let honoured =
                    epoch == self.0.epoch && seq <= last && oldest <= seq.saturating_add(1);
                if honoured {
                    for (s, change) in ring.recent.iter().filter(|(s, _)| *s > seq) {
                        pending.push_back(self.event(*s, kind_of(change.clone())));
                    }
                } else {
                    pending.push_back(self.event(last, EventKind::Reset));
                }
            }
        }
        drop(ring);
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + how.heartbeat,
            how.heartbeat.max(Duration::from_millis(10)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stream = Subscription {
            hub: self.clone(),
            receiver,
            closed: self.0.closed.subscribe(),
            tick,
            last,
            vouching,
            vouch: how.vouch,
            hide_key_ids: how.hide_key_ids,
            ends_at: how
                .follower
                .as_ref()
                .and_then(|f| f.until)
                .map(|until| tokio::time::Instant::now() + until),
            recheck_tick: how.follower.as_ref().map(|f| {
                let every = f.every.max(Duration::from_millis(100));
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick
            }),
            // Asked once at the start as well: the key may have changed between the
            // request's authentication (from a cached record) and the subscription.
            recheck: how.follower.is_some(),
            follower: how.follower,
            ended: false,
            pending: VecDeque::new(),
            _permit: permit,
        };
        for event in pending {
            stream.push(event);
        }
        Ok(stream)
    }

    fn event(&self, seq: u64, kind: EventKind) -> Event {
        Event {
            id: self.cursor_at(seq),
            kind,
        }
    }
}

fn kind_of(change: Change) -> EventKind {
    match change {
        Change::Key(key_id) => EventKind::Key(key_id),
        Change::All => EventKind::All,
        Change::Reset => EventKind::Reset,
    }
}

/// A follower's view of the hub: the events to send it, one at a time.
pub struct Subscription {
    hub: Changes,
    receiver: broadcast::Receiver<(u64, Change)>,
    closed: watch::Receiver<bool>,
    tick: tokio::time::Interval,
    /// The sequence of the newest event queued for this follower.
    last: u64,
    /// Whether the last heartbeat tick could vouch (`false`: the next one that can sends
    /// `Reset`).
    vouching: bool,
    vouch: Box<dyn Fn() -> bool + Send + Sync>,
    hide_key_ids: bool,
    follower: Option<Follower>,
    /// When the follower's root key stops working by itself.
    ends_at: Option<tokio::time::Instant>,
    /// An event named the follower's root key (or it is time): ask whether it still
    /// works once what is queued is sent.
    recheck: bool,
    /// When to ask anyway.
    recheck_tick: Option<tokio::time::Interval>,
    /// Set once the stream must end after what is queued.
    ended: bool,
    pending: VecDeque<Event>,
    /// Counts against [`MAX_STREAMS`] until the stream is dropped.
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("last", &self.last)
            .field("vouching", &self.vouching)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// What woke a stream up.
enum Wake {
    Closed,
    Received(Result<(u64, Change), broadcast::error::RecvError>),
    Tick,
    /// The follower's root key should have expired by now.
    Expired,
    /// Time to ask about the follower's root key again (changes no event announces).
    Recheck,
}

impl Subscription {
    /// The next event to send; `None` when the stream ends (the server shuts down, or
    /// the follower's root key stopped working).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.recheck {
                if let Some(follower) = &self.follower {
                    // Shutdown does not wait for a slow store; the flag is cleared only
                    // once answered, so a dropped `next` asks again on the next call.
                    let standing = tokio::select! {
                        biased;
                        _ = self.closed.wait_for(|closed| *closed) => return None,
                        standing = (follower.still_allowed)() => standing,
                    };
                    match standing {
                        Standing::Works { until } => {
                            self.ends_at = until.map(|u| tokio::time::Instant::now() + u);
                        }
                        Standing::Ended => self.ended = true,
                    }
                }
                self.recheck = false;
            }
            if self.ended || *self.closed.borrow() {
                return None;
            }
            let expiry = self.ends_at;
            let wake = tokio::select! {
                biased;
                _ = self.closed.wait_for(|closed| *closed) => Wake::Closed,
                () = sleep_until(expiry) => Wake::Expired,
                () = tick_of(self.recheck_tick.as_mut()) => Wake::Recheck,
                received = self.receiver.recv() => Wake::Received(received),
                _ = self.tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Closed | Wake::Received(Err(broadcast::error::RecvError::Closed)) => {
                    return None;
                }
                // Asked again rather than ended outright: the key's own record decides
                // (a clock that moved, a key whose expiry was pushed back).
                Wake::Expired => {
                    self.ends_at = None;
                    self.recheck = true;
                }
                Wake::Recheck => self.recheck = true,
                Wake::Received(Ok((seq, change))) => {
                    // Already covered by the backlog or by a `Reset`.
                    if seq > self.last {
                        self.last = seq;
                        let event = self.hub.event(seq, kind_of(change));
                        self.push(event);
                    }
                }
                Wake::Received(Err(broadcast::error::RecvError::Lagged(_))) => {
                    // Fell behind the buffer: `Reset` covers everything up to the newest
                    // event, and the stream goes on from there (a fresh receiver, taken
                    // under the lock `publish` sends under, so nothing falls between).
                    let ring = self.hub.ring();
                    self.receiver = self.receiver.resubscribe();
                    self.last = ring.last;
                    drop(ring);
                    let event = self.hub.event(self.last, EventKind::Reset);
                    self.push(event);
                }
                Wake::Tick => {
                    let vouched = (self.vouch)();
                    if vouched {
                        let kind = if self.vouching {
                            EventKind::Heartbeat
                        } else {
                            EventKind::Reset
                        };
                        let event = self.hub.event(self.last, kind);
                        self.push(event);
                    }
                    self.vouching = vouched;
                }
            }
        }
    }

    /// Queues `event` as this follower may see it. An event naming the follower's root
    /// key, or a `Reset` (which may stand for one), makes the stream ask whether that key
    /// still works once the event is sent.
    fn push(&mut self, event: Event) {
        if let Some(follower) = &self.follower {
            match &event.kind {
                EventKind::Key(key_id) if *key_id == follower.key_id => self.recheck = true,
                EventKind::Reset => self.recheck = true,
                _ => {}
            }
        }
        if self.hide_key_ids && matches!(event.kind, EventKind::Key(_)) {
            self.pending.push_back(Event {
                id: event.id,
                kind: EventKind::All,
            });
            return;
        }
        self.pending.push_back(event);
    }
}

/// The next tick of `interval`; never when `None`.
async fn tick_of(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A cursor's epoch and sequence, if it has the shape this server hands out.
fn parse_cursor(cursor: &str) -> Result<(&str, u64), SubscribeError> {
    let (epoch, seq) = cursor
        .split_once('-')
        .ok_or(SubscribeError::MalformedCursor)?;
    let epoch_ok = epoch.len() == EPOCH_CHARS && epoch.bytes().all(|b| BASE58.contains(&b));
    let seq_ok = !seq.is_empty() && seq.len() <= 20 && seq.bytes().all(|b| b.is_ascii_digit());
    if !(epoch_ok && seq_ok) {
        return Err(SubscribeError::MalformedCursor);
    }
    let seq = seq.parse().map_err(|_| SubscribeError::MalformedCursor)?;
    Ok((epoch, seq))
}

/// A random epoch; from the clock if the OS random source fails (it only has to differ
/// from the previous process's).
fn new_epoch() -> String {
    let mut buf = [0_u8; EPOCH_CHARS];
    if keyhaven_core::random::fill_base58(&mut buf).is_err() {
        let mut n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for b in &mut buf {
            let digit = usize::try_from(n % 58).unwrap_or(0);
            *b = BASE58.get(digit).copied().unwrap_or(b'1');
            n /= 58;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests;
