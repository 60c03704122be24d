//! `/v1/secrets`: write-only secret store. No route ever returns a value.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, response::IntoResponse};
use serde::Deserialize;

use super::{Search, search_matches};
use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::model::validate::validate_secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSecret {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSecret {
    value: String,
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/secrets", get(list).post(create))
        .route("/secrets/{id}", get(read).put(update).delete(remove))
}

async fn create(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<CreateSecret>,
) -> Result<impl IntoResponse, ApiError> {
    let errs = validate_secret(Some(&body.name), &body.value);
    if !errs.is_empty() {
        return Err(ApiError::InvalidDefinition(errs));
    }
    let meta = s.store.create_secret(&body.name, &body.value).await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<Search>,
) -> Result<impl IntoResponse, ApiError> {
    let items: Vec<_> = s
        .store
        .list_secrets()
        .await?
        .into_iter()
        .filter(|m| search_matches(&q.q, &[&m.name]))
        .collect();
    Ok(Json(super::types::Items { items }))
}

async fn read(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.store.get_secret(&id).await?))
}

async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateSecret>,
) -> Result<impl IntoResponse, ApiError> {
    let errs = validate_secret(None, &body.value);
    if !errs.is_empty() {
        return Err(ApiError::InvalidDefinition(errs));
    }
    let meta = s.store.update_secret(&id, &body.value).await?;
    // Opened values and redactors built for the old value are dropped: no copy of it stays in
    // memory longer.
    s.pipeline.forget_secrets();
    Ok(Json(meta))
}

async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.store.delete_secret(&id).await?;
    s.pipeline.forget_secrets();
    Ok(StatusCode::NO_CONTENT)
}
