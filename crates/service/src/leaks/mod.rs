//! Leak response: keys reported as exposed, by a secret scanner or by whoever holds
//! one, are acted on per their keyspace's [`LeakPolicy`].
//!
//! The front doors: `POST /v1/leaks/github` (GitHub's secret scanning partner protocol,
//! signed batches checked in [`github`]), `POST /v1/leaks/report` (a root key with
//! `leaks:write`, for any other scanner and `keyhaven scan --report`) and
//! `POST /v1/keys/self-revoke` (the key itself as the credential, [`self_revoke`]).
//!
//! For each reported token ([`report`]): the format and checksum first (garbage costs
//! no storage), then the key by id and its secret under the pepper — a token is a *true
//! positive* only when it is a working secret of a stored key; anything else is a
//! false positive and changes nothing. Then the policy (root keys are always revoked),
//! the audit entry (action `key.leak`, actor `leak:<source>`) and the `key.leaked`
//! event with its webhooks, all in one transaction for the batch. A key reported before
//! is left as it is: repeats are idempotent.

pub mod github;
mod self_revoke;

use std::collections::HashMap;

use std::sync::Arc;

use keyhaven_core::{ParsedKey, Verification};
use keyhaven_store::{LeakAction, LeakPolicy, LeakWrite, ROOT_KEYSPACE_ID, SeenBatch, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

pub use self::self_revoke::{SelfRevoke, SelfRevoked, self_revoke};
use crate::actor::Actor;
use crate::audit;
use crate::cache::VerifyRecord;
use crate::error::{Result, ServiceError};
use crate::keys::to_completion;
use crate::service::Service;

/// Most keys in one `POST /v1/leaks/report`.
pub const MAX_REPORTED_KEYS: usize = 10_000;
/// Longest `source` name.
pub const MAX_SOURCE_LEN: usize = 64;
/// Longest `url` (where a key was found).
pub const MAX_URL_LEN: usize = 2_000;

/// A keyspace's leak policy in requests and answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeakPolicyName {
    /// The key stops working at once (REVOKED). The default.
    #[default]
    Revoke,
    /// The key is disabled (DISABLED); it can be enabled again.
    Disable,
    /// Only the `key.leaked` event: the owner decides.
    Notify,
}

impl From<LeakPolicyName> for LeakPolicy {
    fn from(p: LeakPolicyName) -> Self {
        match p {
            LeakPolicyName::Revoke => Self::Revoke,
            LeakPolicyName::Disable => Self::Disable,
            LeakPolicyName::Notify => Self::Notify,
        }
    }
}

impl From<LeakPolicy> for LeakPolicyName {
    fn from(p: LeakPolicy) -> Self {
        match p {
            LeakPolicy::Revoke => Self::Revoke,
            LeakPolicy::Disable => Self::Disable,
            LeakPolicy::Notify => Self::Notify,
        }
    }
}

/// `POST /v1/leaks/report`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportLeaks {
    /// The exposed keys as found (1 to 10,000). Tokens that are not working keys of
    /// this deployment are answered `false_positive` and change nothing.
    #[schema(value_type = Vec<String>, min_items = 1, max_items = 10000)]
    pub keys: Vec<SecretString>,
    /// Who found them (1-64 characters of `[a-z0-9._-]`; default `report`): the audit
    /// actor is `leak:<source>`.
    #[schema(max_length = 64)]
    pub source: Option<String>,
    /// Where they were found (up to 2,000 characters), for the event and the audit log.
    #[schema(max_length = 2000)]
    pub url: Option<String>,
}

/// A reported token as judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeakLabel {
    /// A working secret of a key of this deployment.
    TruePositive,
    /// Anything else: wrong format or checksum, unknown key, wrong secret.
    FalsePositive,
}

impl LeakLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TruePositive => "true_positive",
            Self::FalsePositive => "false_positive",
        }
    }
}

/// What a report did to one token's key.
#[derive(Debug, Clone)]
pub struct LeakOutcome {
    pub label: LeakLabel,
    /// The key, for a true positive.
    pub key_id: Option<String>,
    /// What this report did; `None` for a false positive or a key reported before
    /// (`repeat`).
    pub action: Option<LeakAction>,
    /// The key had been reported before: nothing was done this time.
    pub repeat: bool,
}

impl LeakOutcome {
    fn false_positive() -> Self {
        Self {
            label: LeakLabel::FalsePositive,
            key_id: None,
            action: None,
            repeat: false,
        }
    }
}

/// Who reports.
#[derive(Debug, Clone, Copy)]
pub struct Reporter<'a> {
    /// `github`, or the `source` of `POST /v1/leaks/report`.
    pub source: &'a str,
    /// The root key that sent the report, if one did (recorded in the audit entry).
    pub root_key_id: Option<&'a str>,
}

