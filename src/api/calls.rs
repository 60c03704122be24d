//! `/v1/calls`: the call history, newest first, with filters and cursor paging.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router, response::IntoResponse};

use super::types::{ListQuery, Page};
use crate::AppState;
use crate::access::{Caller, Permission};
use crate::error::ApiError;
use crate::model::CallRecord;
use crate::store::CallFilter;

/// A record as `caller` may see it: without arguments, request and response unless its role
/// reads history bodies (customer data lives there).
fn shown(caller: &Caller, mut r: CallRecord) -> CallRecord {
    if !caller.role.grants(Permission::ReadHistoryBodies) {
        r.arguments = serde_json::Value::Null;
        r.context = None;
        r.request = None;
        r.response = None;
    }
    r
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/calls", get(list))
        .route("/calls/{id}", get(read))
}

async fn list(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    s.recorder.sync().await;
    let filter = CallFilter {
        webhook_id: q.webhook_id,
        tool: q.tool,
        outcome: q.outcome,
        source: q.source,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        before: q.before,
    };
    let items: Vec<CallRecord> = s
        .store
        .list_calls(&filter)
        .await?
        .into_iter()
        .map(|r| shown(&caller, r))
        .collect();
    let next = if items.len() == filter.limit {
        items.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(Json(Page {
        items,
        next_before: next,
    }))
}

async fn read(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.recorder.sync().await;
    Ok(Json(shown(&caller, s.store.get_call(&id).await?)))
}
