//! Persistence behind a small trait of domain operations, so another backend (e.g. PostgreSQL)
//! can replace the embedded sled store without touching the API or call layers.

pub mod group_commit;
pub mod history_codec;
pub mod postgres;
pub mod seal;
pub mod secret_cache;
pub mod sled;

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::access::keys::{ApiKey, StoredKey};
use crate::model::AuditEntry;
use crate::model::validate::FieldError;
use crate::model::{
    Agent, AgentSpec, CallRecord, Delivery, Event, OutcomeFilter, SecretMeta, SecretName, Source,
    Subscription, SubscriptionSpec, Tool, ToolSpec, Webhook, WebhookSpec,
};

pub use postgres::PgStore;
pub use sled::SledStore;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such entity.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique name is already used.
    #[error("the name '{0}' is already taken")]
    NameTaken(String),
    /// Deleting would leave something dangling.
    #[error("{message}")]
    InUse {
        /// Sentence for a person.
        message: String,
        /// What still depends on the entity.
        details: Vec<Value>,
    },
    /// The definition refers to something missing.
    #[error("invalid definition")]
    Invalid(Vec<FieldError>),
    /// The master key does not open the stored secrets.
    #[error(
        "the master key does not match the one this store was created with (every node sharing a database must use the same TOOLGATE_MASTER_KEY)"
    )]
    WrongKey,
    /// The database cannot be reached (connection refused or lost, pool timed out).
    #[error("{0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// Applying the embedded schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// Stored data written by a newer toolgate.
    #[error("data dir has schema version {0}, newer than this build understands")]
    NewerSchema(u64),
    /// sled failed.
    #[error("storage error: {0}")]
    Sled(#[from] ::sled::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Encryption or decryption failed.
    #[error("crypto error: {0}")]
    Crypto(String),
    /// File system error (master key).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A boxed future returned by store operations.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One subject's value of a secret, as listed (never the value).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct SubjectValueMeta {
    /// The secret's id.
    pub secret_id: String,
    /// Whose value it is (matched against the context path a field names).
    pub subject: String,
    /// When it was last set.
    pub updated_at: String,
}

/// Additional authenticated data sealing a subject's value: it cannot be moved to another
/// subject or secret.
pub fn subject_aad(secret_id: &str, subject: &str) -> String {
    format!("{secret_id}\u{1f}{subject}")
}

/// Filters for listing call history.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Only calls of this webhook.
    pub webhook_id: Option<String>,
    /// Only calls of this tool name.
    pub tool: Option<String>,
    /// `failed` (anything but success), or one outcome.
    pub outcome: Option<OutcomeFilter>,
    /// Who started the call.
    pub source: Option<Source>,
    /// Page size.
    pub limit: usize,
    /// Only calls older than this call id.
    pub before: Option<String>,
}

/// Filters for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this subscription's.
    pub subscription_id: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    pub status: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Only deliveries older than this id.
    pub before: Option<String>,
}

/// What another node changed, as told by a shared store's change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChange {
    /// Webhooks, tools, agents or subscriptions: the catalog must be rebuilt.
    Definitions,
    /// A secret was written or deleted: opened values must be forgotten.
    Secrets,
}

/// Held while config files are applied; dropping it lets the next node apply them.
pub type ConfigLock = Box<dyn std::any::Any + Send>;

/// Every domain operation a backend provides, by concern. Writes resolve once they are durable.
pub trait Store:
    SecretStore + DefinitionStore + EventStore + HistoryStore + AccessStore + 'static
{
    /// Make every acknowledged write durable.
    fn flush(&self) -> StoreFuture<'_, ()>;

    /// The backend's name, for `/healthz`.
    fn kind(&self) -> &'static str;

    /// Whether the store answers now: `Unavailable` with the reason if it does not.
    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Changes made through other nodes; `None` for a store only this process opens.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        None
    }

    /// Whether other processes write this store too. If not, the in-memory catalog (refreshed
    /// by every write before it is acknowledged) is as current as the store itself and may
    /// answer listings; if so, another node's write reaches the catalog only through `changes`.
    fn shared(&self) -> bool {
        // A store others write is exactly one with a change feed.
        self.changes().is_some()
    }

    /// Taken while `tools/` and `prompts/` are applied, so two nodes starting together do not
    /// both create the same definitions. `None` where one process owns the store.
    fn config_lock(&self) -> StoreFuture<'_, Option<ConfigLock>> {
        Box::pin(async { Ok(None) })
    }

    /// Where MCP sessions are kept so any node can serve them; `None` keeps them in memory.
    fn mcp_sessions(
        &self,
    ) -> Option<std::sync::Arc<dyn rmcp::transport::streamable_http_server::session::SessionStore>>
    {
        None
    }
}

