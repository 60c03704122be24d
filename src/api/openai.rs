//! `POST /v1/chat/completions`: the OpenAI-compatible surface. An unmodified OpenAI client gets a
//! normal `chat.completion` (or SSE chunks) while toolgate runs its own tools server-side.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::agents::{check_messages, find, prompt_error};
use crate::AppState;
use crate::agent::{self, AgentRun, ChatOutcome, FinishReason};
use crate::call::context::{CONTEXT_HEADER, parse_context_header};
use crate::error::{ApiError, ApiJson};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/chat/completions", post(completions))
}

/// The `context` from `X-Toolgate-Context`, if any.
pub(super) fn context_from_headers(headers: &HeaderMap) -> Result<Value, ApiError> {
    match headers.get(CONTEXT_HEADER) {
        None => Ok(json!({})),
        Some(v) => parse_context_header(v.as_bytes()).map_err(ApiError::BadRequest),
    }
}

async fn completions(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::access::Caller>,
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
    let context = caller.bind_context(&context_from_headers(&headers)?);
    let mut run = match model.strip_prefix("agent:") {
        Some(name) => {
            let agent = find(&s, name).await?;
            AgentRun::for_agent(&s, &agent).map_err(prompt_error)?
        }
        None => AgentRun::for_model(&s, model.clone()),
    }
    .for_caller(caller);
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
    let finish = out.finish_reason.openai();
    let mut message = out.final_message.clone();
    if message["content"].is_null() && out.finish_reason != FinishReason::ToolCalls {
        message["content"] = json!("");
    }
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": usage(&out.usage),
        "toolgate": {"calls": out.calls, "messages": out.messages, "stopped": out.finish_reason == FinishReason::MaxSteps}
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
    let mut stream: Vec<Result<Event, std::convert::Infallible>> = events
        .into_iter()
        .map(|e| Ok(Event::default().data(e.to_string())))
        .collect();
    stream.push(Ok(Event::default().data("[DONE]")));
    Sse::new(futures::stream::iter(stream)).into_response()
}
