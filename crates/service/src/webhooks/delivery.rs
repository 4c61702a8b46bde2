//! The delivery loop every node runs: fan new events out into deliveries, claim due
//! ones (a lease keeps other nodes off them), send each signed, record the attempt and
//! schedule the next. At most `webhook_concurrency` attempts are in flight; everything
//! else waits in the database, so a dead receiver costs rows, not memory.
//!
//! Delivery is at least once: a node that dies after sending but before recording sends
//! again once its lease runs out. Receivers deduplicate by `webhook-id` (the event id,
//! the same on every attempt).

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyhaven_store::{AfterAttempt, Attempt, DueDelivery};
use reqwest::redirect::Policy;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::Semaphore;

use super::retry::{RetryPolicy, jitter};
use super::{SECRET_PURPOSE, signing, target};
use crate::service::Service;
use crate::validate::rfc3339;

/// How often the loop looks for new events and due retries.
const POLL: Duration = Duration::from_millis(200);
/// Events read per fan-out transaction.
const FAN_OUT_BATCH: u32 = 500;
/// Beyond the attempt's own timeout, how long a claim holds a delivery.
const LEASE_MARGIN_MS: i64 = 10_000;

pub const ATTEMPTS: &str = "keyhaven_webhook_attempts_total";
pub const LOOP_ERRORS: &str = "keyhaven_webhook_worker_errors_total";

fn policy(state: &Service) -> RetryPolicy {
    let c = &state.config;
    RetryPolicy {
        initial: Duration::from_millis(c.webhook_retry_initial_ms),
        max_delay: Duration::from_millis(c.webhook_retry_max_delay_ms),
        period: Duration::from_secs(c.webhook_retry_period_hours.saturating_mul(3_600)),
    }
}

/// The HTTP client deliveries use: no redirects, the attempt timeout, and (unless
/// private targets are allowed) a resolver that only yields public addresses.
pub fn client(state: &Service) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a default crypto provider; ring is ours. Fails only if a
    // provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let timeout = Duration::from_millis(state.config.webhook_timeout_ms);
    // no_proxy: an HTTP(S)_PROXY/ALL_PROXY variable would send deliveries through a proxy,
    // which then resolves the target itself, past the public-address check below.
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("Keyhaven-Webhooks/", env!("CARGO_PKG_VERSION")));
    if !state.config.webhook_allow_private_targets {
        builder = builder.dns_resolver(Arc::new(target::PublicOnly));
    }
    Ok(builder.build()?)
}

/// Runs until the task is aborted.
pub async fn run(state: Service) {
    let client = match client(&state) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery is off: building the HTTP client failed");
            return;
        }
    };
    let concurrency = usize::try_from(state.config.webhook_concurrency).unwrap_or(16);
    let permits = Arc::new(Semaphore::new(concurrency));
    let lease_ms =
        i64::try_from(state.config.webhook_timeout_ms).unwrap_or(i64::MAX / 2) + LEASE_MARGIN_MS;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        fan_out(&state).await;
        // Claim as long as there is due work and room for it.
        loop {
            let free = permits.available_permits();
            if free == 0 {
                // Wait for an attempt to finish, then look again.
                if let Ok(permit) = permits.clone().acquire_owned().await {
                    drop(permit);
                }
                continue;
            }
            let now_ms = state.clock.now_micros() / 1_000;
            let due = match state
                .store
                .claim_deliveries(now_ms, lease_ms, u32::try_from(free).unwrap_or(u32::MAX))
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    metrics::counter!(LOOP_ERRORS).increment(1);
                    tracing::warn!(error = %e, "claiming webhook deliveries failed; will retry");
                    break;
                }
            };
            let claimed = due.len();
            for delivery in due {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (state, client) = (state.clone(), client.clone());
                tokio::spawn(async move {
                    attempt(&state, &client, delivery).await;
                    drop(permit);
                });
            }
            if claimed < free {
                break;
            }
        }
    }
}

