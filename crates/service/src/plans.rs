//! Plans: named, deployment-wide templates of rate limits, a quota, scopes, roles,
//! permissions and a maximum key age. Keys and owners name one (`plan`); what they set
//! themselves overrides the plan's (rate limits by name, the quota as a whole), scopes,
//! roles and permissions add up, and the shorter maximum key age wins. A plan is
//! resolved when a key's record is read for verification, so every change here
//! empties every verify cache: an edit reaches every key on the plan, on every node,
//! within the cache-coherence bound.
//!
//! A plan's quota is a template: a key or owner joining the plan without a quota of
//! its own gets a counter starting at the plan's `remaining`, which refills by the
//! plan's rule (edits to the rule reach every such counter). Counters move with use,
//! so a plan edit never resets them; the credits API changes them.
//!
//! Plans are deployment-wide (an owner's keys may span keyspaces), so an actor limited
//! to some keyspaces may read them but not change them.

use keyhaven_store::{Change, Grants, Limits, Plan, Quota, QuotaWrite, Timestamp};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::idempotency::{Done, Idempotent, Rendered};
use crate::limits::spec::{QuotaBody, RateLimitBody, quota, quota_audit, rate_limits};
use crate::patch::double_option;
use crate::service::Service;
use crate::validate;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    /// Unique in the deployment: 1-100 characters of `[A-Za-z0-9_.:-]` (it is a path
    /// segment of the plan's own URL).
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Up to 500 characters without control characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Rate limits of every key on the plan (of every owner on it: shared by its keys);
    /// a key's or owner's own limit of the same name overrides one. At most 16.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub ratelimits: Vec<RateLimitBody>,
    /// What each key or owner joining the plan without a quota of its own starts with
    /// (`remaining`), and how its counter refills.
    pub quota: Option<QuotaBody>,
    /// Scopes every key on the plan holds, besides its own; at most 64.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub scopes: Vec<String>,
    /// Roles (by name, resolved in each key's keyspace) every key on the plan holds;
    /// at most 64.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub roles: Vec<String>,
    /// Permissions every key on the plan holds; at most 64.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub permissions: Vec<String>,
    /// Keys on the plan stop verifying this many seconds after their creation (1 s to
    /// 100 years); the keyspace's own maximum applies as well.
    pub max_key_age_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlan {
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    /// Replaces the rate limits (`[]` removes them).
    #[schema(max_items = 16)]
    pub ratelimits: Option<Vec<RateLimitBody>>,
    /// Replaces the quota template (`null` removes it: counters taken from the plan end).
    /// Keys and owners on the plan without a counter get one; existing counters keep
    /// their uses and follow the new refill.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<QuotaBody>)]
    pub quota: Option<Option<QuotaBody>>,
    /// Replaces the scopes.
    #[schema(max_items = 64)]
    pub scopes: Option<Vec<String>>,
    /// Replaces the roles.
    #[schema(max_items = 64)]
    pub roles: Option<Vec<String>>,
    /// Replaces the permissions.
    #[schema(max_items = 64)]
    pub permissions: Option<Vec<String>>,
    /// `null` removes the maximum age.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub max_key_age_seconds: Option<Option<i64>>,
}

fn check_max_age(seconds: Option<i64>) -> Result<()> {
    match seconds {
        Some(s) if !(1..=crate::keyspaces::MAX_POLICY_SECONDS).contains(&s) => {
            Err(ServiceError::invalid(format!(
                "max_key_age_seconds must be between 1 and {} seconds",
                crate::keyspaces::MAX_POLICY_SECONDS
            )))
        }
        _ => Ok(()),
    }
}

/// Refuses an actor limited to keyspaces: a plan reaches keys of every keyspace.
fn require_unrestricted(actor: &Actor) -> Result<()> {
    if actor.is_restricted() {
        return Err(ServiceError::MissingScope(
            "keyspaces:write (unrestricted root key)",
        ));
    }
    Ok(())
}

/// Most plans in a deployment.
pub const MAX_PLANS: usize = 1_000;

