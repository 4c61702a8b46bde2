//! `/v1/keys`: create (the only time the plaintext is returned), list, get, patch,
//! revoke, delete. Keys in keyspaces a root key may not see, and root keys themselves,
//! are 404 here exactly like keys that do not exist.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhaven_core::{GeneratedKey, KeyId, Prefix, Verifier};
use keyhaven_store::{
    Change, KeyFilter, KeyForVerify, KeyRecord, Limits, QuotaTarget, QuotaWrite, StoreError,
    Timestamp,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::keyspaces::{rfc3339, visible_keyspace};
use super::*;
use crate::auth::{RootAuth, Scope};
use crate::error::ClientError;
use crate::extract::{ApiPath, ApiQuery, IdempotencyKey, JsonBody};
use keyhaven_service::idempotency;
use keyhaven_service::keys::{self, RevokeKey};
use keyhaven_service::limits::spec::{
    QuotaBody, QuotaCtx, QuotaView, RateLimitBody, patch_limits, quota, quota_audit,
    rate_limit_views, rate_limits,
};

/// A key as the API shows it: never the secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub key_id: String,
    pub keyspace_id: String,
    pub owner_id: Option<String>,
    pub name: Option<String>,
    /// Identifies the key without revealing it: `acme_live_7Gx9QbWkP2mZ_…aB3c`.
    pub start: String,
    pub scopes: Vec<String>,
    pub meta: Map<String, Value>,
    pub enabled: bool,
    /// Whether the plaintext can be revealed again (`POST /v1/keys/{key_id}/reveal`).
    pub recoverable: bool,
    /// For an imported key: the scheme its old system used.
    pub import_format: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    /// Set once the key was rotated: the successor's key id.
    pub rotated_to: Option<String>,
    /// When a rotated key stops verifying (answers REVOKED from then on).
    pub grace_until: Option<String>,
    /// The key this one replaced, for a key created by a rotation.
    pub rotated_from: Option<String>,
    /// The key's own rate limits (its keyspace's defaults apply besides).
    pub ratelimits: Vec<RateLimitBody>,
    /// The key's own quota of uses.
    pub quota: Option<QuotaView>,
    pub last_used_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl KeyView {
    /// A found key as the API shows it, its quota as it stands now.
    pub fn of(state: &AppState, k: &KeyForVerify) -> Self {
        Self::new(&k.key, &k.keyspace_prefix, &QuotaCtx::of(state))
    }

    pub fn new(key: &KeyRecord, prefix: &str, ctx: &QuotaCtx<'_>) -> Self {
        Self {
            key_id: key.key_id.clone(),
            keyspace_id: key.keyspace_id.clone(),
            owner_id: key.owner_id.clone(),
            name: key.name.clone(),
            start: match &key.import {
                None => keyhaven_core::format::display_form(prefix, &key.key_id, &key.last4),
                Some(i) => match (i.format.as_str(), i.public.as_deref()) {
                    ("prefixed_sha256", Some(id)) => format!("{id}_\u{2026}"),
                    ("dotted_sha512", Some(id)) => format!("{id}.\u{2026}"),
                    (format, _) => format!("\u{2026} (imported, {format})"),
                },
            },
            import_format: key.import.as_ref().map(|i| i.format.clone()),
            scopes: key.scopes.clone(),
            meta: key.meta.clone(),
            enabled: key.enabled,
            recoverable: key.sealed_key.is_some(),
            expires_at: key.expires_at.map(rfc3339),
            revoked_at: key.revoked_at.map(rfc3339),
            revoked_reason: key.revoked_reason.clone(),
            rotated_to: key.rotation.as_ref().map(|r| r.successor.clone()),
            grace_until: key.rotation.as_ref().map(|r| rfc3339(r.grace_until)),
            rotated_from: key.rotated_from.clone(),
            ratelimits: rate_limit_views(&key.limits.ratelimits),
            quota: ctx.view(
                QuotaTarget::Key(key.key_id.clone()),
                key.limits.quota.as_ref(),
            ),
            last_used_at: key.last_used_at.map(rfc3339),
            created_at: rfc3339(key.created_at),
            updated_at: rfc3339(key.updated_at),
        }
    }
}

/// The answer to a key creation: the key itself, shown this once, and its record.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The plaintext key. Keyhaven keeps only a peppered HMAC: it cannot show it again.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyView,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub keyspace_id: String,
    pub owner_id: Option<String>,
    /// 1-200 characters without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Up to 64 scopes, each 1-100 characters of `[A-Za-z0-9_:.*/-]`.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// RFC 3339; must be in the future.
    pub expires_at: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Keep the plaintext, sealed under the server's master key, so a root key with
    /// `keys:reveal` can see it again. Default false.
    pub recoverable: Option<bool>,
    /// The key's own rate limits: override its keyspace's (and owner's) of the same
    /// name, or add to them; at most 16.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub ratelimits: Vec<RateLimitBody>,
    /// Remaining uses, optionally refilled daily or monthly.
    pub quota: Option<QuotaBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// 1-200 characters without control characters; `null` clears the name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub owner_id: Option<Option<String>>,
    /// Replaces the scopes: up to 64, each 1-100 characters of `[A-Za-z0-9_:.*/-]`.
    #[schema(max_items = 64)]
    pub scopes: Option<Vec<String>>,
    pub meta: Option<Map<String, Value>>,
    /// RFC 3339, or `null` for no expiry.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    pub enabled: Option<bool>,
    /// Replaces the key's own rate limits (`[]` removes them); at most 16.
    #[schema(max_items = 16)]
    pub ratelimits: Option<Vec<RateLimitBody>>,
    /// Sets the quota (its counter to `remaining`: a top-up); `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<QuotaBody>)]
    pub quota: Option<Option<QuotaBody>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps verifying (VALID, with `rotation` set in verify answers);
    /// then it answers REVOKED. Default: the keyspace's `default_grace_seconds`, else 0
    /// (ends it at once); at most one year (31622400).
    #[schema(maximum = 31622400)]
    pub grace_period_seconds: Option<u64>,
}

