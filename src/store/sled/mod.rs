//! The embedded store: one sled tree per entity plus name and reference indexes.
//! Multi-entity changes run in sled transactions, and every write is flushed before it is
//! acknowledged. One file per concern: secrets, definitions, events (outbox and deliveries),
//! history.

mod access;
mod definitions;
mod events;
mod history;
mod secrets;
mod segments;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree, abort};

use super::group_commit::GroupCommit;
use super::seal::Sealer;
use super::{
    CallFilter, DefinitionStore, DeliveryFilter, EventStore, HistoryStore, SecretStore, Store,
    StoreError, StoreFuture,
};
use crate::model::validate::FieldError;
use crate::model::{
    Agent, AgentSpec, CallRecord, Delivery, DeliveryStatus, Event, SecretMeta, Subscription,
    SubscriptionSpec, Tool, ToolSpec, Webhook, WebhookSpec, now_rfc3339,
};

/// Data layout version; bump with a migration when the layout changes. 2: history chunk bodies
/// in segment files (a version-1 store is read as it is; a version-1 binary refuses a version-2
/// store instead of taking its chunk references for corrupt chunks).
pub const SCHEMA_VERSION: u64 = 2;

#[derive(Serialize, Deserialize)]
struct SecretRecord {
    #[serde(flatten)]
    meta: SecretMeta,
    sealed: String,
}

/// sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    commit: GroupCommit,
    sealer: Sealer,
    meta: sled::Tree,
    secrets: sled::Tree,
    secret_names: sled::Tree,
    /// secret name → newline-separated ids of webhooks that reference it.
    secret_users: sled::Tree,
    webhooks: sled::Tree,
    tools: sled::Tree,
    tool_names: sled::Tree,
    /// webhook id → newline-separated ids of the tools linked to it.
    links: sled::Tree,
    agents: sled::Tree,
    agent_names: sled::Tree,
    calls: sled::Tree,
    subscriptions: sled::Tree,
    /// subscription id → sealed signing secret.
    sub_keys: sled::Tree,
    /// event id → event not yet turned into deliveries.
    outbox: sled::Tree,
    deliveries: sled::Tree,
    /// due time (8 bytes, big-endian ms) ‖ delivery id → () for pending deliveries.
    due: sled::Tree,
    /// key id → stored key (hash, never the key).
    keys: sled::Tree,
    /// key name → key id.
    key_names: sled::Tree,
    /// audit entry id → entry.
    audit: sled::Tree,
    /// secret id ‖ 0 ‖ subject → sealed per-subject value.
    secret_values: sled::Tree,
    sub_count: std::sync::atomic::AtomicUsize,
    /// Stored call records, mirroring the count kept in the calls tree.
    call_count: std::sync::atomic::AtomicUsize,
    /// Where the history starts: the oldest chunk retention has reached and how many of its
    /// first records are past retention (mirroring the calls tree's head entry). Pruning starts
    /// there instead of walking over what sled has not yet merged away, and reads skip those
    /// records.
    history_head: std::sync::Mutex<history::Head>,
    /// Held while a history batch computes its count and retention, so two writers cannot
    /// interleave them.
    history_write: std::sync::Mutex<()>,
    /// The history chunks' bodies (`history/` beside the database).
    segments: segments::Segments,
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn decode_list(b: Option<sled::IVec>) -> Vec<String> {
    b.map(|b| {
        String::from_utf8_lossy(&b)
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn list_add(tree: &TransactionalTree, key: &str, id: &str) -> TxResult<()> {
    let mut list = decode_list(tree.get(key)?);
    if !list.iter().any(|x| x == id) {
        list.push(id.to_string());
    }
    tree.insert(key.as_bytes(), list.join("\n").as_bytes())?;
    Ok(())
}

fn list_remove(tree: &TransactionalTree, key: &str, id: &str) -> TxResult<()> {
    let mut list = decode_list(tree.get(key)?);
    list.retain(|x| x != id);
    if list.is_empty() {
        tree.remove(key.as_bytes())?;
    } else {
        tree.insert(key.as_bytes(), list.join("\n").as_bytes())?;
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn tx_decode<T: DeserializeOwned>(b: &[u8]) -> TxResult<T> {
    decode(b).map_err(ConflictableTransactionError::Abort)
}

fn due_key(at_ms: u64, id: &str) -> Vec<u8> {
    let mut k = at_ms.to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

/// sled page cache size.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl SledStore {
    /// Open (or create) the store in `dir` with the given master key.
    pub fn open(dir: &Path, key: &[u8; 32]) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        // sled caches up to 1 GiB of pages by default; definitions fit in far less, and a large
        // history is read a page at a time.
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let t = |n: &str| db.open_tree(n);
        let store = SledStore {
            sealer: Sealer::new(key),
            meta: t("meta")?,
            secrets: t("secrets")?,
            secret_names: t("secret_names")?,
            secret_users: t("secret_users")?,
            webhooks: t("webhooks")?,
            tools: t("tools")?,
            tool_names: t("tool_names")?,
            links: t("links")?,
            agents: t("agents")?,
            agent_names: t("agent_names")?,
            calls: t("calls")?,
            subscriptions: t("subscriptions")?,
            sub_keys: t("sub_keys")?,
            outbox: t("outbox")?,
            deliveries: t("deliveries")?,
            due: t("due")?,
            keys: t("keys")?,
            key_names: t("key_names")?,
            audit: t("audit")?,
            secret_values: t("secret_values")?,
            sub_count: Default::default(),
            call_count: Default::default(),
            history_head: Default::default(),
            history_write: Default::default(),
            segments: segments::Segments::open(&dir.join("history"))?,
            commit: GroupCommit::new(db.clone()),
            db,
        };
        store.check_schema_and_key()?;
        store.sub_count.store(
            store.subscriptions.len(),
            std::sync::atomic::Ordering::Relaxed,
        );
        store.open_history()?;
        store.db.flush()?;
        Ok(store)
    }

    pub(super) fn check_schema_and_key(&self) -> Result<(), StoreError> {
        match self.meta.get("schema_version")? {
            Some(v) => {
                let n = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                if n > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema(n));
                }
                if n < SCHEMA_VERSION {
                    self.meta
                        .insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
                }
            }
            None => {
                self.meta
                    .insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
            }
        }
        match self.meta.get("key_check")? {
            Some(v) => {
                let sealed = String::from_utf8_lossy(&v).to_string();
                self.sealer.open(&sealed, "key_check").map(|_| ())?;
            }
            None => {
                let sealed = self.sealer.seal("toolgate", "key_check")?;
                self.meta.insert("key_check", sealed.as_bytes())?;
            }
        }
        Ok(())
    }

    pub(super) fn events_on(&self) -> bool {
        self.sub_count.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Add an event to the outbox inside the caller's transaction (only when someone listens).
    pub(super) fn emit(&self, outbox: &TransactionalTree, event: Event) -> TxResult<()> {
        if self.events_on() {
            outbox.insert(
                event.event_id.as_bytes(),
                encode(&event).map_err(ConflictableTransactionError::Abort)?,
            )?;
        }
        Ok(())
    }

    pub(super) async fn durable(&self) -> Result<(), StoreError> {
        self.commit.flush().await?;
        Ok(())
    }

    pub(super) fn all<T: DeserializeOwned>(tree: &sled::Tree) -> Result<Vec<T>, StoreError> {
        tree.iter().values().map(|v| decode(&v?)).collect()
    }
}

impl Store for SledStore {
    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.durable())
    }

    fn kind(&self) -> &'static str {
        "sled"
    }
}
