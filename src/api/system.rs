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

async fn health() -> impl IntoResponse {
    Json(super::types::Health { status: "ok" })
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
        s.metrics.render(),
    )
}
