//! `POST /v1/chat/completions`: the OpenAI-compatible surface. An unmodified OpenAI client gets a
//! normal `chat.completion` (or SSE chunks) while toolgate runs its own tools server-side.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::agents::{check_messages, find, prompt_error};
use crate::AppState;
use crate::agent::{self, AgentRun, ChatOutcome};
use crate::error::{ApiError, ApiJson};

/// Header carrying the per-call context (JSON object) for OpenAI clients.
pub const CONTEXT_HEADER: &str = "x-toolgate-context";

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/chat/completions", post(completions))
}

/// The `context` from `X-Toolgate-Context`, if any.
pub(super) fn context_from_headers(headers: &HeaderMap) -> Result<Value, ApiError> {
    match headers.get(CONTEXT_HEADER) {
        None => Ok(json!({})),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("X-Toolgate-Context is not valid text".into()))?;
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => Ok(Value::Object(m)),
                _ => Err(ApiError::BadRequest(
                    "X-Toolgate-Context must be a JSON object".into(),
                )),
            }
        }
    }
}

async fn completions(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let mut params = body;
    let model = match params.remove("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m,
        _ => return Err(ApiError::BadRequest("model is required".into())),
    };
    let messages = match params.remove("messages") {
        Some(Value::Array(m)) => m,
        _ => return Err(ApiError::BadRequest("messages must be an array".into())),
    };
    check_messages(&messages)?;
    let stream = params
        .remove("stream")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    params.remove("stream_options");
    let client_tools = match params.remove("tools") {
        Some(Value::Array(t)) => t,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(ApiError::BadRequest("tools must be an array".into())),
    };
    let context = context_from_headers(&headers)?;
    let mut run = match model.strip_prefix("agent:") {
        Some(name) => {
            let agent = find(&s, name)?;
            AgentRun::for_agent(&s, &agent).map_err(prompt_error)?
        }
        None => {
            let snap = s.catalog.snapshot();
            let mut tools: Vec<_> = snap.tools.values().cloned().collect();
            tools.sort_by(|a, b| a.tool.spec.name.cmp(&b.tool.spec.name));
            AgentRun {
                model: model.clone(),
                system_prompt: None,
                tools,
                client_tools: Vec::new(),
                max_steps: 8,
                params: Map::new(),
                agent: None,
                conversation_id: crate::model::ids::new_id("conv"),
            }
        }
    };
    run.client_tools = client_tools;
    run.params = params;
    let out = agent::run(&s, &run, messages, &context).await?;
    let completion = completion_body(&out, &model);
    if stream {
        Ok(sse(&completion, &out))
    } else {
        Ok(Json(completion).into_response())
    }
}

fn completion_body(out: &ChatOutcome, model: &str) -> Value {
    let id = out.last_response["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| crate::model::ids::new_id("chatcmpl"));
    let created = out.last_response["created"]
        .as_u64()
        .unwrap_or_else(now_secs);
    let finish = if out.finish_reason == "max_steps" {
        "length"
    } else {
        out.finish_reason
    };
    let mut message = out.final_message.clone();
    if message["content"].is_null() && out.finish_reason != "tool_calls" {
        message["content"] = json!("");
    }
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": usage(&out.usage),
        "toolgate": {"calls": out.calls, "messages": out.messages, "stopped": out.finish_reason == "max_steps"}
    })
}

fn usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    json!({"prompt_tokens": n("prompt_tokens"), "completion_tokens": n("completion_tokens"), "total_tokens": n("total_tokens")})
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The final answer as `chat.completion.chunk` events ending in `[DONE]`.
fn sse(completion: &Value, out: &ChatOutcome) -> Response {
    let base = |delta: Value, finish: Value| {
        json!({"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
               "model": completion["model"], "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]})
    };
    let mut events = vec![base(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let text = out.final_message["content"].as_str().unwrap_or("");
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(64) {
        events.push(base(
            json!({"content": piece.iter().collect::<String>()}),
            Value::Null,
        ));
    }
    if let Some(calls) = out.final_message["tool_calls"]
        .as_array()
        .filter(|c| !c.is_empty())
    {
        let indexed: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"index": i, "id": c["id"], "type": "function", "function": c["function"]}))
            .collect();
        events.push(base(json!({"tool_calls": indexed}), Value::Null));
    }
    let mut last = base(json!({}), completion["choices"][0]["finish_reason"].clone());
    last["usage"] = completion["usage"].clone();
    last["toolgate"] = completion["toolgate"].clone();
    events.push(last);
    let mut body = String::new();
    for e in events {
        body.push_str("data: ");
        body.push_str(&e.to_string());
        body.push_str("\n\n");
    }
    body.push_str("data: [DONE]\n\n");
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
