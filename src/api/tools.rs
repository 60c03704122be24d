//! `/v1/tools`: what models see. Compiled schemas, unlink, and invoke by name.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router, response::IntoResponse};
use serde_json::json;

use super::types::{Dialect, ExportQuery, Items, SchemaQuery};
use super::webhooks::CallBody;
use super::{Matcher, Search};
use crate::AppState;
use crate::call::{self, CallRequest, CallResult};
use crate::definitions::Author;
use crate::error::{ApiError, ApiJson};
use crate::model::{Outcome, Source, ToolSpec};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tools", get(list).post(create))
        .route("/tools/openai", get(openai))
        .route("/tools/{id}", get(read).put(update).delete(remove))
        .route("/tools/{id}/unlink", post(unlink))
        .route("/tools/{id}/schema", get(schema))
        .route("/tools/{id}/invoke", post(invoke))
}

async fn create(
    State(s): State<AppState>,
    ApiJson(spec): ApiJson<ToolSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let t = s.definitions().create_tool(spec, Author::Api).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<Search>,
) -> Result<impl IntoResponse, ApiError> {
    let m = Matcher::new(&q.q);
    let mut items: Vec<_> = s
        .store
        .list_tools()
        .await?
        .into_iter()
        .filter(|t| m.matches(&[&t.spec.name, t.spec.description.as_deref().unwrap_or("")]))
        .collect();
    items.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok(Json(Items { items }))
}

async fn read(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.store.get_tool(&id).await?))
}

async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<ToolSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let t = s.definitions().update_tool(&id, spec, Author::Api).await?;
    Ok(Json(t))
}

async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.definitions().delete_tool(&id, Author::Api).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unlink(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let t = s.definitions().unlink_tool(&id, Author::Api).await?;
    Ok(Json(t))
}

fn not_linked(name: &str) -> ApiError {
    ApiError::Conflict {
        code: "not_linked",
        message: format!("tool '{name}' is not linked to a webhook, so it is offered to no model"),
    }
}

async fn schema(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SchemaQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let tool = s.store.get_tool(&id).await?;
    let snap = s.catalog.snapshot();
    let compiled = snap
        .tools
        .get(&tool.spec.name)
        .filter(|c| c.tool.id == id)
        .ok_or_else(|| not_linked(&tool.spec.name))?;
    Ok(Json(if q.strict {
        compiled.strict_definition()
    } else {
        compiled.definition()
    }))
}

async fn openai(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::access::Caller>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let snap = s.catalog.snapshot();
    let everything = snap.all_visible_to(&caller);
    Ok(match q.dialect {
        // The common case (every tool visible) is the export serialised once per snapshot.
        Dialect::Openai if everything => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            snap.openai_json(),
        )
            .into_response(),
        Dialect::Openai => {
            let tools: Vec<serde_json::Value> = snap
                .tools_for(None, Some(&caller))
                .iter()
                .map(|t| t.definition())
                .collect();
            Json(json!({ "tools": tools })).into_response()
        }
        Dialect::Gemini => {
            let tools: Vec<serde_json::Value> = snap
                .tools_for(None, Some(&caller))
                .iter()
                .map(|t| {
                    let mut d = t.definition();
                    d["function"]["parameters"] =
                        crate::schema::gemini_variant(&t.hook.parameters_copy());
                    d
                })
                .collect();
            Json(json!({ "tools": tools })).into_response()
        }
    })
}

/// Shape a call result: 200 with the result, or 422 `invalid_arguments` when refused for its arguments.
pub(super) fn call_response(result: CallResult) -> Result<Response, ApiError> {
    if result.outcome == Outcome::InvalidArguments {
        return Err(ApiError::InvalidArguments {
            message: "the arguments are invalid; nothing was sent".into(),
            details: result.details,
            call_id: result.call_id,
        });
    }
    if result.outcome == Outcome::Forbidden {
        return Err(ApiError::Forbidden(result.content));
    }
    // Sized for the answer up front (the response and its text for the model, escaped): into
    // axum's 128-byte start, serde_json grew the buffer three or four times per call.
    let mut body = Vec::with_capacity(256 + 3 * result.content.len());
    result
        .write_json(&mut body)
        .map_err(|e| ApiError::Internal(format!("could not encode the call result: {e}")))?;
    // Built directly: through `([(CONTENT_TYPE, …)], body).into_response()` the body's own
    // conversion set `application/octet-stream` first, for the tuple to replace.
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

async fn invoke(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::access::Caller>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<CallBody>,
) -> Result<Response, ApiError> {
    super::check_context(&body.context)?;
    let snap = s.catalog.snapshot();
    let compiled = match snap.tools.get(name.as_str()) {
        Some(c) => c.clone(),
        None => {
            let tool = match s.store.get_tool_by_name(&name).await {
                Ok(t) => t,
                Err(_) => s.store.get_tool(&name).await?,
            };
            match snap.tools.get(&tool.spec.name) {
                Some(c) => c.clone(),
                None => return Err(not_linked(&tool.spec.name)),
            }
        }
    };
    call_tool(&s, &caller, &compiled, &body).await
}

/// Call a linked tool for `caller` with the arguments and context of `body`, and shape the
/// answer (the invoke route, here and in `api::front`).
pub(super) async fn call_tool(
    s: &AppState,
    caller: &crate::access::Caller,
    compiled: &crate::catalog::CompiledTool,
    body: &CallBody,
) -> Result<Response, ApiError> {
    let result = call::invoke(
        &s.pipeline,
        CallRequest {
            tool: Some(&compiled.tool.spec.name),
            hook: compiled.hook.clone(),
            arguments: &body.arguments,
            context: &caller.bind_context(&body.context),
            source: Source::Invoke,
            agent: None,
            conversation_id: None,
            caller: Some(caller),
            authorized: &compiled.tool.spec.authorized,
        },
    )
    .await;
    call_response(result)
}