pub const MAX_GRACE_SECONDS: u64 = 366 * 24 * 3600;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub keyspace_id: Option<String>,
    pub owner_id: Option<String>,
    /// `created` (newest first, the default) or `last_used` (most recently used first,
    /// never-used keys last).
    pub sort: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

pub const MAX_SCOPES: usize = 64;

pub fn validate_scopes(scopes: &[String]) -> Result<(), ApiError> {
    if scopes.len() > MAX_SCOPES {
        return Err(ApiError::invalid(format!("at most {MAX_SCOPES} scopes")));
    }
    let ok = |s: &String| {
        (1..=100).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_:.*/-".contains(&b))
    };
    if !scopes.iter().all(ok) {
        return Err(ApiError::invalid(
            "each scope must be 1-100 characters of [A-Za-z0-9_:.*/-]",
        ));
    }
    Ok(())
}

pub fn parse_time(field: &str, value: &str) -> Result<Timestamp, ApiError> {
    let t = Timestamp::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::invalid(format!("{field} must be an RFC 3339 timestamp")))?;
    let t = t
        .checked_to_offset(time::UtcOffset::UTC)
        .ok_or_else(|| ApiError::invalid(format!("{field} is out of the supported range")))?;
    Ok(t.replace_nanosecond(0).unwrap_or(t))
}

/// Owners are deployment-wide: only an unrestricted root key may assign them.
fn owner_allowed(auth: &RootAuth) -> Result<(), ApiError> {
    if auth.is_restricted() {
        return Err(ApiError::invalid(
            "owner_id can only be set by a root key not limited to keyspaces",
        ));
    }
    Ok(())
}

async fn check_owner(state: &AppState, owner_id: &str) -> Result<(), ApiError> {
    let exists = ids::is_plausible("own", owner_id) && state.store.owner(owner_id).await?.is_some();
    if exists {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "owner_id does not name an existing owner",
        ))
    }
}

/// A key this root key may see, with its keyspace, or 404.
pub(crate) async fn visible_key(
    state: &AppState,
    auth: &RootAuth,
    key_id: &str,
) -> Result<KeyForVerify, ApiError> {
    if KeyId::parse(key_id).is_none() {
        return Err(ApiError::NotFound);
    }
    match state.store.key_for_verify(key_id).await? {
        Some(k) if auth.sees_keyspace(&k.key.keyspace_id) => Ok(k),
        _ => Err(ApiError::NotFound),
    }
}

