//! Outbound events: what toolgate tells subscribers, the subscriptions themselves, and the
//! durable record of every delivery attempt.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Event types toolgate emits (`ping` only from the test route).
pub const EVENT_TYPES: [&str; 9] = [
    "call.succeeded",
    "call.failed",
    "webhook.created",
    "webhook.updated",
    "webhook.deleted",
    "tool.linked",
    "tool.unlinked",
    "conversation.completed",
    "ping",
];

/// The envelope every delivery carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    /// Unique, time-ordered id (`evt_…`), also the `webhook-id` header.
    pub event_id: String,
    /// When it happened (RFC 3339).
    pub event_time: String,
    /// One of [`EVENT_TYPES`].
    pub event_type: String,
    /// Where it happened: agent, tool, conversation id, source, as known.
    pub current_context: Value,
    /// Type-specific payload.
    pub data: Value,
}

impl Event {
    /// A new event of `event_type`.
    pub fn new(event_type: &str, current_context: Value, data: Value) -> Event {
        Event {
            event_id: super::ids::new_id("evt"),
            event_time: super::now_rfc3339(),
            event_type: event_type.to_string(),
            current_context,
            data,
        }
    }
}

/// How a subscriber authenticates toolgate, besides the Standard Webhooks signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SubscriptionAuth {
    /// Signature only.
    #[default]
    None,
    /// A header whose value is a stored secret (e.g. `AccessKey`, `X-API-Key`).
    ApiKey {
        /// Header name.
        header: String,
        /// Secret name.
        secret: String,
    },
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// User name.
        username: String,
        /// Secret name holding the password.
        password_secret: String,
    },
    /// A secret included in the message body under `field`.
    ClientSecret {
        /// Secret name.
        secret: String,
        /// Body field name (default `client_secret`).
        #[serde(default = "default_client_secret_field")]
        field: String,
    },
}

fn default_client_secret_field() -> String {
    "client_secret".into()
}

impl SubscriptionAuth {
    /// Secret names this auth refers to.
    pub fn secret_name(&self) -> Option<&str> {
        match self {
            SubscriptionAuth::None => None,
            SubscriptionAuth::ApiKey { secret, .. } => Some(secret),
            SubscriptionAuth::Basic {
                password_secret, ..
            } => Some(password_secret),
            SubscriptionAuth::ClientSecret { secret, .. } => Some(secret),
        }
    }
}

fn default_true() -> bool {
    true
}

/// A subscription as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Human name.
    pub name: String,
    /// Receiver URL (http or https).
    pub url: String,
    /// Event types wanted; `*` for all.
    pub event_types: Vec<String>,
    /// Whether deliveries are made.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Extra authentication.
    #[serde(default)]
    pub auth: SubscriptionAuth,
}

impl SubscriptionSpec {
    /// Whether this subscription wants `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.enabled && self.event_types.iter().any(|t| t == "*" || t == event_type)
    }
}

/// A stored subscription (the signing secret is kept sealed, apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Subscription {
    /// Opaque id.
    pub id: super::SubscriptionId,
    /// The definition.
    #[serde(flatten)]
    pub spec: SubscriptionSpec,
    /// Why it was disabled automatically (e.g. the receiver answered 410).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last edit time.
    pub updated_at: String,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx was received.
    Succeeded,
    /// Every attempt failed, or retries were stopped.
    Failed,
}

impl DeliveryStatus {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One HTTP attempt of a delivery (secrets redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    /// 1-based attempt number.
    pub attempt: u32,
    /// Start time.
    pub started_at: String,
    /// Wall time.
    pub duration_ms: u64,
    /// URL, headers and body sent.
    pub request: Value,
    /// Receiver status, if it answered.
    pub status: Option<u16>,
    /// Receiver body (cut at 4 KiB).
    pub response_body: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// One event on its way to one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Delivery {
    /// Opaque, time-ordered id.
    pub id: String,
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The subscription.
    pub subscription_id: super::SubscriptionId,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// The envelope sent.
    pub payload: Value,
    /// Every attempt so far.
    pub attempts: Vec<Attempt>,
    /// Unix milliseconds of the next attempt, while pending.
    pub next_attempt_at: Option<u64>,
    /// Attempts left in the current retry schedule are counted from here.
    #[serde(default)]
    pub schedule_start: u32,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}