/// Refuses a plan name that is not a plan (a key or owner may only name plans that
/// exist); returns the plan.
pub(crate) async fn check_exists(service: &Service, name: &str) -> Result<Plan> {
    let unknown = || ServiceError::invalid(format!("plan: `{name}` is not a plan"));
    if !keyhaven_core::permissions::valid_name(name) {
        return Err(unknown());
    }
    service.store.plan(name).await?.ok_or_else(unknown)
}

/// The quota counter a key or owner joining `plan` starts with: none when it has a quota
/// of its own (`own`), else the plan's `remaining`, refilling by the plan's rule.
pub(crate) fn joining_quota(
    plan: Option<&Plan>,
    own: Option<&Quota>,
    now: Timestamp,
) -> Option<Quota> {
    if own.is_some_and(|q| !q.from_plan) {
        return own.copied();
    }
    let template = plan?.limits.quota.as_ref()?;
    Some(Quota {
        remaining: template.remaining,
        refill: None,
        refilled_at: keyhaven_store::quota_set_at(own, now),
        from_plan: true,
    })
}

/// Applies a PATCH's `plan` (`Some(None)`: leave the plan) to a key's or owner's
/// grants and limits, after the rest of the PATCH (`quota_write` says whether it set a
/// quota of its own). A counter taken from the old plan is replaced by one from the new
/// plan (or ends); a quota of its own stays. Returns whether the quota is to be written.
pub(crate) async fn patch(
    service: &Service,
    grants: &mut Grants,
    limits: &mut Limits,
    new: Option<Option<String>>,
    quota_write: QuotaWrite,
    now: Timestamp,
) -> Result<QuotaWrite> {
    let Some(new) = new else {
        return Ok(quota_write);
    };
    if new == grants.plan {
        return Ok(quota_write);
    }
    let plan = match &new {
        Some(name) => Some(check_exists(service, name).await?),
        None => None,
    };
    grants.plan = new;
    if quota_write == QuotaWrite::Set || limits.quota.is_some_and(|q| !q.from_plan) {
        return Ok(quota_write);
    }
    limits.quota = joining_quota(plan.as_ref(), limits.quota.as_ref(), now);
    Ok(QuotaWrite::Set)
}

/// Every plan, by name.
pub async fn list(service: &Service) -> Result<Vec<Plan>> {
    Ok(service.store.list_plans().await?)
}

/// One plan, or `NotFound`.
pub async fn find(service: &Service, name: &str) -> Result<Plan> {
    if !keyhaven_core::permissions::valid_name(name) {
        return Err(ServiceError::NotFound);
    }
    service
        .store
        .plan(name)
        .await?
        .ok_or(ServiceError::NotFound)
}