/// One reported token and where it was found. `Debug` leaves the token out.
#[derive(Clone, Copy)]
pub struct Reported<'a> {
    pub token: &'a str,
    /// Checked by [`check_url`]; an unusable one is dropped by the front door.
    pub url: Option<&'a str>,
}

impl std::fmt::Debug for Reported<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reported")
            .field("token", &"<redacted>")
            .field("url", &self.url)
            .finish()
    }
}

/// Checks a report's `source`; returns it (default `report`). [`report`] checks the
/// urls.
pub fn checked_reporter(source: Option<&str>) -> Result<String> {
    let source = source.unwrap_or("report");
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    if source.is_empty() || source.len() > MAX_SOURCE_LEN || !source.chars().all(plain) {
        return Err(ServiceError::invalid(format!(
            "source must be 1-{MAX_SOURCE_LEN} characters of a-z, 0-9, '.', '_' and '-'"
        )));
    }
    if source == "github" {
        // Reserved for batches GitHub signed, so the audit log tells them apart.
        return Err(ServiceError::invalid(
            "source `github` is reserved for POST /v1/leaks/github",
        ));
    }
    Ok(source.to_owned())
}

/// Whether `url` may be stored as where a key was found.
pub fn usable_url(url: &str) -> bool {
    url.chars().count() <= MAX_URL_LEN && !url.chars().any(char::is_control)
}

fn check_url(url: Option<&str>) -> Result<()> {
    if url.is_some_and(|u| !usable_url(u)) {
        return Err(ServiceError::invalid(format!(
            "url must be at most {MAX_URL_LEN} characters without control characters"
        )));
    }
    Ok(())
}

