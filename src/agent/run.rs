//! The tool-calling loop: send the conversation with the tools, run the model's tool calls
//! concurrently through the shared call pipeline, append their results, repeat until the model
//! answers or `max_steps` is reached. Context values go to upstreams only, never to the model.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::llm::LlmError;
use crate::AppState;
use crate::call::{self, CallRequest};
use crate::catalog::CompiledTool;
use crate::model::Source;

/// Everything one conversation turn needs.
pub struct AgentRun {
    /// Model id.
    pub model: String,
    /// System prompt, prepended to the messages.
    pub system_prompt: Option<String>,
    /// Tools executed by the gateway.
    pub tools: Vec<Arc<CompiledTool>>,
    /// Tools defined by the client: offered to the model, their calls returned to the client.
    pub client_tools: Vec<Value>,
    /// Most model calls.
    pub max_steps: u32,
    /// Extra request parameters passed to the model unchanged (temperature, …).
    pub params: Map<String, Value>,
    /// The agent's name, when a stored agent runs.
    pub agent: Option<String>,
    /// Conversation id, carried into history and events.
    pub conversation_id: String,
    /// Who asked: their tools only are offered, and their calls are recorded as theirs.
    pub caller: Option<crate::access::Caller>,
}

/// One tool call the gateway executed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GatewayCall {
    /// The model's tool call id.
    pub tool_call_id: String,
    /// Tool name the model asked for.
    pub tool: String,
    /// History record, when the call reached the pipeline.
    pub call_id: Option<String>,
    /// Outcome name (`unknown_tool` when no such tool exists).
    pub outcome: String,
    /// Whether it succeeded.
    pub ok: bool,
}

/// The result of a turn.
#[derive(Debug, Clone)]
pub struct ChatOutcome {
    /// The model's final text.
    pub reply: String,
    /// Messages added this turn: assistant tool calls, tool results, the final answer.
    pub messages: Vec<Value>,
    /// Tool calls the gateway executed.
    pub calls: Vec<GatewayCall>,
    /// The last model response (for the OpenAI-compatible surface).
    pub last_response: Value,
    /// The final assistant message as returned to an OpenAI client.
    pub final_message: Value,
    /// Why the turn ended.
    pub finish_reason: FinishReason,
    /// Token usage summed over every model call.
    pub usage: Value,
}

/// Why a conversation turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model answered.
    Stop,
    /// The model asked for client tools, handed back to the client.
    ToolCalls,
    /// `max_steps` model calls were made without a final answer.
    MaxSteps,
}

impl FinishReason {
    /// The name in toolgate's own answers and events.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::MaxSteps => "max_steps",
        }
    }

    /// The name an OpenAI client expects (`length` for a step limit).
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::MaxSteps => "length",
            other => other.as_str(),
        }
    }
}

fn add_usage(total: &mut Value, u: &Value) {
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        if let Some(n) = u.get(k).and_then(Value::as_u64) {
            let cur = total.get(k).and_then(Value::as_u64).unwrap_or(0);
            total[k] = json!(cur + n);
        }
    }
}

fn tool_call_name(tc: &Value) -> &str {
    tc["function"]["name"].as_str().unwrap_or("")
}

/// Run one conversation turn, then emit `conversation.completed`.
pub async fn run(
    state: &AppState,
    run: &AgentRun,
    messages: Vec<Value>,
    context: &Value,
) -> Result<ChatOutcome, LlmError> {
    let out = turn(state, run, messages, context).await?;
    let calls: Vec<Value> = out
        .calls
        .iter()
        .map(|c| json!({"call_id": c.call_id, "tool": c.tool, "outcome": c.outcome}))
        .collect();
    let event = crate::model::Event::new(
        "conversation.completed",
        json!({"agent": run.agent, "conversation_id": run.conversation_id}),
        json!({"conversation_id": run.conversation_id, "agent": run.agent, "model": run.model,
               "reply": out.reply, "finish_reason": out.finish_reason, "calls": calls}),
    );
    if let Err(e) = state.store.append_event(&event).await {
        tracing::error!(error = %e, "could not record conversation.completed");
    }
    state.events.wake.notify_one();
    Ok(out)
}