/// Runs a key mutation and then invalidates `key_ids` in the verify cache on a task of
/// its own, so both finish even if the request is cut off (timeout, client gone) while
/// the database commits: otherwise a committed revoke could stay cached as VALID.
async fn to_completion(
    state: &AppState,
    key_ids: Vec<String>,
    mutation: impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
) -> Result<(), StoreError> {
    let state = state.clone();
    tokio::spawn(async move {
        let result = mutation.await;
        for id in &key_ids {
            state.cache.invalidate(id);
        }
        result
    })
    .await
    .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("a key mutation task failed: {e}")))?
}

/// Keyspace prefixes for a page of keys (for their display form): one read per distinct
/// keyspace.
#[derive(Debug, Default)]
struct Prefixes(Vec<(String, String)>);

impl Prefixes {
    async fn of(&mut self, state: &AppState, keyspace_id: &str) -> Result<String, ApiError> {
        if let Some((_, p)) = self.0.iter().find(|(id, _)| id == keyspace_id) {
            return Ok(p.clone());
        }
        let prefix = state
            .store
            .keyspace(keyspace_id)
            .await?
            .map(|k| k.prefix)
            .unwrap_or_default();
        self.0.push((keyspace_id.to_owned(), prefix.clone()));
        Ok(prefix)
    }
}

/// The earlier of `expires_at` and `now + max_age`.
fn cap_expiry(
    expires_at: Option<Timestamp>,
    max_age: Option<i64>,
    now: Timestamp,
) -> Option<Timestamp> {
    let by_age = max_age.map(|age| now + time::Duration::seconds(age));
    match (expires_at, by_age) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A new key under `prefix` and its verifier under the newest pepper.
fn mint(state: &AppState, prefix: &str) -> Result<(GeneratedKey, Verifier), ApiError> {
    let prefix = Prefix::new(prefix).map_err(|e| ApiError::Unexpected(e.into()))?;
    let generated = keyhaven_core::generate(&prefix).map_err(|e| ApiError::Unexpected(e.into()))?;
    let secret = keyhaven_core::parse(generated.key().expose_secret())
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("generated key failed to parse: {e:?}")))?
        .secret();
    let verifier = state.peppers.verifier(generated.key_id().as_str(), secret);
    Ok((generated, verifier))
}

fn seal(state: &AppState, key_id: &str, plaintext: &str) -> Result<Vec<u8>, ApiError> {
    let master = state.master_keys.as_ref().ok_or_else(|| {
        ApiError::bad_request(
            "recoverable_keys_disabled",
            "This server has no master key, so it cannot keep recoverable keys.",
        )
    })?;
    Ok(keyhaven_service::recoverable::seal(
        master, key_id, plaintext,
    )?)
}