/// Secrets: write-only values, sealed at rest.
pub trait SecretStore: Send + Sync {
    /// Store a new secret; `NameTaken` if the name exists.
    fn create_secret<'a>(
        &'a self,
        name: &'a SecretName,
        value: &'a str,
    ) -> StoreFuture<'a, SecretMeta>;
    /// Create or replace a secret by name (used for `TOOLGATE_SECRET_*`).
    fn upsert_secret<'a>(
        &'a self,
        name: &'a SecretName,
        value: &'a str,
    ) -> StoreFuture<'a, SecretMeta>;
    /// All secrets' metadata.
    fn list_secrets<'a>(&'a self) -> StoreFuture<'a, Vec<SecretMeta>>;
    /// One secret's metadata.
    fn get_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, SecretMeta>;
    /// Replace a secret's value.
    fn update_secret<'a>(&'a self, id: &'a str, value: &'a str) -> StoreFuture<'a, SecretMeta>;
    /// Delete a secret unless a webhook references it.
    fn delete_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()>;
    /// Decrypted value of the named secret, `None` if absent.
    fn secret_value<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>>;
    /// Whether a secret with this name exists.
    fn secret_exists<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool>;
    /// Store (or replace) the secret's value for one subject (an end user's id).
    fn set_subject_value<'a>(
        &'a self,
        id: &'a str,
        subject: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, SubjectValueMeta>;
    /// Remove the secret's value for one subject.
    fn delete_subject_value<'a>(&'a self, id: &'a str, subject: &'a str) -> StoreFuture<'a, ()>;
    /// The subjects that have a value of the secret (never the values).
    fn list_subject_values<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<SubjectValueMeta>>;
    /// The decrypted value of the named secret for `subject`, `None` if there is none.
    fn subject_value<'a>(
        &'a self,
        name: &'a str,
        subject: &'a str,
    ) -> StoreFuture<'a, Option<String>>;
}

/// Webhooks, tools and agents.
pub trait DefinitionStore: Send + Sync {
    /// Store a validated webhook. With `require_secrets`, every referenced secret must exist.
    fn create_webhook<'a>(
        &'a self,
        spec: WebhookSpec,
        require_secrets: bool,
    ) -> StoreFuture<'a, Webhook>;
    /// All webhooks.
    fn list_webhooks<'a>(&'a self) -> StoreFuture<'a, Vec<Webhook>>;
    /// One webhook.
    fn get_webhook<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Webhook>;
    /// Replace a webhook's definition in place.
    fn update_webhook<'a>(
        &'a self,
        id: &'a str,
        spec: WebhookSpec,
        require_secrets: bool,
    ) -> StoreFuture<'a, Webhook>;
    /// Delete a webhook unless a tool links to it.
    fn delete_webhook<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()>;

    /// Store a tool; its webhook, if any, must exist.
    fn create_tool<'a>(&'a self, spec: ToolSpec) -> StoreFuture<'a, Tool>;
    /// All tools.
    fn list_tools<'a>(&'a self) -> StoreFuture<'a, Vec<Tool>>;
    /// One tool by id.
    fn get_tool<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Tool>;
    /// One tool by name.
    fn get_tool_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Tool>;
    /// Replace a tool (rename, relink, unlink).
    fn update_tool<'a>(&'a self, id: &'a str, spec: ToolSpec) -> StoreFuture<'a, Tool>;
    /// Delete a tool.
    fn delete_tool<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()>;

    /// Store a new agent; `NameTaken` if the name exists.
    fn create_agent<'a>(&'a self, spec: AgentSpec) -> StoreFuture<'a, Agent>;
    /// All agents.
    fn list_agents<'a>(&'a self) -> StoreFuture<'a, Vec<Agent>>;
    /// One agent by id.
    fn get_agent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Agent>;
    /// One agent by name.
    fn get_agent_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Agent>;
    /// Replace an agent.
    fn update_agent<'a>(&'a self, id: &'a str, spec: AgentSpec) -> StoreFuture<'a, Agent>;
    /// Delete an agent.
    fn delete_agent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()>;
}

