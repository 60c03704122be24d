//! A recorded tool call: what was sent, what came back, how it ended.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx from the upstream.
    Success,
    /// Non-2xx from the upstream.
    HttpError,
    /// No complete answer within the timeout.
    Timeout,
    /// Connection refused, reset, DNS failure, TLS failure…
    NetworkError,
    /// Destination refused by the network policy.
    Blocked,
    /// Arguments (or context) missing or not coercible: nothing was sent.
    InvalidArguments,
    /// The webhook cannot be rendered (a secret is missing): nothing was sent.
    ConfigError,
    /// The caller's key may not use the tool, or has used up its rate limit: nothing was sent.
    Forbidden,
}

impl Outcome {
    /// snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::HttpError => "http_error",
            Outcome::Timeout => "timeout",
            Outcome::NetworkError => "network_error",
            Outcome::Blocked => "blocked",
            Outcome::InvalidArguments => "invalid_arguments",
            Outcome::ConfigError => "config_error",
            Outcome::Forbidden => "forbidden",
        }
    }

    /// Parse the snake_case name.
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "success" => Outcome::Success,
            "http_error" => Outcome::HttpError,
            "timeout" => Outcome::Timeout,
            "network_error" => Outcome::NetworkError,
            "blocked" => Outcome::Blocked,
            "invalid_arguments" => Outcome::InvalidArguments,
            "config_error" => Outcome::ConfigError,
            "forbidden" => Outcome::Forbidden,
            _ => return None,
        })
    }
}

/// The history's outcome filter: `failed` (anything but success) or one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeFilter {
    /// Every outcome but `success`.
    Failed,
    /// Exactly this outcome.
    Is(Outcome),
}

impl OutcomeFilter {
    /// Whether a record with `outcome` passes.
    pub fn matches(self, outcome: Outcome) -> bool {
        match self {
            OutcomeFilter::Failed => outcome != Outcome::Success,
            OutcomeFilter::Is(o) => o == outcome,
        }
    }
}

impl schemars::JsonSchema for OutcomeFilter {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OutcomeFilter".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`failed` (every outcome but success) or one outcome",
            "enum": ["failed", "success", "http_error", "timeout", "network_error", "blocked",
                     "invalid_arguments", "config_error", "forbidden"]
        })
    }
}

impl<'de> Deserialize<'de> for OutcomeFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "failed" {
            return Ok(OutcomeFilter::Failed);
        }
        Outcome::parse(&s).map(OutcomeFilter::Is).ok_or_else(|| {
            serde::de::Error::custom(
                "outcome is success, failed, http_error, timeout, network_error, blocked, invalid_arguments or config_error",
            )
        })
    }
}

/// Who started a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `POST /v1/tools/{name}/invoke`.
    Invoke,
    /// `POST /v1/webhooks/{id}/test`.
    Test,
    /// The agent loop.
    Chat,
    /// The MCP server.
    Mcp,
}

impl Source {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Invoke => "invoke",
            Source::Test => "test",
            Source::Chat => "chat",
            Source::Mcp => "mcp",
        }
    }
}

/// The request as sent (secrets redacted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body: JSON, form text, or null.
    pub body: Value,
}

/// The upstream's answer (secrets redacted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordedResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON or text (cut at the configured size).
    pub body: Value,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CallRecord {
    /// Call id (time-ordered).
    pub id: super::CallId,
    /// Tool name, when called through a tool.
    pub tool: Option<String>,
    /// Webhook id.
    pub webhook_id: String,
    /// Who started the call.
    pub source: Source,
    /// Start time.
    pub started_at: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Short description of the failure, if any.
    pub error: Option<String>,
    /// Arguments after coercion (secrets redacted).
    #[serde(default)]
    pub arguments: Value,
    /// What was sent; absent when refused before sending.
    pub request: Option<RecordedRequest>,
    /// What came back; absent when nothing did.
    pub response: Option<RecordedResponse>,
    /// Attempts made (retries included).
    #[serde(default)]
    pub attempts: u32,
    /// Agent whose conversation made the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Conversation the call belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Who made the call: the API key's name, `admin-token`, or `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The context the call was made with (secrets and sensitive values redacted), so it can be
    /// replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}
