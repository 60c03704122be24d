//! Plain serde domain types: what toolgate stores and serves.
//! Nothing here knows about HTTP or sled; validation of definitions lives in `validate`.

/// `stamped` for a stored definition (`id`, `spec`, `created_at`, `updated_at`): a new one with
/// a fresh id, or `previous` revised to a new spec, keeping its id and creation time. Every store
/// backend stamps definitions the same way through it.
macro_rules! stamped {
    ($record:ident, $spec:ty, $id:ident) => {
        impl $record {
            /// A new record of `spec`, or `previous` revised to `spec` (same id and creation time).
            pub fn stamped(spec: $spec, previous: Option<&$record>) -> $record {
                let now = $crate::model::now_rfc3339();
                match previous {
                    None => $record {
                        id: $crate::model::ids::$id::new(),
                        spec,
                        created_at: now.clone(),
                        updated_at: now,
                    },
                    Some(p) => $record {
                        id: p.id.clone(),
                        spec,
                        created_at: p.created_at.clone(),
                        updated_at: now,
                    },
                }
            }
        }
    };
}

#[macro_use]
mod text_type;

pub mod agent;
pub mod audit;
pub mod call;
pub mod clock;
pub mod event;
pub mod field;
pub mod ids;
pub mod names;
pub mod secret;
pub mod submitted;
pub mod template;
pub mod tool;
pub mod validate;
pub mod webhook;

pub use agent::{Agent, AgentSpec};
pub use audit::AuditEntry;
pub use call::{CallRecord, Outcome, OutcomeFilter, Source};
pub use clock::now_rfc3339;
pub use event::{
    Delivery, DeliveryStatus, Event, Subscription, SubscriptionAuth, SubscriptionSpec,
};
pub use field::{DataType, Field, QueryStyle, ValueType};
pub use ids::{AgentId, CallId, SecretId, SubscriptionId, ToolId, WebhookId};
pub use names::{AgentName, SecretName, ToolName};
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

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