async fn turn(
    state: &AppState,
    run: &AgentRun,
    messages: Vec<Value>,
    context: &Value,
) -> Result<ChatOutcome, LlmError> {
    let gateway: HashMap<&str, &Arc<CompiledTool>> = run
        .tools
        .iter()
        .map(|t| (t.tool.spec.name.as_str(), t))
        .collect();
    let client_names: Vec<&str> = run
        .client_tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    let mut defs: Vec<Value> = run
        .tools
        .iter()
        .filter(|t| !client_names.contains(&t.tool.spec.name.as_str()))
        .map(|t| t.definition())
        .collect();
    defs.extend(run.client_tools.iter().cloned());
    let mut convo = Vec::with_capacity(messages.len() + 1);
    if let Some(sp) = run.system_prompt.as_ref().filter(|s| !s.trim().is_empty()) {
        convo.push(json!({"role": "system", "content": sp}));
    }
    convo.extend(messages);

    let mut added = Vec::new();
    let mut calls = Vec::new();
    let mut usage = json!({});
    let mut last_response = Value::Null;
    for step in 0..run.max_steps {
        let mut req = Value::Object(run.params.clone());
        req["model"] = json!(run.model);
        req["messages"] = Value::Array(convo.clone());
        if !defs.is_empty() {
            req["tools"] = Value::Array(defs.clone());
        }
        let resp = state.llm.chat(req).await?;
        add_usage(&mut usage, &resp["usage"]);
        let message = resp["choices"][0]["message"].clone();
        last_response = resp;
        let tool_calls: Vec<Value> = message["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if tool_calls.is_empty() {
            let reply = message["content"].as_str().unwrap_or("").to_string();
            added.push(message.clone());
            return Ok(ChatOutcome {
                reply,
                messages: added,
                calls,
                last_response,
                final_message: message,
                finish_reason: FinishReason::Stop,
                usage,
            });
        }
        tracing::debug!(step, tool_calls = tool_calls.len(), "model asked for tools");
        let (client_calls, own_calls): (Vec<Value>, Vec<Value>) = tool_calls
            .into_iter()
            .partition(|tc| client_names.contains(&tool_call_name(tc)));
        let mut assistant = message.clone();
        assistant["tool_calls"] = Value::Array(own_calls.clone());
        if !own_calls.is_empty() {
            convo.push(assistant.clone());
            added.push(assistant);
        }
        let results: Vec<(Value, GatewayCall)> = futures::stream::iter(own_calls.clone())
            .map(|tc| execute(state, run, &gateway, tc, context))
            .buffered(state.config.tool_concurrency.max(1))
            .collect()
            .await;
        for (msg, call) in results {
            convo.push(msg.clone());
            added.push(msg);
            calls.push(call);
        }
        if !client_calls.is_empty() {
            let mut final_message = message;
            final_message["tool_calls"] = Value::Array(client_calls);
            added.push(final_message.clone());
            return Ok(ChatOutcome {
                reply: final_message["content"].as_str().unwrap_or("").to_string(),
                messages: added,
                calls,
                last_response,
                final_message,
                finish_reason: FinishReason::ToolCalls,
                usage,
            });
        }
    }
    let reply = format!(
        "I could not finish this request within {} steps, so I stopped. Please rephrase or narrow the request.",
        run.max_steps
    );
    let final_message = json!({"role": "assistant", "content": reply});
    added.push(final_message.clone());
    Ok(ChatOutcome {
        reply,
        messages: added,
        calls,
        last_response,
        final_message,
        finish_reason: FinishReason::MaxSteps,
        usage,
    })
}

