//! `/v1/agents`: stored agents and their conversation route.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router, response::IntoResponse};
use serde::Deserialize;
use serde_json::Value;

use super::types::ChatReply;
use super::{Matcher, Search};
use crate::AppState;
use crate::agent::{self, AgentRun, FinishReason};
use crate::definitions::Author;
use crate::error::{ApiError, ApiJson};
use crate::model::{Agent, AgentSpec};
use crate::store::StoreError;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents", get(list).post(create))
        .route("/agents/{id}", get(read).put(update).delete(remove))
        .route("/agents/{id}/chat", post(chat))
}

/// An agent by id, or else by name.
pub(super) async fn find(s: &AppState, id_or_name: &str) -> Result<Agent, ApiError> {
    match s.store.get_agent(id_or_name).await {
        Err(StoreError::NotFound(_)) => Ok(s.store.get_agent_by_name(id_or_name).await?),
        other => Ok(other?),
    }
}

async fn create(
    State(s): State<AppState>,
    ApiJson(spec): ApiJson<AgentSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let agent = s.definitions().create_agent(spec, Author::Api).await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<Search>,
) -> Result<impl IntoResponse, ApiError> {
    let m = Matcher::new(&q.q);
    let mut items: Vec<Agent> = s
        .store
        .list_agents()
        .await?
        .into_iter()
        .filter(|a| m.matches(&[&a.spec.name]))
        .collect();
    items.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
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
    ApiJson(spec): ApiJson<AgentSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let agent = find(&s, &id).await?;
    let agent = s
        .definitions()
        .update_agent(&agent.id, spec, Author::Api)
        .await?;
    Ok(Json(agent))
}

async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let agent = find(&s, &id).await?;
    s.definitions().delete_agent(&agent.id, Author::Api).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A conversation turn.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChatBody {
    /// OpenAI-style messages (`role` and `content`).
    messages: Vec<Value>,
    /// Values from the calling application (a JSON object), never shown to the model.
    #[serde(default)]
    context: Value,
    /// Carried into history and events; generated when absent.
    #[serde(default)]
    conversation_id: Option<String>,
}

/// Every message is an object with a known role.
pub(super) fn check_messages(messages: &[Value]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::BadRequest("messages must not be empty".into()));
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !["system", "developer", "user", "assistant", "tool"].contains(&role) {
            return Err(ApiError::BadRequest(format!(
                "messages[{i}] needs a role: system, developer, user, assistant or tool"
            )));
        }
    }
    Ok(())
}

pub(super) fn prompt_error(message: String) -> ApiError {
    ApiError::Conflict {
        code: "prompt_unavailable",
        message,
    }
}

async fn chat(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::access::Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<impl IntoResponse, ApiError> {
    check_messages(&body.messages)?;
    super::check_context(&body.context)?;
    let agent = find(&s, &id).await?;
    let mut run = AgentRun::for_agent(&s, &agent)
        .map_err(prompt_error)?
        .for_caller(caller.clone());
    if let Some(c) = body
        .conversation_id
        .filter(|c| !c.is_empty() && c.len() <= 128)
    {
        run.conversation_id = c;
    }
    let context = caller.bind_context(&body.context);
    let out = agent::run(&s, &run, body.messages, &context).await?;
    Ok(Json(ChatReply {
        reply: out.reply,
        messages: out.messages,
        calls: out.calls.iter().filter_map(|c| c.call_id.clone()).collect(),
        tool_calls: out.calls,
        conversation_id: run.conversation_id,
        stopped: (out.finish_reason == FinishReason::MaxSteps).then(|| "max_steps".to_string()),
    }))
}
