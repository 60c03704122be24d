//! `POST /v1/openapi/import`: an OpenAPI document (Swagger 2.0, OpenAPI 3.0 or 3.1, YAML or
//! JSON) becomes a webhook and a tool per operation; a re-import updates them in place.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router, response::IntoResponse};
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::model::validate::FieldError;
use crate::openapi::{self, ImportOptions};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/openapi/import", post(import))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    /// The document: YAML or JSON text, or the object.
    spec: Value,
    #[serde(flatten)]
    options: ImportOptions,
    /// Say what would happen; write nothing.
    #[serde(default)]
    dry_run: bool,
    /// Delete the tools of operations gone from the document.
    #[serde(default)]
    prune: bool,
}

async fn import(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<ImportBody>,
) -> Result<impl IntoResponse, ApiError> {
    let referenced: Vec<&str> = body
        .options
        .auth
        .values()
        .map(|v| v.secret.as_str())
        .collect();
    let stored = s.definitions().existing_secrets(referenced).await?;
    let missing: Vec<FieldError> = body
        .options
        .auth
        .iter()
        .filter(|(_, v)| !stored.contains(&v.secret))
        .map(|(k, v)| {
            FieldError::new(
                format!("auth.{k}.secret"),
                format!("unknown secret '{}'", v.secret),
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::InvalidDefinition(missing));
    }
    let plan = openapi::plan(&body.spec, &body.options)?;
    let report = openapi::apply::apply(&s.definitions(), plan, body.dry_run, body.prune).await?;
    Ok(Json(report))
}
