//! The accept loop: every connection the server holds, and how long it may hold it.
//!
//! `axum::serve` keeps a connection for as long as its peer likes: one that never finishes
//! its request head, or sits silent between requests, costs a descriptor forever, and a
//! thousand of them starve the process (no key needed). Here instead:
//! - a new connection's first request head must be complete within
//!   `http_header_timeout_ms` (one timer per connection, never one per request);
//! - a kept-alive connection with no request in flight for `http_idle_timeout_ms` is
//!   closed;
//! - HTTP/1.1 only on the API, HTTP/1.1 and h2c on the gateway (see `Connection::serve`);
//! - a request body that stalls for `http_body_timeout_ms` fails with [`BodyStalled`],
//!   which the JSON extractor answers 408;
//! - at most `max_connections` are open. At the cap, a new connection takes the place of
//!   the oldest one that has no request in flight (a stalled or idle one: closing it loses
//!   no answer: a response counts as in flight until its body is written; connections
//!   that never sent a whole request go first), so a flood of stalled sockets cannot lock
//!   a real client out; when every
//!   connection is busy the new one is closed at once. The default cap leaves room under
//!   the process's descriptor limit for the database, Redis and webhook sockets, so
//!   `accept` itself never runs out of descriptors.
//!
//! Metrics, labelled `listener` (`api`, or `metrics` for a separate metrics listener):
//! `keyhaven_http_connections` (open now) and
//! `keyhaven_http_connections_closed_total{reason}` with `reason` one of `evicted`,
//! `refused`, `idle`, `header_timeout`, and `accept_error` (accept failed: the descriptor
//! limit is lower than the cap).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use keyhaven_service::Config;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt as _;

pub const OPEN: &str = "keyhaven_http_connections";
pub const CLOSED: &str = "keyhaven_http_connections_closed_total";

/// Descriptors kept back from the connection cap for everything else the process opens:
/// database files and pool, Redis, webhook deliveries, the listener.
const RESERVED_DESCRIPTORS: u64 = 128;
/// The cap when the descriptor limit is unknown or unlimited.
const DEFAULT_MAX_CONNECTIONS: u64 = 16_384;

/// How long connections may take and how many may be open.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// A request body that sends nothing for this long fails with [`BodyStalled`].
    pub body_timeout: Duration,
    /// The `listener` label of this listener's connection metrics (`api`, `metrics`,
    /// `gateway`).
    pub listener: &'static str,
    /// Also speak HTTP/2 (h2c): the gateway's listeners, whose clients may need it.
    pub http2: bool,
}

impl ConnectionLimits {
    /// The limits of a listener whose connection metrics are labelled `listener`.
    pub fn of(config: &Config, listener: &'static str, max_connections: usize) -> Self {
        Self {
            listener,
            max_connections,
            body_timeout: Duration::from_millis(config.http_body_timeout_ms),
            header_timeout: Duration::from_millis(config.http_header_timeout_ms),
            idle_timeout: Duration::from_millis(config.http_idle_timeout_ms),
            http2: false,
        }
    }
}

/// Raises the soft descriptor limit to the hard one (as Go's runtime does), and returns
/// the connection cap: `configured` if set, lowered to what fits under the descriptor
/// limit; otherwise what fits, at most 16,384.
pub fn connection_cap(configured: u32) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) if maximum > current => {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => Some(maximum),
                Err(_) => Some(current),
            }
        }
        (current, _) => current,
    };
    let fit = soft.map_or(u64::MAX, |soft| {
        soft.saturating_sub(RESERVED_DESCRIPTORS).max(16)
    });
    let cap = match u64::from(configured) {
        0 => fit.min(DEFAULT_MAX_CONNECTIONS),
        wanted if wanted > fit => {
            tracing::warn!(
                max_connections = wanted,
                fit,
                "max_connections is above what the descriptor limit leaves room for; using {fit}"
            );
            fit
        }
        wanted => wanted,
    };
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Set in [`Conn::in_flight`] when the registry has chosen the connection for eviction;
/// from then on it is closing, whatever comes in.
const EVICTING: u32 = 1 << 31;