/// Event subscriptions, the outbox and deliveries.
pub trait EventStore: Send + Sync {
    /// Store a subscription and its (sealed) signing secret.
    fn create_subscription<'a>(
        &'a self,
        spec: SubscriptionSpec,
        signing_secret: &'a str,
    ) -> StoreFuture<'a, Subscription>;
    /// All subscriptions.
    fn list_subscriptions<'a>(&'a self) -> StoreFuture<'a, Vec<Subscription>>;
    /// One subscription.
    fn get_subscription<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Subscription>;
    /// Replace a subscription's definition (re-enabling clears `disabled_reason`).
    fn update_subscription<'a>(
        &'a self,
        id: &'a str,
        spec: SubscriptionSpec,
    ) -> StoreFuture<'a, Subscription>;
    /// Disable a subscription, saying why.
    fn disable_subscription<'a>(&'a self, id: &'a str, reason: &'a str) -> StoreFuture<'a, ()>;
    /// Delete a subscription.
    fn delete_subscription<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()>;
    /// Replace the signing secret.
    fn set_signing_secret<'a>(&'a self, id: &'a str, secret: &'a str) -> StoreFuture<'a, ()>;
    /// The decrypted signing secret.
    fn signing_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, String>;
    /// Put an event in the outbox (changes put theirs in their own transaction).
    fn append_event<'a>(&'a self, event: &'a Event) -> StoreFuture<'a, ()>;
    /// Turn outbox events into pending deliveries for the subscriptions that want them.
    fn dispatch_outbox(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, usize>;
    /// A pending delivery of `event` to one subscription, due now (test pings). The same on
    /// every backend: the subscription must exist, then the delivery is saved.
    fn enqueue_delivery<'a>(
        &'a self,
        subscription_id: &'a str,
        event: &'a Event,
        now_ms: u64,
    ) -> StoreFuture<'a, Delivery> {
        Box::pin(async move {
            // The stored subscription's id: a well-formed one, since it was found.
            let sub = self.get_subscription(subscription_id).await?;
            let d = crate::events::delivery_to(event, &sub.id, now_ms)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.save_delivery(&d).await?;
            Ok(d)
        })
    }
    /// Pending deliveries due at or before `now_ms`, oldest due first.
    fn due_deliveries<'a>(&'a self, now_ms: u64, limit: usize) -> StoreFuture<'a, Vec<Delivery>>;
    /// When the next pending delivery is due.
    fn next_due<'a>(&'a self) -> StoreFuture<'a, Option<u64>>;
    /// Save a delivery after an attempt (keeps the due index in step).
    fn save_delivery<'a>(&'a self, delivery: &'a Delivery) -> StoreFuture<'a, ()>;
    /// One delivery.
    fn get_delivery<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Delivery>;
    /// Deliveries, newest first.
    fn list_deliveries<'a>(&'a self, filter: &'a DeliveryFilter) -> StoreFuture<'a, Vec<Delivery>>;
}

/// Filters for listing the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries of this actor (key name, `admin-token`, `local`).
    pub actor: Option<String>,
    /// Only entries about this resource id.
    pub resource: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Only entries older than this entry id.
    pub before: Option<String>,
}

/// API keys (hashes only) and the audit log.
pub trait AccessStore: Send + Sync {
    /// Store a new key; `NameTaken` if the name is used.
    fn create_key<'a>(&'a self, key: &'a StoredKey) -> StoreFuture<'a, ()>;
    /// Every key, hash included (for verification), oldest first.
    fn list_keys<'a>(&'a self) -> StoreFuture<'a, Vec<StoredKey>>;
    /// Replace a key's record (the hash stays); `NameTaken` if renamed onto another key.
    fn update_key<'a>(&'a self, key: &'a ApiKey) -> StoreFuture<'a, ()>;
    /// Revoke a key.
    fn delete_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()>;
    /// Record when a key was last used.
    fn touch_key<'a>(&'a self, id: &'a str, at: &'a str) -> StoreFuture<'a, ()>;
    /// Append an audit entry.
    fn append_audit<'a>(&'a self, entry: &'a AuditEntry) -> StoreFuture<'a, ()>;
    /// Audit entries, newest first.
    fn list_audit<'a>(&'a self, filter: &'a AuditFilter) -> StoreFuture<'a, Vec<AuditEntry>>;
}

/// The call history.
pub trait HistoryStore: Send + Sync {
    /// Append packed history records and apply retention (count, then age in seconds).
    fn insert_packed<'a>(
        &'a self,
        records: &'a [history_codec::PackedCall<'a>],
        max_records: usize,
        max_age_secs: u64,
    ) -> StoreFuture<'a, ()>;
    /// Append history records (packed here) and apply retention, as `insert_packed`.
    fn insert_calls<'a>(
        &'a self,
        records: &'a [CallRecord],
        max_records: usize,
        max_age_secs: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let batch = history_codec::PackedBatch::of(&records.iter().collect::<Vec<_>>())?;
            let packed = batch.records();
            self.insert_packed(&packed, max_records, max_age_secs).await
        })
    }
    /// One call record.
    fn get_call<'a>(&'a self, id: &'a str) -> StoreFuture<'a, CallRecord>;
    /// Call records, newest first.
    fn list_calls<'a>(&'a self, filter: &'a CallFilter) -> StoreFuture<'a, Vec<CallRecord>>;
}
