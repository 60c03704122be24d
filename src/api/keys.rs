//! `/v1/keys` (create, list, update, revoke, explain) and `/v1/audit`: admin only. A key's value
//! is in the 201 answer of its creation and nowhere else; the store keeps its hash.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, response::IntoResponse};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::access::Caller;
use crate::access::keys::{self, ApiKey, KeySpec, StoredKey};
use crate::error::{ApiError, ApiJson};
use crate::model::names::is_tool_name;
use crate::model::validate::FieldError;
use crate::model::{AuditEntry, now_rfc3339};
use crate::store::AuditFilter;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list).post(create))
        .route("/keys/{id}", get(read).put(update).delete(revoke))
        .route("/keys/{id}/explain", get(explain))
        .route("/audit", get(audit))
}

/// `201` of `POST /v1/keys`: the record and, this once, the key.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct KeyCreated {
    /// The record.
    #[serde(flatten)]
    pub record: ApiKey,
    /// The key (`tg_…`): shown only here; store it now.
    pub key: String,
}

/// `GET /v1/keys/{id}/explain`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ExplainQuery {
    /// Tool name.
    pub tool: String,
}

/// Whether a key may call a tool, and why.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Explanation {
    /// The key's name.
    pub key: String,
    /// The tool.
    pub tool: crate::model::ToolName,
    /// Whether the key may call it.
    pub allowed: bool,
    /// Why, in a sentence.
    pub reason: String,
}

/// `GET /v1/audit`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries of this actor (key name, `admin-token`, `local`).
    pub actor: Option<String>,
    /// Only entries about this resource id.
    pub resource: Option<String>,
    /// Page size (default 50, at most 500).
    pub limit: Option<usize>,
    /// Only entries older than this entry id.
    pub before: Option<String>,
}

fn check(spec: &KeySpec) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    if !is_tool_name(&spec.name) {
        errs.push(FieldError::new(
            "name",
            "must be 1-64 letters, digits, '_' or '-'",
        ));
    }
    if let Some(e) = &spec.expires_at
        && keys::parse_time(e).is_none()
    {
        errs.push(FieldError::new("expires_at", "must be an RFC 3339 time"));
    }
    if spec.rate_limit_per_minute == Some(0) {
        errs.push(FieldError::new(
            "rate_limit_per_minute",
            "must be at least 1 (leave it out for no limit)",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidDefinition(errs))
    }
}

async fn reload(s: &AppState) -> Result<(), ApiError> {
    s.keys.reload(s.store.as_ref()).await?;
    Ok(())
}

async fn create(
    State(s): State<AppState>,
    ApiJson(spec): ApiJson<KeySpec>,
) -> Result<impl IntoResponse, ApiError> {
    check(&spec)?;
    let value = keys::generate();
    let now = now_rfc3339();
    let record = ApiKey {
        id: crate::model::ids::new_id("key"),
        name: spec.name,
        role: spec.role,
        prefix: keys::prefix(&value),
        context: spec.context,
        rate_limit_per_minute: spec.rate_limit_per_minute,
        expires_at: spec.expires_at,
        created_at: now.clone(),
        updated_at: now,
        last_used_at: None,
    };
    s.store
        .create_key(&StoredKey {
            key: record.clone(),
            hash: keys::hash(&value),
        })
        .await?;
    reload(&s).await?;
    Ok((StatusCode::CREATED, Json(KeyCreated { record, key: value })))
}

async fn find(s: &AppState, id: &str) -> Result<ApiKey, ApiError> {
    s.store
        .list_keys()
        .await?
        .into_iter()
        .map(|k| k.key)
        .find(|k| k.id == id)
        .ok_or_else(|| ApiError::NotFound("key not found".into()))
}

async fn list(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let items: Vec<ApiKey> = s
        .store
        .list_keys()
        .await?
        .into_iter()
        .map(|k| k.key)
        .collect();
    Ok(Json(super::types::Items { items }))
}

async fn read(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(find(&s, &id).await?))
}

async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<KeySpec>,
) -> Result<impl IntoResponse, ApiError> {
    check(&spec)?;
    let old = find(&s, &id).await?;
    let record = ApiKey {
        name: spec.name,
        role: spec.role,
        context: spec.context,
        rate_limit_per_minute: spec.rate_limit_per_minute,
        expires_at: spec.expires_at,
        updated_at: now_rfc3339(),
        ..old
    };
    s.store.update_key(&record).await?;
    reload(&s).await?;
    Ok(Json(record))
}

async fn revoke(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.store.delete_key(&id).await?;
    reload(&s).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn explain(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ExplainQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let key = find(&s, &id).await?;
    let tool = match s.store.get_tool_by_name(&q.tool).await {
        Ok(t) => t,
        Err(crate::store::StoreError::NotFound(_)) => {
            return Err(ApiError::NotFound(format!("no tool named '{}'", q.tool)));
        }
        Err(e) => return Err(e.into()),
    };
    // Judged from the stored record, the same way a request with the key is.
    let entry = std::sync::Arc::new(keys::KeyEntry::from_record(key.clone()));
    let expired = entry.expired();
    let caller = Caller {
        actor: key.name.clone(),
        role: key.role,
        key: Some(entry),
    };
    let (mut allowed, mut reason) = caller.explain(&tool.spec);
    if allowed && tool.spec.webhook_id.is_none() {
        (allowed, reason) = (false, "the tool is not linked to a webhook".into());
    }
    if expired {
        (allowed, reason) = (false, "the key has expired".into());
    }
    Ok(Json(Explanation {
        key: key.name,
        tool: tool.spec.name,
        allowed,
        reason,
    }))
}

async fn audit(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = AuditFilter {
        actor: q.actor,
        resource: q.resource,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        before: q.before,
    };
    let items: Vec<AuditEntry> = s.store.list_audit(&filter).await?;
    Ok(Json(super::types::Items { items }))
}
