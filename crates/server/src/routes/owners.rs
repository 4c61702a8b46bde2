//! `/v1/owners`: the deployment's customers that keys belong to. Owners are
//! deployment-wide (one customer can hold keys in `acme_live` and `acme_test`), and
//! `external_id` — the id in the company's own database — is unique across the
//! deployment, so `GET /v1/owners?external_id=…` finds at most one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_store::{Change, Limits, Owner, QuotaTarget, QuotaWrite, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::*;
use crate::auth::Scope;
use crate::error::ClientError;
use crate::extract::{ApiPath, ApiQuery, JsonBody};
use keyhaven_service::limits::spec::{
    QuotaBody, QuotaCtx, QuotaView, RateLimitBody, patch_limits, quota, quota_audit,
    rate_limit_views, rate_limits,
};
use keyhaven_service::validate::rfc3339;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OwnerView {
    pub id: String,
    pub external_id: String,
    pub name: Option<String>,
    pub meta: Map<String, Value>,
    /// Rate limits shared by all the owner's keys.
    pub ratelimits: Vec<RateLimitBody>,
    /// Uses shared by all the owner's keys.
    pub quota: Option<QuotaView>,
    pub created_at: String,
    pub updated_at: String,
}

impl OwnerView {
    pub fn new(o: &Owner, ctx: &QuotaCtx<'_>) -> Self {
        Self {
            id: o.id.clone(),
            external_id: o.external_id.clone(),
            name: o.name.clone(),
            meta: o.meta.clone(),
            ratelimits: rate_limit_views(&o.limits.ratelimits),
            quota: ctx.view(QuotaTarget::Owner(o.id.clone()), o.limits.quota.as_ref()),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOwner {
    /// Your id for this customer: 1-255 characters without control characters, unique
    /// in the deployment.
    #[schema(min_length = 1, max_length = 255)]
    pub external_id: String,
    /// 1-200 characters without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Rate limits shared by all the owner's keys (they take precedence over keyspace
    /// defaults of the same name); at most 16.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub ratelimits: Vec<RateLimitBody>,
    /// Uses shared by all the owner's keys.
    pub quota: Option<QuotaBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOwner {
    /// 1-255 characters without control characters, unique in the deployment.
    #[schema(min_length = 1, max_length = 255)]
    pub external_id: Option<String>,
    /// 1-200 characters without control characters; `null` clears the name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub name: Option<Option<String>>,
    pub meta: Option<Map<String, Value>>,
    /// Replaces the rate limits (`[]` removes them); at most 16.
    #[schema(max_items = 16)]
    pub ratelimits: Option<Vec<RateLimitBody>>,
    /// Sets the quota (its counter to `remaining`: a top-up); `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<QuotaBody>)]
    pub quota: Option<Option<QuotaBody>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only the owner with this external id.
    pub external_id: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// Owners are deployment-wide, so a root key limited to some keyspaces may not see or
/// change them (it could read or rename another tenant's customers).
pub(crate) fn refuse_restricted(auth: &RootAuth) -> Result<(), ApiError> {
    if auth.is_restricted() {
        return Err(ApiError::MissingScope("owners:* (unrestricted root key)"));
    }
    Ok(())
}

fn validate_external_id(value: &str) -> Result<(), ApiError> {
    let len = value.chars().count();
    if len == 0 || len > 255 || value.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            "external_id must be 1-255 characters without control characters",
        ));
    }
    Ok(())
}

async fn find(state: &AppState, id: &str) -> Result<Owner, ApiError> {
    if !ids::is_plausible("own", id) {
        return Err(ApiError::NotFound);
    }
    state.store.owner(id).await?.ok_or(ApiError::NotFound)
}

#[utoipa::path(post, path = "/v1/owners", tag = "owners",
    operation_id = "owners_create", request_body = CreateOwner,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    responses(
        (status = 201, description = "The owner, created.", body = OwnerView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    body: JsonBody<CreateOwner>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersWrite)?;
    refuse_restricted(&auth)?;
    let idem = Idempotent::new(&state, &auth, idem, body.request_hash());
    if let Some(replay) = idem.replay().await? {
        return Ok(replay);
    }
    let req = body.value;
    validate_external_id(&req.external_id)?;
    if let Some(name) = &req.name {
        validate_name("name", name)?;
    }
    validate_meta(&req.meta)?;
    let now = state.clock.now();
    let owner = Owner {
        id: ids::new_id("own")?,
        external_id: req.external_id,
        name: req.name,
        meta: req.meta,
        limits: Limits {
            ratelimits: rate_limits(req.ratelimits)?,
            quota: req.quota.map(|q| quota(q, now)).transpose()?,
        },
        created_at: now,
        updated_at: now,
    };
    let body = to_body(&OwnerView::new(&owner, &QuotaCtx::of(&state)))?;
    let event = audit_event(
        &auth,
        "owner.create",
        ("owner", &owner.id),
        None,
        created(&[
            ("external_id", json!(owner.external_id)),
            ("name", json!(owner.name)),
            ("meta", json!(owner.meta)),
            ("quota", quota_audit(owner.limits.quota.as_ref())),
            (
                "ratelimits",
                if owner.limits.ratelimits.is_empty() {
                    Value::Null
                } else {
                    json!(owner.limits.ratelimits)
                },
            ),
        ]),
        now,
    )?;
    let record = idem.record(StatusCode::CREATED, &body, now)?;
    let change = Change {
        audit: &event,
        idempotency: record.as_ref(),
    };
    match state.store.create_owner(&owner, change).await {
        Ok(()) => Ok(json_response(StatusCode::CREATED, body)),
        Err(e) => idem.on_error(e).await,
    }
}

#[utoipa::path(get, path = "/v1/owners", tag = "owners",
    operation_id = "owners_list", params(ListParams),
    responses(
        (status = 200, description = "A page of owners.", body = List<OwnerView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersRead)?;
    refuse_restricted(&auth)?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let ctx = QuotaCtx::of(&state);
    let view = |o: &Owner| OwnerView::new(o, &ctx);
    let list = match params.external_id {
        Some(external_id) => {
            let found = state.store.owner_by_external_id(&external_id).await?;
            List::new(found.iter().map(view).collect(), None)
        }
        None => {
            let page = state.store.list_owners(page).await?;
            List::new(page.items.iter().map(view).collect(), page.next)
        }
    };
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/owners/{id}", tag = "owners",
    operation_id = "owners_get", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The owner.", body = OwnerView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersRead)?;
    refuse_restricted(&auth)?;
    let owner = find(&state, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&OwnerView::new(&owner, &QuotaCtx::of(&state)))?,
    ))
}

