//! Unauthenticated operational routes: health, Prometheus metrics and the OpenAPI document.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router, response::IntoResponse};

use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

/// 200 while the store answers; 503 `store_unavailable` with the reason while it does not
/// (calls to cached tools keep working meanwhile).
async fn health(State(s): State<AppState>) -> Result<impl IntoResponse, crate::error::ApiError> {
    s.store.check().await?;
    Ok(Json(super::types::Health {
        status: "ok",
        store: s.store.kind(),
    }))
}

/// The OpenAPI document, built once.
async fn openapi() -> impl IntoResponse {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOC.get_or_init(super::doc::document).clone())
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render() + &s.recorder.stats().render() + &s.admission.render(),
    )
}
