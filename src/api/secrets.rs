//! `/v1/secrets`: write-only secret store. No route ever returns a value.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, response::IntoResponse};
use serde::Deserialize;

use super::{Matcher, Search};
use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::model::validate::{parse_new_secret, validate_secret_value};

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
        .route("/secrets/{id}/values", get(list_values))
        .route("/secrets/{id}/values/{subject}", put(set).delete(unset))
}

/// A subject is an end user's id as the calling application names it.
fn check_subject(subject: &str) -> Result<(), ApiError> {
    if subject.is_empty() || subject.len() > 256 || subject.chars().any(|c| c.is_control()) {
        return Err(ApiError::InvalidDefinition(vec![
            crate::model::validate::FieldError::new(
                "subject",
                "a subject is 1-256 characters without control characters",
            ),
        ]));
    }
    Ok(())
}

async fn set(
    State(s): State<AppState>,
    Path((id, subject)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateSecret>,
) -> Result<impl IntoResponse, ApiError> {
    check_subject(&subject)?;
    let errs = validate_secret_value(&body.value);
    if !errs.is_empty() {
        return Err(ApiError::InvalidDefinition(errs));
    }
    let meta = s
        .store
        .set_subject_value(&id, &subject, &body.value)
        .await?;
    s.pipeline.forget_secrets();
    Ok(Json(meta))
}

async fn unset(
    State(s): State<AppState>,
    Path((id, subject)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    s.store.delete_subject_value(&id, &subject).await?;
    s.pipeline.forget_secrets();
    Ok(StatusCode::NO_CONTENT)
}

async fn list_values(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let items = s.store.list_subject_values(&id).await?;
    Ok(Json(super::types::Items { items }))
}

async fn create(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<CreateSecret>,
) -> Result<impl IntoResponse, ApiError> {
    let name = parse_new_secret(body.name, &body.value).map_err(ApiError::InvalidDefinition)?;
    let meta = s.store.create_secret(&name, &body.value).await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<Search>,
) -> Result<impl IntoResponse, ApiError> {
    let m = Matcher::new(&q.q);
    let items: Vec<_> = s
        .store
        .list_secrets()
        .await?
        .into_iter()
        .filter(|meta| m.matches(&[&meta.name]))
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
    let errs = validate_secret_value(&body.value);
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