/// One open connection, as the registry and its own task see it.
#[derive(Debug)]
struct Conn {
    /// Requests being handled now (their responses included, until the body is written);
    /// only a connection at 0 may be evicted or closed idle. Eviction claims it by
    /// setting [`EVICTING`] while it is 0, so a request cannot slip in between the
    /// choice and the claim.
    in_flight: AtomicU32,
    /// Notified when `in_flight` drops to 0.
    now_idle: Notify,
    /// The registry's epoch, which `idle_since_ms` counts from.
    epoch: Instant,
    /// When the last request finished (or the connection opened), in ms since `epoch`.
    idle_since_ms: AtomicU64,
    /// Whether a request has come: until then the header timeout bounds the wait (hyper's
    /// own timer starts only once the protocol is known, after the first bytes).
    had_request: AtomicBool,
    evict: Notify,
    /// Notified once the connection's socket is closed.
    gone: Notify,
}

/// Every open connection, oldest first.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    max: usize,
    listener: &'static str,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        millis_since(self.epoch)
    }

    /// A place for a new connection, evicting the oldest idle one at the cap (returned,
    /// so the caller can wait for its socket to close); `None` when every open
    /// connection has a request in flight.
    fn admit(&self) -> Option<(u64, Arc<Conn>, Option<Arc<Conn>>)> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut evicted = None;
        if open.len() >= self.max {
            // Prefer one that never sent a whole request (a stalled head), then the
            // oldest idle one; claim it only if it is still idle.
            let claim = |c: &Arc<Conn>| {
                c.in_flight
                    .compare_exchange(0, EVICTING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            };
            let victim = open
                .iter()
                .find(|(_, c)| !c.had_request.load(Ordering::Acquire) && claim(c))
                .or_else(|| open.iter().find(|(_, c)| claim(c)))
                .map(|(&id, _)| id);
            match victim.and_then(|id| open.remove(&id)) {
                Some(conn) => {
                    conn.evict.notify_one();
                    metrics::counter!(CLOSED, "listener" => self.listener, "reason" => "evicted")
                        .increment(1);
                    evicted = Some(conn);
                }
                None => {
                    metrics::counter!(CLOSED, "listener" => self.listener, "reason" => "refused")
                        .increment(1);
                    return None;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicU32::new(0),
            now_idle: Notify::new(),
            epoch: self.epoch,
            idle_since_ms: AtomicU64::new(self.now_ms()),
            had_request: AtomicBool::new(false),
            evict: Notify::new(),
            gone: Notify::new(),
        });
        open.insert(id, conn.clone());
        metrics::gauge!(OPEN, "listener" => self.listener).set(open.len() as f64);
        Some((id, conn, evicted))
    }

    fn remove(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.remove(&id);
        metrics::gauge!(OPEN, "listener" => self.listener).set(open.len() as f64);
    }
}

/// Marks a request in flight on its connection for as long as it lives.
struct InFlight {
    conn: Arc<Conn>,
}

impl InFlight {
    fn enter(conn: &Arc<Conn>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.had_request.store(true, Ordering::Release);
        Self { conn: conn.clone() }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = millis_since(self.conn.epoch);
        self.conn.idle_since_ms.store(now, Ordering::Release);
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn.now_idle.notify_one();
        }
    }
}

/// A response body that keeps its request counted in flight until hyper has taken all
/// of it, so neither eviction nor the idle timer cuts a response that is still being
/// produced. (hyper buffers what it takes: a client that reads a large response slower
/// than the idle timeout can still see it cut.)
struct Guarded {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Accepts connections until `shutdown` completes, then lets in-flight requests finish
/// (idle connections close at once) and returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        max: limits.max_connections.max(1),
        listener: limits.listener,
        next_id: AtomicU64::new(0),
        open: Mutex::new(BTreeMap::new()),
    });
    // Connections hold a receiver; they drain when the sender says so, and the loop
    // waits for the last receiver to go.
    let (drain_tx, drain_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut accept_errors = AcceptErrors::default();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_errors.record(&e, limits.listener);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some((id, conn, evicted)) = registry.admit() else {
            drop(stream);
            continue;
        };
        // Hold no more sockets than the cap: the evicted one closes before we go on.
        if let Some(evicted) = evicted {
            let _ = tokio::time::timeout(Duration::from_secs(1), evicted.gone.notified()).await;
        }
        let _ = stream.set_nodelay(true);
        let task = Connection {
            registry: registry.clone(),
            id,
            conn,
            router: router.clone(),
            peer,
            limits,
            drain: drain_rx.clone(),
            _done: done_rx.clone(),
        };
        tokio::spawn(task.run(stream));
    }
    drop(listener);
    drop(drain_rx);
    drop(done_rx);
    let _ = drain_tx.send(());
    done_tx.closed().await;
}

