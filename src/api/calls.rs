//! `/v1/calls`: the call history, newest first, with filters and cursor paging.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router, response::IntoResponse};

use super::types::{ListQuery, Page};
use crate::AppState;
use crate::error::ApiError;
use crate::store::CallFilter;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/calls", get(list))
        .route("/calls/{id}", get(read))
}

async fn list(
    State(s): State<AppState>,
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
    let items = s.store.list_calls(&filter).await?;
    let next = if items.len() == filter.limit {
        items.last().map(|r| r.id.clone())
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
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.recorder.sync().await;
    Ok(Json(s.store.get_call(&id).await?))
}