/// Judges every token and acts on the true positives (one transaction for the batch;
/// `batch`, when given, is remembered so a replay can be refused). Answers in the order
/// of `tokens`.
pub async fn report(
    service: &Service,
    actor: &Actor,
    items: &[Reported<'_>],
    reporter: Reporter<'_>,
    batch: Option<SeenBatch<'_>>,
) -> Result<Vec<LeakOutcome>> {
    for item in items {
        check_url(item.url)?;
    }
    let now = service.clock.now();
    let mut outcomes = Vec::with_capacity(items.len());
    // Each key once, at the position of its first token: (outcome index, write index).
    let mut writes: Vec<LeakWrite> = Vec::new();
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut policies: HashMap<String, LeakPolicy> = HashMap::new();
    // Format and checksum first (garbage costs nothing), then the keys the tokens name,
    // read in a few statements rather than one per token.
    let parsed: Vec<Option<ParsedKey<'_>>> = (items.iter())
        .map(|item| keyhaven_core::parse(item.token).ok())
        .collect();
    let mut key_ids: Vec<String> = (parsed.iter().flatten())
        .map(|p| p.key_id().to_owned())
        .collect();
    key_ids.sort_unstable();
    key_ids.dedup();
    let records: HashMap<String, Arc<VerifyRecord>> = (service.store.keys_for_verify(&key_ids))
        .await?
        .into_iter()
        .map(|k| (k.key.key_id.clone(), Arc::new(VerifyRecord::of(k))))
        .collect();
    for (item, parsed) in items.iter().zip(&parsed) {
        let found = parsed
            .as_ref()
            .and_then(|p| Some((p, records.get(p.key_id())?)));
        let key = match found {
            Some((p, record)) if secret_matches(service, p, record)? => record.clone(),
            _ => {
                outcomes.push(LeakOutcome::false_positive());
                continue;
            }
        };
        let key_id = key.key_id().to_owned();
        if !first.contains_key(&key_id) {
            let policy = policy_of(service, &mut policies, key.keyspace_id()).await?;
            let write = leak_write(actor, &key, policy, reporter, item.url, now)?;
            first.insert(key_id.clone(), writes.len());
            writes.push(write);
        }
        outcomes.push(LeakOutcome {
            label: LeakLabel::TruePositive,
            key_id: Some(key_id),
            action: None,
            repeat: false,
        });
    }
    if writes.is_empty() {
        if let Some(batch) = batch {
            service.store.record_leaks(&[], Some(batch)).await?;
        }
        return Ok(outcomes);
    }
    let key_ids: Vec<String> = writes.iter().map(|w| w.key_id.clone()).collect();
    let (store, to_write) = (service.store.clone(), writes.clone());
    let digest = batch.map(|b| (*b.digest, b.at));
    let recorded = to_completion(service, key_ids, async move {
        let batch = digest
            .as_ref()
            .map(|(digest, at)| SeenBatch { digest, at: *at });
        store.record_leaks(&to_write, batch).await
    })
    .await?;
    for outcome in &mut outcomes {
        let Some(index) = outcome.key_id.as_ref().and_then(|id| first.get(id)) else {
            continue;
        };
        let now_recorded = recorded.get(*index).copied().unwrap_or(false);
        outcome.repeat = !now_recorded;
        outcome.action = writes
            .get(*index)
            .filter(|_| now_recorded)
            .map(|w| w.action);
    }
    // A key named twice in one batch is acted on once: its later tokens are repeats.
    let mut seen = std::collections::HashSet::new();
    for outcome in &mut outcomes {
        if let Some(id) = &outcome.key_id
            && !seen.insert(id.clone())
        {
            outcome.repeat = true;
            outcome.action = None;
        }
    }
    Ok(outcomes)
}

/// The stored key whose working secret `token` is, or `None` (a false positive). A
/// token that is not in Keyhaven's format, or fails its checksum, costs no lookup.
async fn working_key(service: &Service, token: &str) -> Result<Option<Arc<VerifyRecord>>> {
    let Ok(parsed) = keyhaven_core::parse(token) else {
        return Ok(None);
    };
    let Some(record) = service
        .cache
        .get(service.store.as_ref(), parsed.key_id())
        .await?
    else {
        return Ok(None);
    };
    Ok(secret_matches(service, &parsed, &record)?.then_some(record))
}

/// Whether `parsed` is a working secret of `record`: the same prefix, a key in
/// Keyhaven's format (not imported), and the secret's MAC under the pepper.
fn secret_matches(
    service: &Service,
    parsed: &ParsedKey<'_>,
    record: &VerifyRecord,
) -> Result<bool> {
    if record.keyspace_prefix() != parsed.prefix() || record.import().is_some() {
        return Ok(false);
    }
    let matched = service
        .peppers
        .verify(parsed.key_id(), parsed.secret(), Some(record.verifier()))
        .map_err(|e| ServiceError::Unexpected(e.into()))?;
    Ok(matches!(matched, Verification::Valid { .. }))
}

/// The leak policy of a keyspace (root keys: always revoke), read once per batch.
async fn policy_of(
    service: &Service,
    policies: &mut HashMap<String, LeakPolicy>,
    keyspace_id: &str,
) -> Result<LeakPolicy> {
    if keyspace_id == ROOT_KEYSPACE_ID {
        return Ok(LeakPolicy::Revoke);
    }
    if let Some(policy) = policies.get(keyspace_id) {
        return Ok(*policy);
    }
    let policy = service
        .store
        .keyspace(keyspace_id)
        .await?
        .map_or(LeakPolicy::Revoke, |ks| ks.leak_policy);
    policies.insert(keyspace_id.to_owned(), policy);
    Ok(policy)
}

/// What to write for a leaked key: its action under `policy` and the audit entry.
fn leak_write(
    actor: &Actor,
    key: &VerifyRecord,
    policy: LeakPolicy,
    reporter: Reporter<'_>,
    url: Option<&str>,
    now: Timestamp,
) -> Result<LeakWrite> {
    let action = match policy {
        LeakPolicy::Revoke if key.revoked() => LeakAction::Unchanged,
        LeakPolicy::Revoke => LeakAction::Revoked,
        LeakPolicy::Disable if key.revoked() || !key.enabled() => LeakAction::Unchanged,
        LeakPolicy::Disable => LeakAction::Disabled,
        LeakPolicy::Notify => LeakAction::Notified,
    };
    let audit = audit::event(
        actor,
        "key.leak",
        ("key", key.key_id()),
        Some(key.keyspace_id()),
        audit::created(&[
            ("source", json!(reporter.source)),
            ("url", json!(url)),
            ("action", json!(action.as_str())),
            ("policy", json!(policy.as_str())),
            ("reported_by", json!(reporter.root_key_id)),
        ]),
        now,
    )?;
    Ok(LeakWrite {
        key_id: key.key_id().to_owned(),
        source: reporter.source.to_owned(),
        url: url.map(str::to_owned),
        action,
        reason: format!("leaked: reported by {}", reporter.source),
        at: now,
        audit,
    })
}

/// [`report`] for `POST /v1/leaks/report`: checks the body, then reports.
pub async fn report_request(
    service: &Service,
    actor: &Actor,
    root_key_id: Option<&str>,
    input: &ReportLeaks,
) -> Result<Vec<LeakOutcome>> {
    if input.keys.is_empty() || input.keys.len() > MAX_REPORTED_KEYS {
        return Err(ServiceError::invalid(format!(
            "keys must hold 1 to {MAX_REPORTED_KEYS} keys"
        )));
    }
    let source = checked_reporter(input.source.as_deref())?;
    let items: Vec<Reported<'_>> = (input.keys.iter())
        .map(|k| Reported {
            token: k.expose_secret(),
            url: input.url.as_deref(),
        })
        .collect();
    let reporter = Reporter {
        source: &source,
        root_key_id,
    };
    let actor = Actor::leak(&source, actor.client_ip().and_then(|ip| ip.parse().ok()));
    report(service, &actor, &items, reporter, None).await
}
