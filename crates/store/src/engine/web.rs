//! The dashboard's operators, browser sessions and portal links, and the record of
//! failed sign-ins that throttles password guessing.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use anyhow::Context as _;
use sqlx::Row as _;

use super::Engine;
use super::audit::commit_change;
use super::rows::{DbRow, classify, expect_one, json_text};
use crate::error::{Conflict, StoreError};
use crate::model::{Change, Timestamp, from_unix, to_unix};
use crate::web::{Operator, OperatorRole, SessionKind, WebSession};

fn operator_from(row: &DbRow) -> Result<Operator, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(Operator {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: OperatorRole::parse(&role)
            .with_context(|| format!("unknown operator role `{role}`"))?,
        password_hash: row.try_get("password_hash")?,
        created_at: from_unix(row.try_get("created_at")?),
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

fn session_from(row: &DbRow) -> Result<WebSession, StoreError> {
    let hash: Vec<u8> = row.try_get("token_hash")?;
    let kind: String = row.try_get("kind")?;
    let grants: String = row.try_get("grants")?;
    Ok(WebSession {
        token_hash: hash
            .try_into()
            .map_err(|_| anyhow::anyhow!("a session's token hash is not 32 bytes"))?,
        kind: SessionKind::parse(&kind)
            .with_context(|| format!("unknown session kind `{kind}`"))?,
        subject: row.try_get("subject")?,
        grants: serde_json::from_str(&grants).context("decoding a session's grants")?,
        created_at: from_unix(row.try_get("created_at")?),
        last_seen_at: from_unix(row.try_get("last_seen_at")?),
        expires_at: from_unix(row.try_get("expires_at")?),
    })
}

pub(super) async fn create_operator(
    store: &Engine,
    operator: &Operator,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO operators (id, email, role, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&operator.id)
    .bind(&operator.email)
    .bind(operator.role.as_str())
    .bind(&operator.password_hash)
    .bind(to_unix(operator.created_at))
    .bind(to_unix(operator.updated_at))
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(e, Conflict::EmailTaken))?;
    commit_change(tx, change).await
}

pub(super) async fn operator(store: &Engine, id: &str) -> Result<Option<Operator>, StoreError> {
    let row = sqlx::query("SELECT * FROM operators WHERE id = $1")
        .bind(id)
        .fetch_optional(store.reads())
        .await?;
    row.as_ref().map(operator_from).transpose()
}

pub(super) async fn operator_by_email(
    store: &Engine,
    email: &str,
) -> Result<Option<Operator>, StoreError> {
    let row = sqlx::query("SELECT * FROM operators WHERE email = $1")
        .bind(email)
        .fetch_optional(store.reads())
        .await?;
    row.as_ref().map(operator_from).transpose()
}

pub(super) async fn list_operators(store: &Engine) -> Result<Vec<Operator>, StoreError> {
    let rows = sqlx::query("SELECT * FROM operators ORDER BY email")
        .fetch_all(store.reads())
        .await?;
    rows.iter().map(operator_from).collect()
}

pub(super) async fn set_operator_password(
    store: &Engine,
    id: &str,
    password_hash: &str,
    at: Timestamp,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done =
        sqlx::query("UPDATE operators SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(to_unix(at))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    expect_one(done.rows_affected())?;
    end_sessions_of(&mut tx, id).await?;
    commit_change(tx, change).await
}

pub(super) async fn delete_operator(
    store: &Engine,
    id: &str,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let done = sqlx::query("DELETE FROM operators WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    expect_one(done.rows_affected())?;
    end_sessions_of(&mut tx, id).await?;
    commit_change(tx, change).await
}

/// An operator's sessions end with a new password or with the operator.
async fn end_sessions_of(tx: &mut super::rows::Tx, operator_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM web_sessions WHERE kind = 'operator' AND subject = $1")
        .bind(operator_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn create_session(
    store: &Engine,
    session: &WebSession,
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO web_sessions (token_hash, kind, subject, grants, created_at, last_seen_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(session.token_hash.as_slice())
    .bind(session.kind.as_str())
    .bind(&session.subject)
    .bind(json_text(&session.grants)?)
    .bind(to_unix(session.created_at))
    .bind(to_unix(session.last_seen_at))
    .bind(to_unix(session.expires_at))
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(e, Conflict::DuplicateId))?;
    commit_change(tx, change).await
}

pub(super) async fn session(
    store: &Engine,
    token_hash: &[u8; 32],
    kind: SessionKind,
) -> Result<Option<WebSession>, StoreError> {
    let row = sqlx::query("SELECT * FROM web_sessions WHERE token_hash = $1 AND kind = $2")
        .bind(token_hash.as_slice())
        .bind(kind.as_str())
        .fetch_optional(store.reads())
        .await?;
    row.as_ref().map(session_from).transpose()
}

pub(super) async fn touch_session(
    store: &Engine,
    token_hash: &[u8; 32],
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE web_sessions SET last_seen_at = $1 WHERE token_hash = $2")
        .bind(to_unix(at))
        .bind(token_hash.as_slice())
        .execute(store.writes())
        .await?;
    Ok(())
}

pub(super) async fn end_session(
    store: &Engine,
    token_hash: &[u8; 32],
    change: Change<'_>,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
        .bind(token_hash.as_slice())
        .execute(&mut *tx)
        .await?;
    commit_change(tx, change).await
}

pub(super) async fn take_session(
    store: &Engine,
    token_hash: &[u8; 32],
    kind: SessionKind,
) -> Result<Option<WebSession>, StoreError> {
    let mut tx = store.begin().await?;
    let row =
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1 AND kind = $2 RETURNING *")
            .bind(token_hash.as_slice())
            .bind(kind.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    row.as_ref().map(session_from).transpose()
}

pub(super) async fn record_login_failure(
    store: &Engine,
    attempt: &str,
    buckets: &[String],
    at: Timestamp,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    for bucket in buckets {
        sqlx::query("INSERT INTO login_failures (attempt, bucket, at) VALUES ($1, $2, $3)")
            .bind(attempt)
            .bind(bucket)
            .bind(to_unix(at))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn forget_login_attempt(store: &Engine, attempt: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_failures WHERE attempt = $1")
        .bind(attempt)
        .execute(store.writes())
        .await?;
    Ok(())
}

pub(super) async fn login_failures(
    store: &Engine,
    bucket: &str,
    since: Timestamp,
) -> Result<u64, StoreError> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM login_failures WHERE bucket = $1 AND at >= $2")
            .bind(bucket)
            .bind(to_unix(since))
            .fetch_one(store.reads())
            .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(super) async fn clear_login_failures(store: &Engine, bucket: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_failures WHERE bucket = $1")
        .bind(bucket)
        .execute(store.writes())
        .await?;
    Ok(())
}

pub(super) async fn purge_web(
    store: &Engine,
    now: Timestamp,
    failures_before: Timestamp,
) -> Result<u64, StoreError> {
    let mut tx = store.begin().await?;
    let sessions = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
        .bind(to_unix(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let failures = sqlx::query("DELETE FROM login_failures WHERE at < $1")
        .bind(to_unix(failures_before))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(sessions + failures)
}