fn audited(p: &Plan) -> [(&'static str, serde_json::Value); 7] {
    [
        ("description", json!(p.description)),
        ("ratelimits", audit::list_value(&p.limits.ratelimits)),
        ("quota", quota_audit(p.limits.quota.as_ref())),
        ("scopes", audit::list_value(&p.scopes)),
        ("roles", audit::list_value(&p.grants.roles)),
        ("permissions", audit::list_value(&p.grants.permissions)),
        ("max_key_age_seconds", json!(p.max_key_age)),
    ]
}

/// Creates a plan. `render` shapes the answer, stored with the change for `idem`'s
/// replays.
#[tracing::instrument(skip_all)]
pub async fn create(
    service: &Service,
    actor: &Actor,
    input: CreatePlan,
    idem: &Idempotent<'_>,
    render: impl FnOnce(&Plan) -> Result<Rendered>,
) -> Result<Done> {
    require_unrestricted(actor)?;
    if let Some(replay) = idem.replay().await? {
        return Ok(Done::Replayed(replay));
    }
    let starts_well = input.name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !keyhaven_core::permissions::valid_name(&input.name)
        || input.name.contains(['/', '*'])
        || !starts_well
    {
        return Err(ServiceError::invalid(
            "name must be 1-100 characters of [A-Za-z0-9_.:-] starting with a letter or \
             digit, and not AND or OR",
        ));
    }
    validate::description(input.description.as_deref())?;
    check_max_age(input.max_key_age_seconds)?;
    validate::scopes(&input.scopes)?;
    let now = service.clock.now();
    let plan = Plan {
        name: input.name,
        description: input.description,
        limits: Limits {
            ratelimits: rate_limits(input.ratelimits)?,
            quota: input.quota.map(|q| quota(q, now)).transpose()?,
        },
        scopes: input.scopes,
        grants: Grants {
            plan: None,
            roles: validate::grant_names("roles", input.roles)?,
            permissions: validate::grant_names("permissions", input.permissions)?,
        },
        max_key_age: input.max_key_age_seconds,
        created_at: now,
        updated_at: now,
    };
    if service.store.list_plans().await?.len() >= MAX_PLANS {
        return Err(ServiceError::invalid(format!(
            "a deployment holds at most {MAX_PLANS} plans"
        )));
    }
    let answer = render(&plan)?;
    let mut fields = audit::created(&audited(&plan));
    fields.insert("name".into(), json!(plan.name));
    let event = audit::event(
        actor,
        "plan.create",
        ("plan", &plan.name),
        None,
        fields,
        now,
    )?;
    let done = idem
        .commit(answer, &event, now, async |change| {
            service.store.create_plan(&plan, change).await
        })
        .await;
    service.cache.invalidate_all();
    done
}

/// Changes a plan; every key on it (and every key of an owner on it) follows from its
/// next verification. Returns the plan as stored.
#[tracing::instrument(skip_all)]
pub async fn update(
    service: &Service,
    actor: &Actor,
    name: &str,
    input: UpdatePlan,
) -> Result<Plan> {
    require_unrestricted(actor)?;
    let before = find(service, name).await?;
    let mut after = before.clone();
    let now = service.clock.now();
    if let Some(description) = input.description {
        validate::description(description.as_deref())?;
        after.description = description;
    }
    if let Some(limits) = input.ratelimits {
        after.limits.ratelimits = rate_limits(limits)?;
    }
    let seed_quota = input.quota.is_some();
    if let Some(q) = input.quota {
        after.limits.quota = q.map(|q| quota(q, now)).transpose()?;
    }
    if let Some(scopes) = input.scopes {
        validate::scopes(&scopes)?;
        after.scopes = scopes;
    }
    if let Some(roles) = input.roles {
        after.grants.roles = validate::grant_names("roles", roles)?;
    }
    if let Some(permissions) = input.permissions {
        after.grants.permissions = validate::grant_names("permissions", permissions)?;
    }
    if let Some(age) = input.max_key_age_seconds {
        check_max_age(age)?;
        after.max_key_age = age;
    }
    after.updated_at = now;
    let changes: Vec<_> = audited(&before)
        .into_iter()
        .zip(audited(&after))
        .map(|((field, from), (_, to))| (field, from, to))
        .collect();
    let event = audit::event(
        actor,
        "plan.update",
        ("plan", name),
        None,
        audit::diff(&changes),
        now,
    )?;
    let (inner, stored) = (service.clone(), after.clone());
    crate::roles::to_completion(service, async move {
        let store = inner.store.as_ref();
        (store.update_plan(&stored, seed_quota, Change::audited(&event))).await
    })
    .await?;
    Ok(after)
}

/// Deletes a plan no key or owner is on (`PlanInUse` otherwise).
#[tracing::instrument(skip_all)]
pub async fn delete(service: &Service, actor: &Actor, name: &str) -> Result<()> {
    require_unrestricted(actor)?;
    let plan = find(service, name).await?;
    let event = audit::event(
        actor,
        "plan.delete",
        ("plan", &plan.name),
        None,
        audit::created(&audited(&plan)),
        service.clock.now(),
    )?;
    let inner = service.clone();
    crate::roles::to_completion(service, async move {
        let store = inner.store.as_ref();
        store.delete_plan(&plan.name, Change::audited(&event)).await
    })
    .await
}
