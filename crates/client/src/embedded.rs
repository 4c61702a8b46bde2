//! The embedded mode (feature `embedded`): Keyhaven's application layer
//! ([`keyhaven_service::Service`]) in this process, over the store of a data directory
//! (SQLite by default, or the configuration's `database_url`), with the same
//! [`Client::verify`](crate::Client::verify) as the remote mode. Verification is the
//! service's own: its record cache, limits, quotas and usage counting, with no network.
//!
//! On SQLite the client holds the data directory's serving lock, as `keyhaven serve`
//! does: one process serves one SQLite database (two would each cache keys the other
//! revoked). Manage keys through [`Client::service`](crate::Client::service) (the same
//! operations as the API), or point a remote client at a server instead.

use std::fmt;
use std::sync::Mutex;

use keyhaven_service::background::{self, Running};
use keyhaven_service::clock::Clock;
use keyhaven_service::limits::Applied;
use keyhaven_service::serve_lock::{self, ServeLock};
use keyhaven_service::validate::rfc3339;
use keyhaven_service::verify::{self, Verdict, VerifyRequest};
use keyhaven_service::{Actor, Config, Service, ServiceError, bootstrap};
use secrecy::SecretString;

use crate::error::{Error, Problem, Result};
use crate::types::{
    LimitScope, VerifyCode, VerifyOptions, VerifyOwner, VerifyRatelimit, VerifyResponse,
    VerifyRotation,
};

/// The actor the embedded verifier is recorded as.
const ACTOR: &str = "keyhaven-client";

pub(crate) struct Embedded {
    service: Service,
    actor: Actor,
    running: Mutex<Option<Running>>,
    _lock: Option<ServeLock>,
}

impl fmt::Debug for Embedded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedded")
            .field("data_dir", &self.service.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let running = self.running.get_mut().ok().and_then(Option::take);
        if let (Some(running), Ok(runtime)) = (running, tokio::runtime::Handle::try_current()) {
            // Writes the usage counts still in memory.
            runtime.spawn(running.stop());
        }
    }
}

impl Embedded {
    /// Opens the configured data directory and starts the service's background work.
    pub(crate) async fn open(config: Config) -> Result<Self> {
        bootstrap::ensure_data_dir(&config.data_dir).map_err(failed)?;
        let lock = serve_lock::acquire(&config).map_err(failed)?;
        let store = bootstrap::open_store(&config).await.map_err(failed)?;
        let (peppers, _) = bootstrap::load_peppers(&config.data_dir, store.as_ref())
            .await
            .map_err(failed)?;
        let signing_keys = bootstrap::load_signing_keys(&config.data_dir, store.as_ref())
            .await
            .map_err(failed)?;
        let service =
            Service::with_parts(store, peppers, None, config, Clock::System).map_err(failed)?;
        keyhaven_service::tokens::install(&service, signing_keys);
        let running = background::start(&service).await.map_err(failed)?;
        Ok(Self {
            service,
            actor: Actor::local(ACTOR),
            running: Mutex::new(Some(running)),
            _lock: lock,
        })
    }

    pub(crate) fn service(&self) -> &Service {
        &self.service
    }

    /// Stops the background work, writing what is pending.
    pub(crate) async fn shutdown(&self) {
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(running) = running {
            running.stop().await;
        }
    }
}

/// A start-up failure, with its causes.
fn failed(e: impl fmt::Display) -> Error {
    Error::Embedded(format!("{e:#}"))
}

impl Embedded {
    pub(crate) async fn verify(
        &self,
        key: &str,
        options: &VerifyOptions,
    ) -> Result<VerifyResponse> {
        let request = VerifyRequest {
            key: SecretString::from(key),
            scopes: options.scopes.clone(),
            cost: options.cost,
            ratelimits: options.ratelimits.as_ref().map(|named| {
                named
                    .iter()
                    .map(|n| keyhaven_service::limits::NamedCost {
                        name: n.name.clone(),
                        cost: n.cost,
                    })
                    .collect()
            }),
            client_ip: options.client_ip,
            permissions: options.permissions.clone(),
            audience: options.audience.clone(),
        };
        verify::verify(&self.service, &self.actor, &request, answer)
            .await
            .map_err(|e| service_error(e, key))
    }
}

