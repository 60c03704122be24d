//! `/v1/webhooks`: registered API calls. Edits apply in place to linked tools on their next call.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router, response::IntoResponse};
use serde::Deserialize;
use serde_json::Value;

use super::types::{Items, WebhookSummary};
use super::{Matcher, Search};
use crate::AppState;
use crate::call::{self, CallRequest};
use crate::definitions::Author;
use crate::error::{ApiError, ApiJson};
use crate::model::{Source, WebhookSpec};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list).post(create))
        .route("/webhooks/{id}", get(read).put(update).delete(remove))
        .route("/webhooks/{id}/test", post(test))
}

async fn create(
    State(s): State<AppState>,
    ApiJson(spec): ApiJson<WebhookSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let w = s.definitions().create_webhook(spec, Author::Api).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<Search>,
) -> Result<impl IntoResponse, ApiError> {
    let m = Matcher::new(&q.q);
    let summary = |w: &crate::model::Webhook| WebhookSummary {
        id: w.id.clone(),
        name: w.spec.name.clone(),
        url: w.spec.url.clone(),
        method: w.spec.method,
        created_at: w.created_at.clone(),
    };
    let matches =
        |w: &crate::model::Webhook| m.matches(&[&w.spec.name, &w.spec.url, &w.spec.description]);
    let mut items: Vec<WebhookSummary> = if s.store.shared() {
        // Another node's write reaches this node's catalog a moment later: the store answers.
        s.store
            .list_webhooks()
            .await?
            .iter()
            .filter(|w| matches(w))
            .map(summary)
            .collect()
    } else {
        // Alone on its store, the catalog is as current as the store (every write refreshes it
        // before it is acknowledged, and every saved webhook compiles: it was validated on the
        // way in), and searching 10,000 webhooks in memory takes a millisecond where decoding
        // them from disk took 50.
        let snap = s.catalog.snapshot();
        snap.search_webhooks(&m)
            .iter()
            .map(|c| summary(&c.webhook))
            .collect()
    };
    items.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    Ok(Json(Items { items }))
}

async fn read(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.store.get_webhook(&id).await?))
}

async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<WebhookSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let w = s
        .definitions()
        .update_webhook(&id, spec, Author::Api)
        .await?;
    Ok(Json(w))
}

async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.definitions().delete_webhook(&id, Author::Api).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of test and invoke calls.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CallBody {
    /// The arguments: an object, or a JSON string holding one (as models send them).
    #[serde(default)]
    pub arguments: Value,
    /// Values from the calling application (a JSON object), never from the model.
    #[serde(default)]
    pub context: Value,
}

/// Body of a test send.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TestBody {
    /// The arguments: an object, or a JSON string holding one (as models send them).
    #[serde(default)]
    pub arguments: Value,
    /// Values from the calling application (a JSON object), never from the model.
    #[serde(default)]
    pub context: Value,
    /// Show the request (and a curl command) that would be sent, secrets redacted, without
    /// sending or recording it.
    #[serde(default)]
    pub dry_run: bool,
}

async fn test(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::access::Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TestBody>,
) -> Result<axum::response::Response, ApiError> {
    super::check_context(&body.context)?;
    let hook = s
        .catalog
        .snapshot()
        .webhooks
        .get(id.as_str())
        .cloned()
        .ok_or_else(|| ApiError::NotFound("webhook not found".into()))?;
    let context = caller.bind_context(&body.context);
    let req = CallRequest {
        tool: None,
        hook,
        arguments: &body.arguments,
        context: &context,
        source: Source::Test,
        agent: None,
        conversation_id: None,
        caller: Some(&caller),
        authorized: &crate::access::Authorized::All,
    };
    if body.dry_run {
        return Ok(Json(call::dry_run(&s.pipeline, req).await).into_response());
    }
    let result = call::invoke(&s.pipeline, req).await;
    super::tools::call_response(result)
}
