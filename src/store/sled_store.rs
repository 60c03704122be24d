//! The embedded store: one sled tree per entity plus name and reference indexes.
//! Multi-entity changes run in sled transactions, and every write is flushed before it is acknowledged.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree, abort};

use super::group_commit::GroupCommit;
use super::seal::Sealer;
use super::{CallFilter, DeliveryFilter, Store, StoreError, StoreFuture};
use crate::model::ids::new_id;
use crate::model::validate::FieldError;
use crate::model::{
    Agent, AgentSpec, CallRecord, Delivery, DeliveryStatus, Event, SecretMeta, Subscription,
    SubscriptionSpec, Tool, ToolSpec, Webhook, WebhookSpec, now_rfc3339,
};

/// Data layout version; bump with a migration when the layout changes.
pub const SCHEMA_VERSION: u64 = 1;

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
    sub_count: std::sync::atomic::AtomicUsize,
    /// Stored call records; counted in the background at open (sled's `len` is a full scan).
    call_count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
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
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

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
            sub_count: Default::default(),
            call_count: Default::default(),
            commit: GroupCommit::new(db.clone()),
            db,
        };
        store.check_schema_and_key()?;
        store.sub_count.store(
            store.subscriptions.len(),
            std::sync::atomic::Ordering::Relaxed,
        );
        store.count_calls_in_background()?;
        store.db.flush()?;
        Ok(store)
    }

    /// Count the records present at open on a side thread, so a large history does not delay the
    /// start or pull every page into memory; records written meanwhile have larger ids and are
    /// counted by `insert_calls` instead.
    fn count_calls_in_background(&self) -> Result<(), StoreError> {
        let Some((last, _)) = self.calls.last()? else {
            return Ok(());
        };
        let (calls, count) = (self.calls.clone(), self.call_count.clone());
        std::thread::Builder::new()
            .name("count-calls".into())
            .spawn(move || {
                let n = calls
                    .range(..=last)
                    .keys()
                    .take_while(Result::is_ok)
                    .count();
                count.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            })?;
        Ok(())
    }

    fn check_schema_and_key(&self) -> Result<(), StoreError> {
        match self.meta.get("schema_version")? {
            Some(v) => {
                let n = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                if n > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema(n));
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

    fn events_on(&self) -> bool {
        self.sub_count.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Add an event to the outbox inside the caller's transaction (only when someone listens).
    fn emit(&self, outbox: &TransactionalTree, event: Event) -> TxResult<()> {
        if self.events_on() {
            outbox.insert(
                event.event_id.as_bytes(),
                encode(&event).map_err(ConflictableTransactionError::Abort)?,
            )?;
        }
        Ok(())
    }

    fn secret_record_by_id(&self, id: &str) -> Result<SecretRecord, StoreError> {
        let raw = self
            .secrets
            .get(id)?
            .ok_or(StoreError::NotFound("secret"))?;
        decode(&raw)
    }

    async fn durable(&self) -> Result<(), StoreError> {
        self.commit.flush().await?;
        Ok(())
    }

    fn check_secret_refs(
        &self,
        names: &[String],
        require: bool,
        secret_names: &TransactionalTree,
    ) -> TxResult<()> {
        if !require {
            return Ok(());
        }
        let mut errs = Vec::new();
        for n in names {
            if secret_names.get(n.as_bytes())?.is_none() {
                errs.push(FieldError::new("secret", format!("unknown secret '{n}'")));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            abort(StoreError::Invalid(errs))
        }
    }

    fn put_webhook(
        &self,
        id: Option<&str>,
        spec: WebhookSpec,
        require: bool,
    ) -> Result<Webhook, StoreError> {
        let now = now_rfc3339();
        let new_names = spec.secret_names();
        let res = (
            &self.webhooks,
            &self.secret_names,
            &self.secret_users,
            &self.outbox,
        )
            .transaction(|(wh, sn, su, ob)| {
                self.check_secret_refs(&new_names, require, sn)?;
                let (webhook, old_names) = match id {
                    None => (
                        Webhook {
                            id: new_id("wh"),
                            spec: spec.clone(),
                            created_at: now.clone(),
                            updated_at: now.clone(),
                        },
                        Vec::new(),
                    ),
                    Some(id) => {
                        let Some(raw) = wh.get(id.as_bytes())? else {
                            return abort(StoreError::NotFound("webhook"));
                        };
                        let old: Webhook = tx_decode(&raw)?;
                        let names = old.spec.secret_names();
                        (
                            Webhook {
                                id: old.id,
                                spec: spec.clone(),
                                created_at: old.created_at,
                                updated_at: now.clone(),
                            },
                            names,
                        )
                    }
                };
                for n in old_names.iter().filter(|n| !new_names.contains(n)) {
                    list_remove(su, n, &webhook.id)?;
                }
                for n in &new_names {
                    list_add(su, n, &webhook.id)?;
                }
                let bytes = encode(&webhook).map_err(ConflictableTransactionError::Abort)?;
                wh.insert(webhook.id.as_bytes(), bytes)?;
                let kind = if id.is_none() {
                    "webhook.created"
                } else {
                    "webhook.updated"
                };
                self.emit(ob, crate::events::payload::webhook_event(kind, &webhook))?;
                Ok(webhook)
            });
        res.map_err(tx_err)
    }

    fn put_tool(&self, id: Option<&str>, spec: ToolSpec) -> Result<Tool, StoreError> {
        let now = now_rfc3339();
        let res = (
            &self.tools,
            &self.tool_names,
            &self.webhooks,
            &self.links,
            &self.outbox,
        )
            .transaction(|(tt, tn, wh, ln, ob)| {
                let old: Option<Tool> = match id {
                    None => None,
                    Some(id) => match tt.get(id.as_bytes())? {
                        Some(raw) => Some(tx_decode(&raw)?),
                        None => return abort(StoreError::NotFound("tool")),
                    },
                };
                if let Some(owner) = tn.get(spec.name.as_bytes())?
                    && old
                        .as_ref()
                        .is_none_or(|o| owner.as_ref() != o.id.as_bytes())
                {
                    return abort(StoreError::NameTaken(spec.name.clone()));
                }
                if let Some(w) = &spec.webhook_id
                    && wh.get(w.as_bytes())?.is_none()
                {
                    return abort(StoreError::Invalid(vec![FieldError::new(
                        "webhook_id",
                        format!("unknown webhook '{w}'"),
                    )]));
                }
                let tool = match &old {
                    None => Tool {
                        id: new_id("tl"),
                        spec: spec.clone(),
                        created_at: now.clone(),
                        updated_at: now.clone(),
                    },
                    Some(o) => Tool {
                        id: o.id.clone(),
                        spec: spec.clone(),
                        created_at: o.created_at.clone(),
                        updated_at: now.clone(),
                    },
                };
                if let Some(o) = &old {
                    if o.spec.name != spec.name {
                        tn.remove(o.spec.name.as_bytes())?;
                    }
                    if let Some(w) = &o.spec.webhook_id {
                        list_remove(ln, w, &o.id)?;
                    }
                }
                tn.insert(spec.name.as_bytes(), tool.id.as_bytes())?;
                if let Some(w) = &spec.webhook_id {
                    list_add(ln, w, &tool.id)?;
                }
                let bytes = encode(&tool).map_err(ConflictableTransactionError::Abort)?;
                tt.insert(tool.id.as_bytes(), bytes)?;
                let before = old.as_ref().and_then(|o| o.spec.webhook_id.clone());
                if before != spec.webhook_id {
                    if let Some(w) = &before {
                        self.emit(
                            ob,
                            crate::events::payload::tool_event("tool.unlinked", &tool, w),
                        )?;
                    }
                    if let Some(w) = &spec.webhook_id {
                        self.emit(
                            ob,
                            crate::events::payload::tool_event("tool.linked", &tool, w),
                        )?;
                    }
                }
                Ok(tool)
            });
        res.map_err(tx_err)
    }

    fn put_agent(&self, id: Option<&str>, spec: AgentSpec) -> Result<Agent, StoreError> {
        let now = now_rfc3339();
        let res = (&self.agents, &self.agent_names).transaction(|(at, an)| {
            let old: Option<Agent> = match id {
                None => None,
                Some(id) => match at.get(id.as_bytes())? {
                    Some(raw) => Some(tx_decode(&raw)?),
                    None => return abort(StoreError::NotFound("agent")),
                },
            };
            if let Some(owner) = an.get(spec.name.as_bytes())?
                && old
                    .as_ref()
                    .is_none_or(|o| owner.as_ref() != o.id.as_bytes())
            {
                return abort(StoreError::NameTaken(spec.name.clone()));
            }
            let agent = match &old {
                None => Agent {
                    id: new_id("ag"),
                    spec: spec.clone(),
                    created_at: now.clone(),
                    updated_at: now.clone(),
                },
                Some(o) => {
                    if o.spec.name != spec.name {
                        an.remove(o.spec.name.as_bytes())?;
                    }
                    Agent {
                        id: o.id.clone(),
                        spec: spec.clone(),
                        created_at: o.created_at.clone(),
                        updated_at: now.clone(),
                    }
                }
            };
            an.insert(spec.name.as_bytes(), agent.id.as_bytes())?;
            at.insert(
                agent.id.as_bytes(),
                encode(&agent).map_err(ConflictableTransactionError::Abort)?,
            )?;
            Ok(agent)
        });
        res.map_err(tx_err)
    }

    fn put_subscription(
        &self,
        id: Option<&str>,
        spec: SubscriptionSpec,
        disabled_reason: Option<String>,
        sealed_key: Option<(String, String)>,
    ) -> Result<Subscription, StoreError> {
        let now = now_rfc3339();
        let new_secret = spec.auth.secret_name().map(str::to_string);
        let res = (
            &self.subscriptions,
            &self.secret_names,
            &self.secret_users,
            &self.sub_keys,
        )
            .transaction(|(st, sn, su, sk)| {
                if let Some(n) = &new_secret
                    && sn.get(n.as_bytes())?.is_none()
                {
                    return abort(StoreError::Invalid(vec![FieldError::new(
                        "auth.secret",
                        format!("unknown secret '{n}'"),
                    )]));
                }
                let sub = match id {
                    None => Subscription {
                        id: sealed_key
                            .as_ref()
                            .map(|k| k.0.clone())
                            .unwrap_or_else(|| new_id("sub")),
                        spec: spec.clone(),
                        disabled_reason: disabled_reason.clone(),
                        created_at: now.clone(),
                        updated_at: now.clone(),
                    },
                    Some(id) => {
                        let Some(raw) = st.get(id.as_bytes())? else {
                            return abort(StoreError::NotFound("subscription"));
                        };
                        let old: Subscription = tx_decode(&raw)?;
                        if let Some(n) = old.spec.auth.secret_name() {
                            list_remove(su, n, id)?;
                        }
                        Subscription {
                            id: old.id,
                            spec: spec.clone(),
                            disabled_reason: disabled_reason.clone(),
                            created_at: old.created_at,
                            updated_at: now.clone(),
                        }
                    }
                };
                if let Some(n) = &new_secret {
                    list_add(su, n, &sub.id)?;
                }
                if let Some((_, sealed)) = &sealed_key {
                    sk.insert(sub.id.as_bytes(), sealed.as_bytes())?;
                }
                st.insert(
                    sub.id.as_bytes(),
                    encode(&sub).map_err(ConflictableTransactionError::Abort)?,
                )?;
                Ok(sub)
            });
        res.map_err(tx_err)
    }

    fn all<T: DeserializeOwned>(tree: &sled::Tree) -> Result<Vec<T>, StoreError> {
        tree.iter().values().map(|v| decode(&v?)).collect()
    }

    fn prune_calls(&self, max_records: usize, max_age_secs: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let cutoff = time::OffsetDateTime::now_utc()
            - time::Duration::seconds(max_age_secs.min(i64::MAX as u64) as i64);
        let mut batch = sled::Batch::default();
        let mut removed = 0usize;
        let mut count = self.call_count.load(Relaxed);
        for item in self.calls.iter() {
            let (k, v) = item?;
            let too_many = max_records > 0 && count > max_records;
            let too_old = max_age_secs > 0
                && decode::<CallRecord>(&v)
                    .ok()
                    .and_then(|r| {
                        time::OffsetDateTime::parse(
                            &r.started_at,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    })
                    .is_some_and(|t| t < cutoff);
            if !too_many && !too_old {
                break;
            }
            batch.remove(k);
            count -= 1;
            removed += 1;
        }
        if removed > 0 {
            self.calls.apply_batch(batch)?;
            self.call_count.store(count, Relaxed);
        }
        Ok(())
    }
}

fn matches(r: &CallRecord, f: &CallFilter) -> bool {
    if f.webhook_id.as_ref().is_some_and(|w| *w != r.webhook_id) {
        return false;
    }
    if f.tool
        .as_ref()
        .is_some_and(|t| r.tool.as_deref() != Some(t.as_str()))
    {
        return false;
    }
    if f.source.is_some_and(|s| s != r.source) {
        return false;
    }
    f.outcome.is_none_or(|o| o.matches(r.outcome))
}

impl Store for SledStore {
    fn create_secret<'a>(&'a self, name: &'a str, value: &'a str) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            let now = now_rfc3339();
            let meta = SecretMeta {
                id: new_id("sec"),
                name: name.to_string(),
                created_at: now.clone(),
                updated_at: now,
            };
            let rec = SecretRecord {
                sealed: self.sealer.seal(value, &meta.id)?,
                meta: meta.clone(),
            };
            let bytes = encode(&rec)?;
            (&self.secrets, &self.secret_names)
                .transaction(|(s, sn)| {
                    if sn.get(name.as_bytes())?.is_some() {
                        return abort(StoreError::NameTaken(name.to_string()));
                    }
                    sn.insert(name.as_bytes(), meta.id.as_bytes())?;
                    s.insert(meta.id.as_bytes(), bytes.clone())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await?;
            Ok(meta)
        })
    }

    fn upsert_secret<'a>(&'a self, name: &'a str, value: &'a str) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            match self.secret_names.get(name.as_bytes())? {
                Some(id) => {
                    let id = String::from_utf8_lossy(&id).to_string();
                    self.update_secret(&id, value).await
                }
                None => self.create_secret(name, value).await,
            }
        })
    }

    fn list_secrets(&self) -> Result<Vec<SecretMeta>, StoreError> {
        let recs: Vec<SecretRecord> = Self::all(&self.secrets)?;
        Ok(recs.into_iter().map(|r| r.meta).collect())
    }

    fn get_secret(&self, id: &str) -> Result<SecretMeta, StoreError> {
        Ok(self.secret_record_by_id(id)?.meta)
    }

    fn update_secret<'a>(&'a self, id: &'a str, value: &'a str) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            let sealed = self.sealer.seal(value, id)?;
            let now = now_rfc3339();
            let meta = self
                .secrets
                .transaction(|s| {
                    let Some(raw) = s.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("secret"));
                    };
                    let mut rec: SecretRecord = tx_decode(&raw)?;
                    rec.sealed = sealed.clone();
                    rec.meta.updated_at = now.clone();
                    s.insert(
                        id.as_bytes(),
                        encode(&rec).map_err(ConflictableTransactionError::Abort)?,
                    )?;
                    Ok(rec.meta)
                })
                .map_err(tx_err)?;
            self.durable().await?;
            Ok(meta)
        })
    }

    fn delete_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            (&self.secrets, &self.secret_names, &self.secret_users, &self.webhooks)
                .transaction(|(s, sn, su, wh)| {
                    let Some(raw) = s.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("secret"));
                    };
                    let rec: SecretRecord = tx_decode(&raw)?;
                    let users = decode_list(su.get(rec.meta.name.as_bytes())?);
                    if !users.is_empty() {
                        let mut details = Vec::new();
                        for w in &users {
                            if w.starts_with("sub_") {
                                details.push(json!({"subscription_id": w}));
                                continue;
                            }
                            let name = match wh.get(w.as_bytes())? {
                                Some(raw) => tx_decode::<Webhook>(&raw)?.spec.name,
                                None => String::new(),
                            };
                            details.push(json!({"webhook_id": w, "webhook_name": name}));
                        }
                        return abort(StoreError::InUse {
                            message: format!(
                                "This secret is currently in use by {} webhook(s) or subscription(s); remove the references first.",
                                users.len()
                            ),
                            details,
                        });
                    }
                    s.remove(id.as_bytes())?;
                    sn.remove(rec.meta.name.as_bytes())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await
        })
    }

    fn secret_value(&self, name: &str) -> Result<Option<String>, StoreError> {
        let Some(id) = self.secret_names.get(name.as_bytes())? else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&id).to_string();
        match self.secret_record_by_id(&id) {
            Ok(rec) => Ok(Some(self.sealer.open(&rec.sealed, &id)?)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn secret_exists(&self, name: &str) -> bool {
        matches!(self.secret_names.get(name.as_bytes()), Ok(Some(_)))
    }

    fn create_webhook<'a>(
        &'a self,
        spec: WebhookSpec,
        require_secrets: bool,
    ) -> StoreFuture<'a, Webhook> {
        Box::pin(async move {
            let w = self.put_webhook(None, spec, require_secrets)?;
            self.durable().await?;
            Ok(w)
        })
    }

    fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        Self::all(&self.webhooks)
    }

    fn get_webhook(&self, id: &str) -> Result<Webhook, StoreError> {
        decode(
            &self
                .webhooks
                .get(id.as_bytes())?
                .ok_or(StoreError::NotFound("webhook"))?,
        )
    }

    fn update_webhook<'a>(
        &'a self,
        id: &'a str,
        spec: WebhookSpec,
        require_secrets: bool,
    ) -> StoreFuture<'a, Webhook> {
        Box::pin(async move {
            let w = self.put_webhook(Some(id), spec, require_secrets)?;
            self.durable().await?;
            Ok(w)
        })
    }

    fn delete_webhook<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            (&self.webhooks, &self.links, &self.tools, &self.secret_users, &self.outbox)
                .transaction(|(wh, ln, tt, su, ob)| {
                    let Some(raw) = wh.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("webhook"));
                    };
                    let webhook: Webhook = tx_decode(&raw)?;
                    let linked = decode_list(ln.get(id.as_bytes())?);
                    if !linked.is_empty() {
                        let mut details = Vec::new();
                        for t in &linked {
                            let name = match tt.get(t.as_bytes())? {
                                Some(raw) => tx_decode::<Tool>(&raw)?.spec.name,
                                None => String::new(),
                            };
                            details.push(json!({"tool_id": t, "tool_name": name}));
                        }
                        return abort(StoreError::InUse {
                            message: "This webhook is currently in use by one or more tools; unlink or delete them first."
                                .to_string(),
                            details,
                        });
                    }
                    for n in webhook.spec.secret_names() {
                        list_remove(su, &n, id)?;
                    }
                    wh.remove(id.as_bytes())?;
                    self.emit(ob, crate::events::payload::webhook_event("webhook.deleted", &webhook))?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await
        })
    }

    fn create_tool<'a>(&'a self, spec: ToolSpec) -> StoreFuture<'a, Tool> {
        Box::pin(async move {
            let t = self.put_tool(None, spec)?;
            self.durable().await?;
            Ok(t)
        })
    }

    fn list_tools(&self) -> Result<Vec<Tool>, StoreError> {
        Self::all(&self.tools)
    }

    fn get_tool(&self, id: &str) -> Result<Tool, StoreError> {
        decode(
            &self
                .tools
                .get(id.as_bytes())?
                .ok_or(StoreError::NotFound("tool"))?,
        )
    }

    fn get_tool_by_name(&self, name: &str) -> Result<Tool, StoreError> {
        let id = self
            .tool_names
            .get(name.as_bytes())?
            .ok_or(StoreError::NotFound("tool"))?;
        self.get_tool(&String::from_utf8_lossy(&id))
    }

    fn update_tool<'a>(&'a self, id: &'a str, spec: ToolSpec) -> StoreFuture<'a, Tool> {
        Box::pin(async move {
            let t = self.put_tool(Some(id), spec)?;
            self.durable().await?;
            Ok(t)
        })
    }

    fn delete_tool<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            (&self.tools, &self.tool_names, &self.links, &self.outbox)
                .transaction(|(tt, tn, ln, ob)| {
                    let Some(raw) = tt.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("tool"));
                    };
                    let tool: Tool = tx_decode(&raw)?;
                    tt.remove(id.as_bytes())?;
                    tn.remove(tool.spec.name.as_bytes())?;
                    if let Some(w) = &tool.spec.webhook_id {
                        list_remove(ln, w, id)?;
                        self.emit(
                            ob,
                            crate::events::payload::tool_event("tool.unlinked", &tool, w),
                        )?;
                    }
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await
        })
    }

    fn create_agent<'a>(&'a self, spec: AgentSpec) -> StoreFuture<'a, Agent> {
        Box::pin(async move {
            let a = self.put_agent(None, spec)?;
            self.durable().await?;
            Ok(a)
        })
    }

    fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        Self::all(&self.agents)
    }

    fn get_agent(&self, id: &str) -> Result<Agent, StoreError> {
        decode(
            &self
                .agents
                .get(id.as_bytes())?
                .ok_or(StoreError::NotFound("agent"))?,
        )
    }

    fn get_agent_by_name(&self, name: &str) -> Result<Agent, StoreError> {
        let id = self
            .agent_names
            .get(name.as_bytes())?
            .ok_or(StoreError::NotFound("agent"))?;
        self.get_agent(&String::from_utf8_lossy(&id))
    }

    fn update_agent<'a>(&'a self, id: &'a str, spec: AgentSpec) -> StoreFuture<'a, Agent> {
        Box::pin(async move {
            let a = self.put_agent(Some(id), spec)?;
            self.durable().await?;
            Ok(a)
        })
    }

    fn delete_agent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            (&self.agents, &self.agent_names)
                .transaction(|(at, an)| {
                    let Some(raw) = at.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("agent"));
                    };
                    let agent: Agent = tx_decode(&raw)?;
                    at.remove(id.as_bytes())?;
                    an.remove(agent.spec.name.as_bytes())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await
        })
    }

    fn create_subscription<'a>(
        &'a self,
        spec: SubscriptionSpec,
        signing_secret: &'a str,
    ) -> StoreFuture<'a, Subscription> {
        Box::pin(async move {
            let id = new_id("sub");
            let sealed = self.sealer.seal(signing_secret, &id)?;
            let sub = self.put_subscription(None, spec, None, Some((id, sealed)))?;
            self.sub_count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.durable().await?;
            Ok(sub)
        })
    }

    fn list_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        Self::all(&self.subscriptions)
    }

    fn get_subscription(&self, id: &str) -> Result<Subscription, StoreError> {
        decode(
            &self
                .subscriptions
                .get(id.as_bytes())?
                .ok_or(StoreError::NotFound("subscription"))?,
        )
    }

    fn update_subscription<'a>(
        &'a self,
        id: &'a str,
        spec: SubscriptionSpec,
    ) -> StoreFuture<'a, Subscription> {
        Box::pin(async move {
            let old = self.get_subscription(id)?;
            let reason = if spec.enabled {
                None
            } else {
                old.disabled_reason
            };
            let sub = self.put_subscription(Some(id), spec, reason, None)?;
            self.durable().await?;
            Ok(sub)
        })
    }

    fn disable_subscription<'a>(&'a self, id: &'a str, reason: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut sub = self.get_subscription(id)?;
            sub.spec.enabled = false;
            self.put_subscription(Some(id), sub.spec, Some(reason.to_string()), None)?;
            self.durable().await
        })
    }

    fn delete_subscription<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            (&self.subscriptions, &self.sub_keys, &self.secret_users)
                .transaction(|(st, sk, su)| {
                    let Some(raw) = st.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("subscription"));
                    };
                    let sub: Subscription = tx_decode(&raw)?;
                    if let Some(n) = sub.spec.auth.secret_name() {
                        list_remove(su, n, id)?;
                    }
                    st.remove(id.as_bytes())?;
                    sk.remove(id.as_bytes())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.sub_count
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            self.durable().await
        })
    }

    fn set_signing_secret<'a>(&'a self, id: &'a str, secret: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.get_subscription(id)?;
            let sealed = self.sealer.seal(secret, id)?;
            self.sub_keys.insert(id.as_bytes(), sealed.as_bytes())?;
            self.durable().await
        })
    }

    fn signing_secret(&self, id: &str) -> Result<String, StoreError> {
        let raw = self
            .sub_keys
            .get(id.as_bytes())?
            .ok_or(StoreError::NotFound("subscription"))?;
        self.sealer.open(&String::from_utf8_lossy(&raw), id)
    }

    fn append_event<'a>(&'a self, event: &'a Event) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if self.events_on() {
                self.outbox
                    .insert(event.event_id.as_bytes(), encode(event)?)?;
                self.durable().await?;
            }
            Ok(())
        })
    }

    fn dispatch_outbox(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let mut created = 0;
            let pending: Vec<(sled::IVec, sled::IVec)> =
                self.outbox.iter().take(limit).collect::<Result<_, _>>()?;
            if pending.is_empty() {
                return Ok(0);
            }
            let subs: Vec<Subscription> = self.list_subscriptions()?;
            for (key, raw) in pending {
                let event: Event = decode(&raw)?;
                let deliveries = crate::events::fan_out(&event, &subs, now_ms)
                    .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?;
                let encoded: Vec<(String, Vec<u8>)> = deliveries
                    .iter()
                    .map(|d| Ok((d.id.clone(), encode(d)?)))
                    .collect::<Result<_, StoreError>>()?;
                (&self.outbox, &self.deliveries, &self.due)
                    .transaction(|(ob, dl, due)| {
                        ob.remove(&key)?;
                        for (id, bytes) in &encoded {
                            dl.insert(id.as_bytes(), bytes.clone())?;
                            due.insert(due_key(now_ms, id), &[] as &[u8])?;
                        }
                        Ok(())
                    })
                    .map_err(tx_err)?;
                created += encoded.len();
            }
            self.durable().await?;
            Ok(created)
        })
    }

    fn enqueue_delivery<'a>(
        &'a self,
        subscription_id: &'a str,
        event: &'a Event,
        now_ms: u64,
    ) -> StoreFuture<'a, Delivery> {
        Box::pin(async move {
            self.get_subscription(subscription_id)?;
            let now = now_rfc3339();
            let d = Delivery {
                id: new_id("dlv"),
                event_id: event.event_id.clone(),
                event_type: event.event_type.clone(),
                subscription_id: subscription_id.to_string(),
                status: DeliveryStatus::Pending,
                payload: serde_json::to_value(event)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                attempts: Vec::new(),
                next_attempt_at: Some(now_ms),
                schedule_start: 0,
                created_at: now.clone(),
                updated_at: now,
            };
            self.save_delivery(&d).await?;
            Ok(d)
        })
    }

    fn due_deliveries(&self, now_ms: u64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .due
            .range(..due_key(now_ms.saturating_add(1), ""))
            .take(limit)
        {
            let (k, _) = item?;
            let id = String::from_utf8_lossy(&k[8..]).to_string();
            match self.get_delivery(&id) {
                Ok(d) => out.push(d),
                Err(StoreError::NotFound(_)) => {
                    self.due.remove(&k)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn next_due(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.due.first()?.and_then(|(k, _)| {
            k.get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        }))
    }

    fn save_delivery<'a>(&'a self, delivery: &'a Delivery) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let bytes = encode(delivery)?;
            (&self.deliveries, &self.due)
                .transaction(|(dl, due)| {
                    if let Some(raw) = dl.get(delivery.id.as_bytes())? {
                        let old: Delivery = tx_decode(&raw)?;
                        if let Some(at) = old.next_attempt_at {
                            due.remove(due_key(at, &old.id))?;
                        }
                    }
                    if delivery.status == DeliveryStatus::Pending
                        && let Some(at) = delivery.next_attempt_at
                    {
                        due.insert(due_key(at, &delivery.id), &[] as &[u8])?;
                    }
                    dl.insert(delivery.id.as_bytes(), bytes.clone())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await
        })
    }

    fn get_delivery(&self, id: &str) -> Result<Delivery, StoreError> {
        decode(
            &self
                .deliveries
                .get(id.as_bytes())?
                .ok_or(StoreError::NotFound("delivery"))?,
        )
    }

    fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let iter = match &filter.before {
            Some(b) => self.deliveries.range(..b.as_bytes().to_vec()),
            None => self.deliveries.iter(),
        };
        let mut out = Vec::new();
        for item in iter.rev() {
            let (_, v) = item?;
            let d: Delivery = decode(&v)?;
            if filter
                .subscription_id
                .as_ref()
                .is_some_and(|s| *s != d.subscription_id)
                || filter
                    .status
                    .as_ref()
                    .is_some_and(|s| s != d.status.as_str())
            {
                continue;
            }
            out.push(d);
            if out.len() >= filter.limit {
                break;
            }
        }
        Ok(out)
    }

    fn insert_calls<'a>(
        &'a self,
        records: &'a [CallRecord],
        max_records: usize,
        max_age_secs: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut added = 0;
            let mut encoded = Vec::with_capacity(records.len());
            for r in records {
                if !self.calls.contains_key(r.id.as_bytes())? {
                    added += 1;
                }
                encoded.push((r, encode(r)?));
            }
            if self.events_on() {
                // The call events go to the outbox in the same transaction as the records.
                (&self.calls, &self.outbox)
                    .transaction(|(calls, ob)| {
                        for (r, bytes) in &encoded {
                            calls.insert(r.id.as_bytes(), bytes.clone())?;
                            self.emit(ob, crate::events::payload::call_event(r))?;
                        }
                        Ok(())
                    })
                    .map_err(tx_err)?;
            } else {
                // Nobody listens: an atomic batch on one tree, without the global transaction lock.
                let mut batch = sled::Batch::default();
                for (r, bytes) in encoded {
                    batch.insert(r.id.as_bytes(), bytes);
                }
                self.calls.apply_batch(batch)?;
            }
            self.call_count
                .fetch_add(added, std::sync::atomic::Ordering::Relaxed);
            self.prune_calls(max_records, max_age_secs)?;
            self.durable().await
        })
    }

    fn get_call(&self, id: &str) -> Result<CallRecord, StoreError> {
        decode(
            &self
                .calls
                .get(id.as_bytes())?
                .ok_or(StoreError::NotFound("call"))?,
        )
    }

    fn list_calls(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let iter = match &filter.before {
            Some(b) => self.calls.range(..b.as_bytes().to_vec()),
            None => self.calls.iter(),
        };
        let mut out = Vec::new();
        for item in iter.rev() {
            let (_, v) = item?;
            let rec: CallRecord = decode(&v)?;
            if matches(&rec, filter) {
                out.push(rec);
                if out.len() >= filter.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.durable())
    }
}