async fn fan_out(state: &Service) {
    loop {
        let now_ms = state.clock.now_micros() / 1_000;
        match state.store.fan_out_events(now_ms, FAN_OUT_BATCH).await {
            Ok(n) if n == u64::from(FAN_OUT_BATCH) => continue,
            Ok(_) => return,
            Err(e) => {
                metrics::counter!(LOOP_ERRORS).increment(1);
                tracing::warn!(error = %e, "fanning events out to webhooks failed; will retry");
                return;
            }
        }
    }
}

/// Sends one delivery and records how it went.
async fn attempt(state: &Service, client: &reqwest::Client, d: DueDelivery) {
    let attempted_ms = state.clock.now_micros() / 1_000;
    let started = Instant::now();
    let outcome = send(state, client, &d).await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let number = d.attempts.saturating_add(1);
    let (status_code, error, next) = match outcome {
        Ok(status) if (200..300).contains(&status) => (Some(status), None, AfterAttempt::Delivered),
        failed => {
            let (status, error) = match failed {
                Ok(status) => (Some(status), format!("the receiver answered HTTP {status}")),
                Err(e) => (None, e),
            };
            let next = policy(state)
                .next_attempt(number, attempted_ms, d.first_due_ms, jitter())
                .map_or(AfterAttempt::GiveUp, AfterAttempt::RetryAt);
            (status, Some(error), next)
        }
    };
    let result = match next {
        AfterAttempt::Delivered => "delivered",
        AfterAttempt::RetryAt(_) => "retry",
        AfterAttempt::GiveUp => "gave_up",
    };
    metrics::counter!(ATTEMPTS, "result" => result).increment(1);
    if let Some(error) = &error {
        // The receiver's address is the operator's own configuration; the error names no
        // secret (the signature is not in it).
        tracing::warn!(
            webhook_id = d.webhook_id,
            delivery_id = d.id,
            attempt = number,
            outcome = result,
            error = error.as_str(),
            "webhook delivery failed"
        );
    }
    let logged = Attempt {
        delivery_id: d.id.clone(),
        attempt: number,
        attempted_ms,
        status_code,
        error,
        duration_ms,
    };
    if let Err(e) = state.store.record_attempt(&logged, next).await {
        // The lease runs out and the delivery is tried again: at least once.
        metrics::counter!(LOOP_ERRORS).increment(1);
        tracing::warn!(delivery_id = d.id, error = %e, "recording a webhook attempt failed");
    }
}

/// One HTTP attempt: the receiver's status, or why there was none.
async fn send(state: &Service, client: &reqwest::Client, d: &DueDelivery) -> Result<u16, String> {
    let secret = crate::idempotency::open_for(SECRET_PURPOSE, &state.peppers, &d.sealed_secret)
        .map_err(|_| "the endpoint's secret could not be opened (pepper missing?)".to_owned())?;
    let secret = SecretString::from(
        String::from_utf8(secret).map_err(|_| "the endpoint's secret is corrupt".to_owned())?,
    );
    let url =
        reqwest::Url::parse(&d.url).map_err(|_| "the endpoint's URL is invalid".to_owned())?;
    if !state.config.webhook_allow_private_targets {
        // Literal addresses never reach the resolver; names are checked there.
        target::check_host(url.host_str().unwrap_or_default())?;
    }
    let body = serde_json::to_vec(&json!({
        "type": d.event.kind,
        "timestamp": rfc3339(d.event.created_at),
        "data": d.event.payload,
    }))
    .map_err(|e| format!("encoding the event failed: {e}"))?;
    let timestamp = state.clock.now().unix_timestamp();
    let signature = signing::sign(&secret, &d.event.id, timestamp, &body)
        .map_err(|_| "signing failed: the endpoint's secret is malformed".to_owned())?;
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.event.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {} ms", state.config.webhook_timeout_ms)
            } else if e.is_connect() {
                "could not connect to the receiver".to_owned()
            } else {
                "the request failed".to_owned()
            }
        })?;
    Ok(response.status().as_u16())
}