/// The verdict as the API would write it.
fn answer(verdict: &Verdict<'_>) -> VerifyResponse {
    let key = verdict.key;
    VerifyResponse {
        valid: verdict.code == keyhaven_core::VerifyCode::Valid,
        code: VerifyCode::from(verdict.code),
        key_id: key.map(|k| k.key_id().to_owned()),
        keyspace_id: key.map(|k| k.keyspace_id().to_owned()),
        keyspace: key.map(|k| k.keyspace_name().to_owned()),
        owner: key.and_then(|k| {
            k.owner_id().map(|id| VerifyOwner {
                id: id.to_owned(),
                external_id: k.owner_external_id().map(str::to_owned),
            })
        }),
        name: key.and_then(|k| k.name().map(str::to_owned)),
        // As the API answers: every scope the key holds (its plans' included), and its
        // effective expiry.
        scopes: match verdict.token {
            Some(token) => key.map(|_| token.scopes.clone()),
            None => key.map(|k| k.scopes().to_vec()),
        },
        meta: key.map(|k| k.meta().clone()),
        expires_at: match verdict.token {
            Some(token) => key.map(|_| rfc3339(keyhaven_store::from_unix(token.exp))),
            None => key.and_then(|k| k.effective_expiry().map(rfc3339)),
        },
        rotation: key.and_then(|k| {
            k.rotation().map(|r| VerifyRotation {
                successor_key_id: r.successor.clone(),
                grace_until: rfc3339(r.grace_until),
            })
        }),
        ratelimits: verdict.limits.ratelimits.iter().map(ratelimit).collect(),
        remaining: verdict.limits.remaining,
        missing_permissions: (verdict.code == keyhaven_core::VerifyCode::InsufficientPermissions)
            .then(|| verdict.missing_permissions.to_vec()),
        token: verdict.token.is_some(),
    }
}

fn ratelimit(applied: &Applied<'_>) -> VerifyRatelimit {
    let ms = |us: i64| u64::try_from(us.max(0).saturating_add(999) / 1000).unwrap_or(0);
    let reset_at = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(applied.reset_at.div_euclid(1_000)) * 1_000_000,
    )
    .map(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    })
    .unwrap_or_default();
    VerifyRatelimit {
        name: applied.name.to_owned(),
        scope: match applied.scope {
            keyhaven_service::limits::LimitScope::Key => LimitScope::Key,
            keyhaven_service::limits::LimitScope::Owner => LimitScope::Owner,
            keyhaven_service::limits::LimitScope::Client => LimitScope::Client,
        },
        limit: applied.limit,
        duration_ms: applied.duration_ms,
        remaining: applied.remaining,
        reset_at,
        retry_after_ms: applied.retry_after.map(ms),
        exceeded: applied.exceeded,
    }
}

/// A service error as the API would answer it; the key never in its text.
fn service_error(e: ServiceError, key: &str) -> Error {
    let (status, code) = match &e {
        ServiceError::Invalid { code, .. } => (400, *code),
        ServiceError::MissingScope(_) => (403, "insufficient_scope"),
        ServiceError::NotFound => (404, "not_found"),
        ServiceError::Forbidden { code, .. } => (403, *code),
        ServiceError::Conflict { code, .. } => (409, *code),
        ServiceError::IdempotencyMismatch(_) => (422, "idempotency_mismatch"),
        ServiceError::Unexpected(_) => {
            return Error::Embedded(crate::error::redact(&format!("{e:#}"), &[key]));
        }
    };
    Error::Api {
        problem: Problem {
            kind: format!("urn:keyhaven:problem:{code}"),
            title: "Refused".to_owned(),
            status,
            detail: crate::error::redact(&e.to_string(), &[key]),
            code: code.to_owned(),
        },
    }
}