/// One connection's task and what it needs.
struct Connection {
    registry: Arc<Registry>,
    id: u64,
    conn: Arc<Conn>,
    router: Router,
    peer: SocketAddr,
    limits: ConnectionLimits,
    drain: watch::Receiver<()>,
    /// Dropped when the task ends, which is what the shutdown waits for.
    _done: watch::Receiver<()>,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        // Leaves the registry when the task ends, even by a panic.
        let _leave = Leave {
            registry: self.registry.clone(),
            conn: self.conn.clone(),
            id: self.id,
        };
        self.serve(stream).await;
    }

    async fn serve(mut self, stream: TcpStream) {
        let (conn, peer) = (self.conn.clone(), self.peer);
        let router = self.router.clone();
        let body_timeout = self.limits.body_timeout;
        let service = tower::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = InFlight::enter(&conn);
            let request = request.map(|body| Body::new(StallTimeout::new(body, body_timeout)));
            let response = router.clone().oneshot(request);
            async move {
                let response = response.await.unwrap_or_else(|never| match never {});
                Ok::<_, Infallible>(response.map(|body| Guarded {
                    body,
                    _in_flight: in_flight,
                }))
            }
        });
        // HTTP/1.1 only on the API: an HTTP/2 client can hold a response unsent forever by
        // keeping its flow-control window shut, which would keep the connection busy
        // (neither idle nor evictable) and block shutdown. The gateway's listeners accept
        // h2c too (its clients are other people's API clients); the risk is the same as
        // any HTTP/2 server's. No hyper timers: the loop below times heads and idleness
        // per connection, so a request arms no timer of its own.
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if !self.limits.http2 {
            builder = builder.http1_only();
        }
        builder.http1().header_read_timeout(None);
        let mut served = pin!(builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(service)
        ));
        // A new connection's first request head must be complete within the header
        // timeout (hyper hands a request over only once its head is complete); between
        // requests a connection may stay idle for the idle timeout.
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (header_ms, keep_alive_ms) = (
            millis(self.limits.header_timeout),
            millis(self.limits.idle_timeout),
        );
        let mut draining = false;
        loop {
            let first = !self.conn.had_request.load(Ordering::Acquire);
            let idle_ms = if first { header_ms } else { keep_alive_ms };
            let idle_since = self.conn.idle_since_ms.load(Ordering::Acquire);
            let deadline =
                self.registry.epoch + Duration::from_millis(idle_since.saturating_add(idle_ms));
            // While a request is in flight there is no idle deadline: wait for it to end.
            let busy = self.conn.in_flight.load(Ordering::Acquire) != 0;
            tokio::select! {
                _ = served.as_mut() => break,
                // Dropping the connection closes its socket; it had no request in flight.
                () = self.conn.evict.notified() => break,
                () = self.conn.now_idle.notified(), if busy => {}
                () = tokio::time::sleep_until(deadline.into()), if !busy => {
                    let idle = self.conn.in_flight.load(Ordering::Acquire) == 0
                        && self.registry.now_ms().saturating_sub(
                            self.conn.idle_since_ms.load(Ordering::Acquire)) >= idle_ms;
                    if idle {
                        let reason = if first { "header_timeout" } else { "idle" };
                        metrics::counter!(CLOSED, "listener" => self.limits.listener, "reason" => reason).increment(1);
                        break;
                    }
                }
                changed = self.drain.changed(), if !draining => {
                    let _ = changed;
                    draining = true;
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Takes a connection out of the registry once its task is over (its socket dropped).
struct Leave {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.registry.remove(self.id);
        self.conn.gone.notify_one();
    }
}

/// The error of a request body that sent nothing for the body timeout (answered 408 by
/// the JSON extractor).
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for too long")]
pub struct BodyStalled;

/// A request body with an idle timeout. The timer is armed only while the body has
/// nothing to give, so a body that arrives with its head (nearly every API request)
/// never touches the timer wheel.
struct StallTimeout {
    body: Incoming,
    timeout: Duration,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl StallTimeout {
    fn new(body: Incoming, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            sleep: None,
        }
    }
}

impl hyper::body::Body for StallTimeout {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyStalled.into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Accept failures (out of descriptors, mostly): counted, and logged at most every 10 s
/// so a flood cannot fill the log.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn record(&mut self, error: &std::io::Error, listener: &'static str) {
        metrics::counter!(CLOSED, "listener" => listener, "reason" => "accept_error").increment(1);
        let due = self
            .last_logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                error = %error,
                suppressed = self.suppressed,
                "accepting a connection failed (lower max_connections or raise the descriptor limit)"
            );
            self.last_logged = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}