fn key_fields(k: &KeyRecord) -> [(&'static str, Value); 7] {
    [
        (
            "ratelimits",
            if k.limits.ratelimits.is_empty() {
                Value::Null
            } else {
                json!(k.limits.ratelimits)
            },
        ),
        ("name", json!(k.name)),
        ("owner_id", json!(k.owner_id)),
        ("scopes", json!(k.scopes)),
        ("meta", json!(k.meta)),
        ("expires_at", json!(k.expires_at.map(rfc3339))),
        ("enabled", json!(k.enabled)),
    ]
}

#[utoipa::path(post, path = "/v1/keys", tag = "keys",
    operation_id = "keys_create", request_body = CreateKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    responses(
        (status = 201, body = CreatedKey,
            description = "The key, created; `key` is its plaintext, shown only this once."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    body: JsonBody<CreateKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let idem = Idempotent::new(&state, &auth, idem, body.request_hash());
    if let Some(replay) = idem.replay().await? {
        return Ok(replay);
    }
    let req = body.value;
    let keyspace = visible_keyspace(&state, &auth, &req.keyspace_id)
        .await
        .map_err(|e| match e {
            ApiError::NotFound => ApiError::invalid("keyspace_id does not name a keyspace"),
            other => other,
        })?;
    if let Some(name) = &req.name {
        validate_name("name", name)?;
    }
    validate_scopes(&req.scopes)?;
    validate_meta(&req.meta)?;
    let now = state.clock.now();
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|t| parse_time("expires_at", t))
        .transpose()?;
    if expires_at.is_some_and(|t| t <= now) {
        return Err(ApiError::invalid("expires_at must be in the future"));
    }
    // The keyspace's maximum age caps the expiry (it is also enforced when verifying).
    let expires_at = cap_expiry(expires_at, keyspace.policy.max_key_age, now);
    if let Some(owner_id) = &req.owner_id {
        owner_allowed(&auth)?;
        check_owner(&state, owner_id).await?;
    }
    let (generated, verifier) = mint(&state, &keyspace.prefix)?;
    let sealed_key = if req.recoverable.unwrap_or(false) {
        Some(seal(
            &state,
            generated.key_id().as_str(),
            generated.key().expose_secret(),
        )?)
    } else {
        None
    };
    let record = KeyRecord {
        key_id: generated.key_id().as_str().to_owned(),
        keyspace_id: keyspace.id.clone(),
        owner_id: req.owner_id,
        name: req.name,
        last4: generated.last4().to_owned(),
        verifier,
        scopes: req.scopes,
        meta: req.meta,
        allowed_keyspaces: None,
        enabled: req.enabled.unwrap_or(true),
        expires_at,
        revoked_at: None,
        revoked_reason: None,
        rotation: None,
        rotated_from: None,
        sealed_key,
        import: None,
        limits: Limits {
            ratelimits: rate_limits(req.ratelimits)?,
            quota: req.quota.map(|q| quota(q, now)).transpose()?,
        },
        last_used_at: None,
        created_at: now,
        updated_at: now,
    };
    let response = CreatedKey {
        key: generated.key().expose_secret().to_owned(),
        record: KeyView::new(&record, &keyspace.prefix, &QuotaCtx::of(&state)),
    };
    let mut response = response;
    let body = zeroize::Zeroizing::new(to_body(&response)?);
    zeroize::Zeroize::zeroize(&mut response.key);
    let event = audit_event(
        &auth,
        "key.create",
        ("key", &record.key_id),
        Some(&record.keyspace_id),
        {
            let mut fields = created(&key_fields(&record));
            if record.limits.quota.is_some() {
                fields.insert("quota".into(), quota_audit(record.limits.quota.as_ref()));
            }
            fields
        },
        now,
    )?;
    let saved = idem.record(StatusCode::CREATED, &body, now)?;
    let change = Change {
        audit: &event,
        idempotency: saved.as_ref(),
    };
    match state.store.create_key(&record, change).await {
        Ok(()) => {
            state.cache.invalidate(&record.key_id);
            Ok(json_response(StatusCode::CREATED, body.to_vec()))
        }
        Err(e) => idem.on_error(e).await,
    }
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", operation_id = "keys_list", params(ListParams),
    responses(
        (status = 200, description = "A page of keys.", body = List<KeyView>),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysRead)?;
    let by_last_used = match params.sort.as_deref() {
        None | Some("created") => false,
        Some("last_used") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "sort must be `created` or `last_used`",
            ));
        }
    };
    let (last_used_before, page) = sorted_page_request(params.limit, params.cursor.as_deref())?;
    if last_used_before.is_some() != (by_last_used && page.after.is_some()) {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            "cursor is not one this server returned for this sort",
        ));
    }
    if let Some(ks) = &params.keyspace_id
        && !auth.sees_keyspace(ks)
    {
        // An invisible keyspace lists like an empty one.
        return Ok(json_response(
            StatusCode::OK,
            to_body(&List::<KeyView>::new(vec![], None))?,
        ));
    }
    let filter = KeyFilter {
        visible: auth.visible(),
        keyspace_id: params.keyspace_id.as_deref(),
        owner_id: params.owner_id.as_deref(),
        by_last_used,
        last_used_before,
    };
    let page = state.store.list_keys(&filter, page).await?;
    let next_cursor = match (page.next, page.items.last()) {
        (Some(seq), Some(last)) if by_last_used => Some(encode_sorted_cursor(
            last.last_used_at.map_or(0, |t| t.unix_timestamp()),
            seq,
        )),
        (next, _) => next.map(encode_cursor),
    };
    let mut prefixes = Prefixes::default();
    let mut views = Vec::with_capacity(page.items.len());
    let ctx = QuotaCtx::of(&state);
    for key in &page.items {
        views.push(KeyView::new(
            key,
            &prefixes.of(&state, &key.keyspace_id).await?,
            &ctx,
        ));
    }
    let list = List {
        data: views,
        next_cursor,
    };
    Ok(json_response(StatusCode::OK, to_body(&list)?))
}