#[utoipa::path(patch, path = "/v1/owners/{id}", tag = "owners",
    operation_id = "owners_update", params(("id" = String, Path)),
    request_body = UpdateOwner,
    responses(
        (status = 200, description = "The owner, updated.", body = OwnerView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
    body: JsonBody<UpdateOwner>,
) -> Result<Response, ApiError> {
    auth.require(Scope::OwnersWrite)?;
    refuse_restricted(&auth)?;
    let before = find(&state, &id).await?;
    let mut after = before.clone();
    let req = body.value;
    if let Some(external_id) = req.external_id {
        validate_external_id(&external_id)?;
        after.external_id = external_id;
    }
    if let Some(name) = req.name {
        if let Some(name) = &name {
            validate_name("name", name)?;
        }
        after.name = name;
    }
    if let Some(meta) = req.meta {
        validate_meta(&meta)?;
        after.meta = meta;
    }
    let now = state.clock.now();
    let quota_write = patch_limits(&mut after.limits, req.ratelimits, req.quota, now)?;
    after.updated_at = now;
    let event = audit_event(
        &auth,
        "owner.update",
        ("owner", &id),
        None,
        diff(&[
            (
                "external_id",
                json!(before.external_id),
                json!(after.external_id),
            ),
            ("name", json!(before.name), json!(after.name)),
            ("meta", json!(before.meta), json!(after.meta)),
            (
                "ratelimits",
                json!(before.limits.ratelimits),
                json!(after.limits.ratelimits),
            ),
            (
                "quota",
                if quota_write == QuotaWrite::Set {
                    quota_audit(before.limits.quota.as_ref())
                } else {
                    Value::Null
                },
                if quota_write == QuotaWrite::Set {
                    quota_audit(after.limits.quota.as_ref())
                } else {
                    Value::Null
                },
            ),
        ]),
        now,
    )?;
    // On a task of its own, so a request cut off after the commit still updates this
    // node's counter and cache (as key mutations do).
    let task = {
        let (inner, after) = (state.clone(), after.clone());
        tokio::spawn(async move {
            let store = inner.store.as_ref();
            let write = store.update_owner(&after, quota_write, Change::audited(&event));
            let result = if quota_write == QuotaWrite::Set {
                let target = QuotaTarget::Owner(after.id.clone());
                (inner.limits.quotas)
                    .replace(store, &target, after.limits.quota.as_ref(), write)
                    .await
            } else {
                write.await
            };
            // Verify answers carry the owner's external id and limits.
            inner.cache.invalidate_all();
            result
        })
    };
    task.await.map_err(|e| {
        StoreError::Unexpected(anyhow::anyhow!("an owner update task failed: {e}"))
    })??;

    Ok(json_response(
        StatusCode::OK,
        to_body(&OwnerView::new(&after, &QuotaCtx::of(&state)))?,
    ))
}

#[utoipa::path(delete, path = "/v1/owners/{id}", tag = "owners",
    operation_id = "owners_delete", params(("id" = String, Path)),
    responses(
        (status = 204, description = "The owner was deleted."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::OwnersWrite)?;
    refuse_restricted(&auth)?;
    let owner = find(&state, &id).await?;
    let now = state.clock.now();
    let event = audit_event(
        &auth,
        "owner.delete",
        ("owner", &id),
        None,
        created(&[("external_id", json!(owner.external_id))]),
        now,
    )?;
    state
        .store
        .delete_owner(&id, Change::audited(&event))
        .await?;
    state.cache.invalidate_all();
    Ok(StatusCode::NO_CONTENT)
}
