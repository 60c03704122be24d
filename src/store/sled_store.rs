//! The embedded store: one sled tree per entity plus name and reference indexes.
//! Multi-entity changes run in sled transactions, and every write is flushed before it is acknowledged.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree, abort};

use super::seal::Sealer;
use super::{CallFilter, Store, StoreError, StoreFuture};
use crate::model::ids::new_id;
use crate::model::validate::FieldError;
use crate::model::{
    Agent, AgentSpec, CallRecord, Outcome, SecretMeta, Tool, ToolSpec, Webhook, WebhookSpec,
    now_rfc3339,
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
    call_count: std::sync::atomic::AtomicUsize,
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

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

impl SledStore {
    /// Open (or create) the store in `dir` with the given master key.
    pub fn open(dir: &Path, key: &[u8; 32]) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new().path(dir.join("db")).open()?;
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
            call_count: Default::default(),
            db,
        };
        store.check_schema_and_key()?;
        store
            .call_count
            .store(store.calls.len(), std::sync::atomic::Ordering::Relaxed);
        store.db.flush()?;
        Ok(store)
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

    fn secret_record_by_id(&self, id: &str) -> Result<SecretRecord, StoreError> {
        let raw = self
            .secrets
            .get(id)?
            .ok_or(StoreError::NotFound("secret"))?;
        decode(&raw)
    }

    async fn durable(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
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
        let res =
            (&self.webhooks, &self.secret_names, &self.secret_users).transaction(|(wh, sn, su)| {
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
                Ok(webhook)
            });
        res.map_err(tx_err)
    }

    fn put_tool(&self, id: Option<&str>, spec: ToolSpec) -> Result<Tool, StoreError> {
        let now = now_rfc3339();
        let res = (&self.tools, &self.tool_names, &self.webhooks, &self.links).transaction(
            |(tt, tn, wh, ln)| {
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
                Ok(tool)
            },
        );
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
    if f.source.as_ref().is_some_and(|s| s != r.source.as_str()) {
        return false;
    }
    match f.outcome.as_deref() {
        None => true,
        Some("failed") => r.outcome != Outcome::Success,
        Some(o) => o == r.outcome.as_str(),
    }
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
                            let name = match wh.get(w.as_bytes())? {
                                Some(raw) => tx_decode::<Webhook>(&raw)?.spec.name,
                                None => String::new(),
                            };
                            details.push(json!({"webhook_id": w, "webhook_name": name}));
                        }
                        return abort(StoreError::InUse {
                            message: format!(
                                "This secret is currently in use by {} webhook(s); remove the references first.",
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
            (&self.webhooks, &self.links, &self.tools, &self.secret_users)
                .transaction(|(wh, ln, tt, su)| {
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
            (&self.tools, &self.tool_names, &self.links)
                .transaction(|(tt, tn, ln)| {
                    let Some(raw) = tt.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("tool"));
                    };
                    let tool: Tool = tx_decode(&raw)?;
                    tt.remove(id.as_bytes())?;
                    tn.remove(tool.spec.name.as_bytes())?;
                    if let Some(w) = &tool.spec.webhook_id {
                        list_remove(ln, w, id)?;
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

    fn insert_calls<'a>(
        &'a self,
        records: &'a [CallRecord],
        max_records: usize,
        max_age_secs: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut batch = sled::Batch::default();
            let mut added = 0;
            for r in records {
                if !self.calls.contains_key(r.id.as_bytes())? {
                    added += 1;
                }
                batch.insert(r.id.as_bytes(), encode(r)?);
            }
            self.calls.apply_batch(batch)?;
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