#[utoipa::path(get, path = "/v1/keys/{key_id}", tag = "keys",
    operation_id = "keys_get", params(("key_id" = String, Path)),
    responses(
        (status = 200, description = "The key (never its secret).", body = KeyView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysRead)?;
    let k = visible_key(&state, &auth, &key_id).await?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&KeyView::new(
            &k.key,
            &k.keyspace_prefix,
            &QuotaCtx::of(&state),
        ))?,
    ))
}

#[utoipa::path(patch, path = "/v1/keys/{key_id}", tag = "keys",
    operation_id = "keys_update", params(("key_id" = String, Path)),
    request_body = UpdateKey,
    responses(
        (status = 200, description = "The key, updated.", body = KeyView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
    body: JsonBody<UpdateKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let found = visible_key(&state, &auth, &key_id).await?;
    let before = found.key;
    let mut after = before.clone();
    let req = body.value;
    if let Some(name) = req.name {
        if let Some(name) = &name {
            validate_name("name", name)?;
        }
        after.name = name;
    }
    if let Some(owner_id) = req.owner_id {
        owner_allowed(&auth)?;
        if let Some(owner_id) = &owner_id {
            check_owner(&state, owner_id).await?;
        }
        after.owner_id = owner_id;
    }
    if let Some(scopes) = req.scopes {
        validate_scopes(&scopes)?;
        after.scopes = scopes;
    }
    if let Some(meta) = req.meta {
        validate_meta(&meta)?;
        after.meta = meta;
    }
    if let Some(expires_at) = req.expires_at {
        after.expires_at = expires_at
            .as_deref()
            .map(|t| parse_time("expires_at", t))
            .transpose()?;
    }
    if let Some(enabled) = req.enabled {
        after.enabled = enabled;
    }
    let now = state.clock.now();
    let quota_write = patch_limits(&mut after.limits, req.ratelimits, req.quota, now)?;
    after.updated_at = now;
    let mut changes: Vec<(&str, Value, Value)> = key_fields(&before)
        .into_iter()
        .zip(key_fields(&after))
        .map(|((name, from), (_, to))| (name, from, to))
        .collect();
    if quota_write == QuotaWrite::Set {
        changes.push((
            "quota",
            quota_audit(before.limits.quota.as_ref()),
            quota_audit(after.limits.quota.as_ref()),
        ));
    }
    let event = audit_event(
        &auth,
        "key.update",
        ("key", &key_id),
        Some(&before.keyspace_id),
        diff(&changes),
        now,
    )?;
    let result = {
        let (inner, after) = (state.clone(), after.clone());
        let event = event.clone();
        to_completion(&state, vec![key_id.clone()], async move {
            let store = inner.store.as_ref();
            let write = store.update_key(&after, quota_write, Change::audited(&event));
            if quota_write == QuotaWrite::Keep {
                return write.await;
            }
            let target = QuotaTarget::Key(after.key_id.clone());
            (inner.limits.quotas)
                .replace(store, &target, after.limits.quota.as_ref(), write)
                .await
        })
        .await
    };
    result?;
    Ok(json_response(
        StatusCode::OK,
        to_body(&KeyView::new(
            &after,
            &found.keyspace_prefix,
            &QuotaCtx::of(&state),
        ))?,
    ))
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/revoke", tag = "keys", operation_id = "keys_revoke",
    params(("key_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    request_body = RevokeKey,
    responses(
        (status = 200, description = "The key, revoked.", body = KeyView),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    ApiPath(key_id): ApiPath<String>,
    body: JsonBody<RevokeKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let idem = idempotency::Idempotent::new(&state, &auth, idem.0, body.request_hash());
    let done = keys::revoke(&state, &auth, &key_id, body.value, &idem, |k| {
        render(StatusCode::OK, &KeyView::of(&state, k))
    })
    .await?;
    Ok(answer(done))
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/rotate", tag = "keys", operation_id = "keys_rotate",
    params(("key_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replay protection")),
    request_body = RotateKey,
    responses(
        (status = 201, body = CreatedKey,
            description = "The successor key; `key` is its plaintext, shown only this once."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    auth: RootAuth,
    idem: IdempotencyKey,
    ApiPath(key_id): ApiPath<String>,
    body: JsonBody<RotateKey>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let idem = Idempotent::new(&state, &auth, idem, body.request_hash());
    if let Some(replay) = idem.replay().await? {
        return Ok(replay);
    }
    let found = visible_key(&state, &auth, &key_id).await?;
    let policy = state
        .store
        .keyspace(&found.key.keyspace_id)
        .await?
        .map(|k| k.policy)
        .unwrap_or_default();
    let grace = match body.value.grace_period_seconds {
        Some(g) => g,
        None => u64::try_from(policy.default_grace.unwrap_or(0)).unwrap_or(0),
    };
    if grace > MAX_GRACE_SECONDS {
        return Err(ApiError::invalid(format!(
            "grace_period_seconds must be at most {MAX_GRACE_SECONDS}"
        )));
    }
    let old = &found.key;
    let now = state.clock.now();
    let grace_until = now + time::Duration::seconds(i64::try_from(grace).unwrap_or(0));
    let (generated, verifier) = mint(&state, &found.keyspace_prefix)?;
    // A recoverable key's successor is recoverable too, sealed with its own plaintext.
    let sealed_key = match old.sealed_key {
        Some(_) => Some(seal(
            &state,
            generated.key_id().as_str(),
            generated.key().expose_secret(),
        )?),
        None => None,
    };
    let successor = KeyRecord {
        sealed_key,
        import: None,
        key_id: generated.key_id().as_str().to_owned(),
        last4: generated.last4().to_owned(),
        verifier,
        expires_at: cap_expiry(None, policy.max_key_age, now),
        revoked_at: None,
        revoked_reason: None,
        rotation: None,
        rotated_from: Some(old.key_id.clone()),
        last_used_at: None,
        created_at: now,
        updated_at: now,
        ..old.clone()
    };
    let response = CreatedKey {
        key: generated.key().expose_secret().to_owned(),
        record: KeyView::new(&successor, &found.keyspace_prefix, &QuotaCtx::of(&state)),
    };
    let mut response = response;
    let body = zeroize::Zeroizing::new(to_body(&response)?);
    zeroize::Zeroize::zeroize(&mut response.key);
    let event = audit_event(
        &auth,
        "key.rotate",
        ("key", &key_id),
        Some(&old.keyspace_id),
        created(&[
            ("successor_key_id", json!(successor.key_id)),
            ("grace_until", json!(rfc3339(grace_until))),
        ]),
        now,
    )?;
    let saved = idem.record(StatusCode::CREATED, &body, now)?;
    let result = {
        let (store, id, successor) = (state.store.clone(), key_id.clone(), successor.clone());
        let ids = vec![key_id.clone(), successor.key_id.clone()];
        to_completion(&state, ids, async move {
            let change = Change {
                audit: &event,
                idempotency: saved.as_ref(),
            };
            store.rotate_key(&id, &successor, grace_until, change).await
        })
        .await
    };
    match result {
        Ok(()) => Ok(json_response(StatusCode::CREATED, body.to_vec())),
        Err(e) => idem.on_error(e).await,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExpiringParams {
    pub keyspace_id: Option<String>,
    /// At most this many, soonest first (1-500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExpiringKeyView {
    pub key: KeyView,
    /// When the key stops verifying: the earlier of its `expires_at` and the keyspace's
    /// maximum key age.
    pub expires: String,
}

#[utoipa::path(get, path = "/v1/keys/expiring", tag = "keys",
    operation_id = "expiring_keys_list", params(ExpiringParams),
    responses(
        (status = 200, body = List<ExpiringKeyView>,
            description = "Keys within their keyspace's expiry warning, soonest expiry first."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn expiring(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiQuery(params): ApiQuery<ExpiringParams>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysRead)?;
    let page = page_request(params.limit, None)?;
    if let Some(ks) = &params.keyspace_id
        && !auth.sees_keyspace(ks)
    {
        return Ok(json_response(
            StatusCode::OK,
            to_body(&List::<ExpiringKeyView>::new(vec![], None))?,
        ));
    }
    let now = state.clock.now();
    let found = state
        .store
        .expiring_keys(
            auth.visible(),
            params.keyspace_id.as_deref(),
            now,
            page.limit,
        )
        .await?;
    let mut prefixes = Prefixes::default();
    let mut views = Vec::with_capacity(found.len());
    for e in found {
        let prefix = prefixes.of(&state, &e.key.keyspace_id).await?;
        views.push(ExpiringKeyView {
            key: KeyView::new(&e.key, &prefix, &QuotaCtx::of(&state)),
            expires: rfc3339(e.expires),
        });
    }
    Ok(json_response(
        StatusCode::OK,
        to_body(&List::new(views, None))?,
    ))
}

pub const MAX_IMPORT_BATCH: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// 1 to 1,000 keys.
    #[schema(min_items = 1, max_items = 1000)]
    pub keys: Vec<keyhaven_service::import::ImportItem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResponse {
    pub imported: usize,
    pub skipped: usize,
    pub rejected: usize,
    pub results: Vec<keyhaven_service::import::ImportOutcome>,
}

const ALREADY_STORED: &str = "a key with the same lookup id or digest is already stored";

#[utoipa::path(post, path = "/v1/keys/import", tag = "keys",
    operation_id = "keys_import", request_body = ImportRequest,
    responses(
        (status = 200, description = "What happened to each item: imported, skipped or rejected.",
            body = ImportResponse),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn import(
    State(state): State<AppState>,
    auth: RootAuth,
    body: JsonBody<ImportRequest>,
) -> Result<Response, ApiError> {
    use keyhaven_service::import::ImportOutcome;
    auth.require(Scope::KeysWrite)?;
    let items = body.value.keys;
    if items.is_empty() || items.len() > MAX_IMPORT_BATCH {
        return Err(ApiError::invalid(format!(
            "keys must hold 1 to {MAX_IMPORT_BATCH} items"
        )));
    }
    let now = state.clock.now();
    let mut outcomes: Vec<ImportOutcome> = Vec::with_capacity(items.len());
    // Valid records grouped by keyspace: one transaction and audit event per keyspace.
    let mut groups: Vec<(String, Vec<(usize, KeyRecord)>)> = Vec::new();
    let mut keyspaces_seen: Vec<(String, bool)> = Vec::new();
    let mut owners_seen: Vec<(String, bool)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let visible = match keyspaces_seen
            .iter()
            .find(|(id, _)| *id == item.keyspace_id)
        {
            Some((_, v)) => *v,
            None => {
                let v = match visible_keyspace(&state, &auth, &item.keyspace_id).await {
                    Ok(_) => true,
                    Err(ApiError::NotFound) => false,
                    Err(e) => return Err(e),
                };
                keyspaces_seen.push((item.keyspace_id.clone(), v));
                v
            }
        };
        let owner_ok = match &item.owner_id {
            None => true,
            Some(_) if auth.is_restricted() => false,
            Some(owner) => match owners_seen.iter().find(|(id, _)| id == owner) {
                Some((_, v)) => *v,
                None => {
                    let v = check_owner(&state, owner).await.is_ok();
                    owners_seen.push((owner.clone(), v));
                    v
                }
            },
        };
        let built = if !visible {
            Err("keyspace_id does not name a keyspace".to_owned())
        } else if !owner_ok {
            Err("owner_id does not name an existing owner".to_owned())
        } else {
            keyhaven_service::import::build(item, &state.peppers, now)
        };
        let built = match built {
            Ok(record)
                if keyhaven_service::import::stored_under_older_pepper(
                    state.store.as_ref(),
                    &record,
                    &state.peppers,
                )
                .await? =>
            {
                outcomes.push(ImportOutcome {
                    index,
                    status: "skipped".into(),
                    key_id: None,
                    reason: Some(ALREADY_STORED.into()),
                });
                continue;
            }
            other => other,
        };
        match built {
            Ok(record) => {
                outcomes.push(ImportOutcome {
                    index,
                    status: String::new(),
                    key_id: None,
                    reason: None,
                });
                match groups.iter_mut().find(|(ks, _)| *ks == record.keyspace_id) {
                    Some((_, list)) => list.push((index, record)),
                    None => groups.push((record.keyspace_id.clone(), vec![(index, record)])),
                }
            }
            Err(reason) => outcomes.push(ImportOutcome {
                index,
                status: "rejected".into(),
                key_id: None,
                reason: Some(reason),
            }),
        }
    }
    for (keyspace_id, list) in &groups {
        let records: Vec<KeyRecord> = list.iter().map(|(_, r)| r.clone()).collect();
        let event = audit_event(
            &auth,
            "key.import",
            ("keyspace", keyspace_id),
            Some(keyspace_id),
            Map::new(),
            now,
        )?;
        let inserted = state.store.import_keys(&records, &event).await?;
        for ((index, record), done) in list.iter().zip(inserted) {
            if let Some(o) = outcomes.get_mut(*index) {
                o.status = if done { "imported" } else { "skipped" }.into();
                o.key_id = done.then(|| record.key_id.clone());
                if !done {
                    o.reason = Some(ALREADY_STORED.into());
                }
            }
        }
    }
    state.cache.invalidate_imports();
    state.note_imported_keys();
    let count = |s: &str| outcomes.iter().filter(|o| o.status == s).count();
    let response = ImportResponse {
        imported: count("imported"),
        skipped: count("skipped"),
        rejected: count("rejected"),
        results: outcomes,
    };
    Ok(json_response(StatusCode::OK, to_body(&response)?))
}

/// The plaintext of a recoverable key.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RevealedKey {
    pub key_id: String,
    pub key: String,
}

impl std::fmt::Debug for RevealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedKey")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/reveal", tag = "keys", operation_id = "keys_reveal",
    params(("key_id" = String, Path)),
    responses(
        (status = 200, description = "The key's plaintext (the reveal is audited).",
            body = RevealedKey),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn reveal(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    auth.require(Scope::KeysReveal)?;
    let found = visible_key(&state, &auth, &key_id).await?;
    let key = &found.key;
    let Some(sealed) = &key.sealed_key else {
        return Err(ApiError::Conflict {
            code: "not_recoverable",
            detail: "The key was not created recoverable; Keyhaven cannot show it again.".into(),
        });
    };
    if key.revoked_at.is_some() {
        return Err(StoreError::Conflict(keyhaven_store::Conflict::AlreadyRevoked).into());
    }
    let master = state.master_keys.as_ref().ok_or_else(|| {
        ApiError::Unexpected(anyhow::anyhow!(
            "a recoverable key exists but no master key is loaded"
        ))
    })?;
    let plaintext = keyhaven_service::recoverable::open(master, &key.key_id, sealed)?;
    // Audit first: a reveal that cannot be recorded does not happen.
    let now = state.clock.now();
    let event = audit_event(
        &auth,
        "key.reveal",
        ("key", &key_id),
        Some(&key.keyspace_id),
        Map::new(),
        now,
    )?;
    state.store.append_audit(&event).await?;
    let mut revealed = RevealedKey {
        key_id: key.key_id.clone(),
        key: plaintext.as_str().to_owned(),
    };
    let body = zeroize::Zeroizing::new(to_body(&revealed)?);
    zeroize::Zeroize::zeroize(&mut revealed.key);
    Ok(json_response(StatusCode::OK, body.to_vec()))
}

#[utoipa::path(delete, path = "/v1/keys/{key_id}", tag = "keys",
    operation_id = "keys_delete", params(("key_id" = String, Path)),
    responses(
        (status = 204, description = "The key was deleted."),
        ClientError,
    ),
    security(("root_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    auth: RootAuth,
    ApiPath(key_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::KeysWrite)?;
    keys::delete(&state, &auth, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
