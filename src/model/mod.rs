//! Plain serde domain types: what toolgate stores and serves.
//! Nothing here knows about HTTP or sled; validation of definitions lives in `validate`.

pub mod agent;
pub mod audit;
pub mod call;
pub mod event;
pub mod field;
pub mod ids;
pub mod names;
pub mod secret;
pub mod template;
pub mod tool;
pub mod validate;
pub mod webhook;

pub use agent::{Agent, AgentSpec};
pub use audit::AuditEntry;
pub use call::{CallRecord, Outcome, OutcomeFilter, Source};
pub use event::{
    Delivery, DeliveryStatus, Event, Subscription, SubscriptionAuth, SubscriptionSpec,
};
pub use field::{DataType, Field, QueryStyle, ValueType};
pub use secret::SecretMeta;
pub use tool::{Tool, ToolSpec};
pub use webhook::{BodyEncoding, Method, RetryPolicy, Webhook, WebhookSpec};

/// Who besides the API owns a definition.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    /// A `tools/` or `prompts/` file: edits go there.
    File,
}

/// Current time as an RFC 3339 UTC string, the format of every timestamp toolgate emits.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}
