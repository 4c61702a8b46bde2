//! Prometheus metrics at `/metrics`: HTTP requests by route and status, verifications by
//! code, and latency histograms. Labels are route templates and codes, never values from
//! a request, so no key or id can appear in a metric.
//!
//! The recorder is process-global (the `metrics` facade has one), installed on first use.
//! Histograms keep each sample until an upkeep folds them into their buckets, so a thread
//! runs the upkeep every [`UPKEEP_INTERVAL`]: without it a server nobody scraped grew by
//! every request's samples (about 2 MB a second under verify load).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "keyhaven_http_requests_total";
pub const HTTP_DURATION: &str = "keyhaven_http_request_duration_seconds";

const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often pending histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's Prometheus handle, installing the recorder the first time.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first (then ours stays empty).
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics is partial");
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no metrics upkeep thread: histograms grow until /metrics is read");
            }
            handle
        })
        .clone()
}

/// Middleware: counts and times every request under its route template. Every label
/// comes from a closed set (a method the router knows or `other`, a route template or
/// `unmatched`, a status code), so no request can mint a new series. The handles are
/// looked up by labels once per series ([`RouteMetrics`]), not on every request.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = RouteMetrics::of(
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str),
    );
    let method = method_label(request.method());
    let response = next.run(request).await;
    route.count(method, response.status().as_u16());
    route.duration.record(start.elapsed().as_secs_f64());
    response
}

/// One route template's metric handles: its latency histogram, and a request counter
/// per method and status seen on it.
struct RouteMetrics {
    route: String,
    duration: Histogram,
    counters: RwLock<Vec<(&'static str, u16, Counter)>>,
}

type Routes = RwLock<HashMap<String, Arc<RouteMetrics>>>;

impl RouteMetrics {
    fn of(route: &str) -> Arc<Self> {
        static ROUTES: OnceLock<Routes> = OnceLock::new();
        let routes = ROUTES.get_or_init(Routes::default);
        if let Some(found) = read(routes).get(route) {
            return Arc::clone(found);
        }
        let mut routes = write(routes);
        let entry = routes.entry(route.to_owned()).or_insert_with(|| {
            Arc::new(Self {
                route: route.to_owned(),
                duration: metrics::histogram!(HTTP_DURATION, "route" => route.to_owned()),
                counters: RwLock::default(),
            })
        });
        Arc::clone(entry)
    }

    fn count(&self, method: &'static str, status: u16) {
        let found = read(&self.counters)
            .iter()
            .find(|(m, s, _)| *m == method && *s == status)
            .map(|(_, _, counter)| counter.clone());
        let counter = found.unwrap_or_else(|| {
            let mut counters = write(&self.counters);
            if let Some((_, _, counter)) = counters
                .iter()
                .find(|(m, s, _)| *m == method && *s == status)
            {
                return counter.clone();
            }
            let counter = metrics::counter!(HTTP_REQUESTS, "method" => method,
                "route" => self.route.clone(), "status" => status.to_string());
            counters.push((method, status, counter.clone()));
            counter
        });
        counter.increment(1);
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The label for a request's method: the standard methods by name, anything else
/// (an extension method is any token a client likes) as `other`.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_a_closed_set() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let odd = Method::from_bytes(b"XMETH1").unwrap();
        assert_eq!(method_label(&odd), "other");
        let get_lower = Method::from_bytes(b"get").unwrap();
        assert_eq!(method_label(&get_lower), "other");
    }
}
