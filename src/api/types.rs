//! Wire types of the HTTP surface that are not domain types: query strings, list pages and the
//! few answers shaped for a route. Handlers build them and `doc` describes them, from the same
//! definitions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::GatewayCall;
use crate::model::{Method, OutcomeFilter, Source, Subscription};

/// `q`: a case-insensitive search of the list's names (and more, per route).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Search {
    /// Text to look for.
    pub q: Option<String>,
}

/// Filters of the call history.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// Only calls of this webhook.
    pub webhook_id: Option<String>,
    /// Only calls of this tool.
    pub tool: Option<String>,
    /// `failed` (every outcome but success) or one outcome.
    pub outcome: Option<OutcomeFilter>,
    /// Who started the call.
    pub source: Option<Source>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<usize>,
    /// Only calls older than this call id (`next_before` of the previous page).
    pub before: Option<String>,
}

/// A delivery's state, as the delivery log filters it.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// Answered 2xx.
    Succeeded,
    /// Gave up (schedule exhausted, 410, or an abort).
    Failed,
}

impl DeliveryState {
    /// The name the store filters on.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failed => "failed",
        }
    }
}

/// Filters of the delivery log.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeliveryQuery {
    /// Only this subscription's deliveries.
    pub subscription_id: Option<String>,
    /// Only deliveries in this state.
    pub status: Option<DeliveryState>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<usize>,
    /// Only deliveries older than this id.
    pub before: Option<String>,
}

/// `?strict=true`: the structured-outputs variant.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SchemaQuery {
    /// Every property required (optional ones nullable), every object closed.
    #[serde(default)]
    pub strict: bool,
}

/// Which provider's schema rules an export follows.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// OpenAI function calling (also what vLLM, Ollama and most compatible servers take).
    #[default]
    Openai,
    /// Gemini function declarations: no `additionalProperties`, `nullable` instead of type
    /// unions, a smaller keyword set.
    Gemini,
}

/// `?dialect=`: which provider's schema rules the export follows.
#[derive(Debug, Deserialize, Default, JsonSchema)]
pub struct ExportQuery {
    /// `openai` (default) or `gemini`.
    #[serde(default)]
    pub dialect: Dialect,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// The store backend (`sled` or `postgres`); it answered.
    pub store: &'static str,
}

/// A whole list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Items<T> {
    /// The entries.
    pub items: Vec<T>,
}

/// One page of a long list, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// `before` for the next page; null on the last one.
    pub next_before: Option<String>,
}

/// A webhook in the list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WebhookSummary {
    /// Id.
    pub id: crate::model::WebhookId,
    /// Name.
    pub name: String,
    /// URL template.
    pub url: String,
    /// Method.
    pub method: Method,
    /// Creation time.
    pub created_at: String,
}

/// A new subscription, with its signing secret (shown this once).
#[derive(Debug, Serialize, JsonSchema)]
pub struct SubscriptionCreated {
    /// The subscription.
    #[serde(flatten)]
    pub subscription: Subscription,
    /// The Standard Webhooks signing secret (`whsec_…`).
    pub signing_secret: String,
}

/// A replaced signing secret (shown this once).
#[derive(Debug, Serialize, JsonSchema)]
pub struct RotatedSecret {
    /// Subscription id.
    pub id: String,
    /// The new signing secret.
    pub signing_secret: String,
}

/// A queued test ping.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PingSent {
    /// The delivery to watch.
    pub delivery_id: String,
    /// The ping event.
    pub event_id: String,
}

/// One conversation turn's answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ChatReply {
    /// The model's final text.
    pub reply: String,
    /// Messages this turn added: tool calls, tool results, the answer.
    pub messages: Vec<Value>,
    /// History ids of the calls made.
    pub calls: Vec<String>,
    /// Every tool call with its outcome.
    pub tool_calls: Vec<GatewayCall>,
    /// The conversation (generated when the request had none).
    pub conversation_id: String,
    /// `max_steps` when the step limit ended the turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// Every error's body.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// Stable snake_case code (`invalid_definition`, `not_found`, …).
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// Per-field problems (`{"field", "message"}`), dependants of a refused delete, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Value>>,
    /// The history record of a refused call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}