async fn execute(
    state: &AppState,
    run: &AgentRun,
    gateway: &HashMap<&str, &Arc<CompiledTool>>,
    tc: Value,
    context: &Value,
) -> (Value, GatewayCall) {
    let tc = &tc;
    let id = tc["id"].as_str().unwrap_or("").to_string();
    let name = tool_call_name(tc).to_string();
    // A tool the caller may not use was not offered; called anyway, it is refused in words the
    // model can read, and recorded as forbidden.
    let hidden = state
        .catalog
        .snapshot()
        .tools
        .get(name.as_str())
        .filter(|t| {
            run.caller
                .as_ref()
                .is_some_and(|c| !c.may_use(&t.tool.spec))
        })
        .cloned();
    let tool = match (gateway.get(name.as_str()), &hidden) {
        (Some(t), _) => Some(*t),
        (None, Some(h)) => Some(h),
        (None, None) => None,
    };
    let Some(tool) = tool else {
        let mut names: Vec<&&str> = gateway.keys().collect();
        names.sort();
        let list: Vec<&str> = names.into_iter().copied().collect();
        let content = format!(
            "Error: there is no tool named '{name}'. Available tools: {}.",
            list.join(", ")
        );
        let call = GatewayCall {
            tool_call_id: id.clone(),
            tool: name,
            call_id: None,
            outcome: "unknown_tool".into(),
            ok: false,
        };
        return (
            json!({"role": "tool", "tool_call_id": id, "content": content}),
            call,
        );
    };
    let arguments = match &tc["function"]["arguments"] {
        Value::Null => Value::String(String::new()),
        other => other.clone(),
    };
    let result = call::invoke(
        &state.pipeline,
        CallRequest {
            tool: Some(&name),
            hook: tool.hook.clone(),
            arguments: &arguments,
            context,
            source: Source::Chat,
            agent: run.agent.as_deref(),
            conversation_id: Some(&run.conversation_id),
            caller: run.caller.as_ref(),
            authorized: &tool.tool.spec.authorized,
        },
    )
    .await;
    let call = GatewayCall {
        tool_call_id: id.clone(),
        tool: name,
        call_id: Some(result.call_id.clone()),
        outcome: result.outcome.as_str().to_string(),
        ok: result.ok,
    };
    (
        json!({"role": "tool", "tool_call_id": id, "content": result.content}),
        call,
    )
}

impl AgentRun {
    /// The run for a stored agent: its prompt (files re-read on every turn) and its linked tools.
    pub fn for_agent(state: &AppState, agent: &crate::model::Agent) -> Result<AgentRun, String> {
        let system_prompt = match (&agent.spec.system_prompt, &agent.spec.prompt) {
            (Some(sp), _) => Some(sp.clone()),
            (None, Some(file)) => {
                let path = state.config.prompts_dir.join(file);
                Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("prompt file '{file}' cannot be read: {e}"))?,
                )
            }
            (None, None) => None,
        };
        let tools = state.catalog.snapshot().visible_tools(Some(&agent.spec));
        Ok(AgentRun {
            model: agent
                .spec
                .model
                .clone()
                .unwrap_or_else(|| state.llm.default_model.clone()),
            system_prompt,
            tools,
            client_tools: Vec::new(),
            max_steps: agent.spec.max_steps,
            params: Map::new(),
            agent: Some(agent.spec.name.to_string()),
            conversation_id: crate::model::ids::new_id("conv"),
            caller: None,
        })
    }

    /// The run for a plain model (an OpenAI client naming no agent): every linked tool, no
    /// system prompt, the default step limit.
    pub fn for_model(state: &AppState, model: String) -> AgentRun {
        AgentRun {
            model,
            system_prompt: None,
            tools: state.catalog.snapshot().visible_tools(None),
            client_tools: Vec::new(),
            max_steps: crate::model::agent::DEFAULT_MAX_STEPS,
            params: Map::new(),
            agent: None,
            conversation_id: crate::model::ids::new_id("conv"),
            caller: None,
        }
    }

    /// This run on behalf of `caller`: the tools it may not use are not offered to the model.
    pub fn for_caller(mut self, caller: crate::access::Caller) -> AgentRun {
        self.tools.retain(|t| caller.may_use(&t.tool.spec));
        self.caller = Some(caller);
        self
    }
}
