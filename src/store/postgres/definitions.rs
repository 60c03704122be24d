//! Webhooks, tools and agents. Each change is one transaction that also writes its outbox event
//! and its change notification. Row locks make the delete guards atomic across nodes: a tool
//! link takes a key-share lock on its webhook (the foreign key does the same), the webhook delete
//! an update lock, so whichever commits second sees the first.

use serde_json::json;
use sqlx::Row;

use super::{PgStore, Tx, db, decode, encode, is_unique_violation};
use crate::events::payload::{tool_event, webhook_event};
use crate::model::validate::FieldError;
use crate::model::{Agent, AgentSpec, Tool, ToolSpec, Webhook, WebhookSpec};
use crate::store::{DefinitionStore, StoreChange, StoreError, StoreFuture};

impl PgStore {
    /// Lock the named secrets against deletion until `tx` ends; with `require`, a missing one
    /// is an error.
    async fn lock_secrets(
        &self,
        tx: &mut Tx,
        names: &[String],
        require: bool,
    ) -> Result<(), StoreError> {
        if names.is_empty() {
            return Ok(());
        }
        let found: Vec<String> =
            sqlx::query_scalar("SELECT name FROM secrets WHERE name = ANY($1) FOR KEY SHARE")
                .bind(names)
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?;
        if !require {
            return Ok(());
        }
        let errs: Vec<FieldError> = names
            .iter()
            .filter(|n| !found.contains(n))
            .map(|n| FieldError::new("secret", format!("unknown secret '{n}'")))
            .collect();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Invalid(errs))
        }
    }

    /// Replace the secret references of `owner`.
    pub(super) async fn set_refs(
        &self,
        tx: &mut Tx,
        owner: &str,
        names: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM secret_refs WHERE owner_id = $1")
            .bind(owner)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        if !names.is_empty() {
            sqlx::query(
                "INSERT INTO secret_refs (secret_name, owner_id) SELECT n, $2 FROM unnest($1::text[]) AS n
                 ON CONFLICT DO NOTHING",
            )
            .bind(names)
            .bind(owner)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        }
        Ok(())
    }

    async fn locked_doc<T: serde::de::DeserializeOwned>(
        tx: &mut Tx,
        sql: &'static str,
        id: &str,
        what: &'static str,
    ) -> Result<T, StoreError> {
        let doc: String = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound(what))?;
        decode(&doc)
    }

    async fn put_webhook(
        &self,
        id: Option<&str>,
        spec: WebhookSpec,
        require: bool,
    ) -> Result<Webhook, StoreError> {
        let names = spec.secret_names();
        let mut tx = self.begin().await?;
        self.lock_secrets(&mut tx, &names, require).await?;
        let old: Option<Webhook> = match id {
            None => None,
            Some(id) => Some(
                Self::locked_doc(
                    &mut tx,
                    "SELECT doc FROM webhooks WHERE id = $1 FOR UPDATE",
                    id,
                    "webhook",
                )
                .await?,
            ),
        };
        let webhook = Webhook::stamped(spec, old.as_ref());
        sqlx::query(
            "INSERT INTO webhooks (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET doc = $2",
        )
        .bind(&webhook.id)
        .bind(encode(&webhook)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        self.set_refs(&mut tx, &webhook.id, &names).await?;
        let kind = if id.is_none() {
            "webhook.created"
        } else {
            "webhook.updated"
        };
        self.emit(&mut tx, &webhook_event(kind, &webhook)).await?;
        self.announce(&mut tx, StoreChange::Definitions).await?;
        Self::commit(tx).await?;
        Ok(webhook)
    }

    async fn put_tool(&self, id: Option<&str>, spec: ToolSpec) -> Result<Tool, StoreError> {
        let mut tx = self.begin().await?;
        let old: Option<Tool> = match id {
            None => None,
            Some(id) => Some(
                Self::locked_doc(
                    &mut tx,
                    "SELECT doc FROM tools WHERE id = $1 FOR UPDATE",
                    id,
                    "tool",
                )
                .await?,
            ),
        };
        if let Some(w) = &spec.webhook_id {
            let found: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM webhooks WHERE id = $1 FOR KEY SHARE")
                    .bind(w)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if found.is_none() {
                return Err(StoreError::Invalid(vec![FieldError::new(
                    "webhook_id",
                    format!("unknown webhook '{w}'"),
                )]));
            }
        }
        let tool = Tool::stamped(spec.clone(), old.as_ref());
        let written = sqlx::query(
            "INSERT INTO tools (id, name, webhook_id, doc) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET name = $2, webhook_id = $3, doc = $4",
        )
        .bind(&tool.id)
        .bind(&tool.spec.name)
        .bind(&tool.spec.webhook_id)
        .bind(encode(&tool)?)
        .execute(&mut *tx)
        .await;
        match written {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::NameTaken(spec.name.into()));
            }
            other => other.map_err(db)?,
        };
        let before = old.as_ref().and_then(|o| o.spec.webhook_id.clone());
        if before != spec.webhook_id {
            if let Some(w) = &before {
                self.emit(&mut tx, &tool_event("tool.unlinked", &tool, w))
                    .await?;
            }
            if let Some(w) = &spec.webhook_id {
                self.emit(&mut tx, &tool_event("tool.linked", &tool, w))
                    .await?;
            }
        }
        self.announce(&mut tx, StoreChange::Definitions).await?;
        Self::commit(tx).await?;
        Ok(tool)
    }

    async fn put_agent(&self, id: Option<&str>, spec: AgentSpec) -> Result<Agent, StoreError> {
        let mut tx = self.begin().await?;
        let old: Option<Agent> = match id {
            None => None,
            Some(id) => Some(
                Self::locked_doc(
                    &mut tx,
                    "SELECT doc FROM agents WHERE id = $1 FOR UPDATE",
                    id,
                    "agent",
                )
                .await?,
            ),
        };
        let agent = Agent::stamped(spec.clone(), old.as_ref());
        let written = sqlx::query(
            "INSERT INTO agents (id, name, doc) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET name = $2, doc = $3",
        )
        .bind(&agent.id)
        .bind(&agent.spec.name)
        .bind(encode(&agent)?)
        .execute(&mut *tx)
        .await;
        match written {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::NameTaken(spec.name.into()));
            }
            other => other.map_err(db)?,
        };
        self.announce(&mut tx, StoreChange::Definitions).await?;
        Self::commit(tx).await?;
        Ok(agent)
    }

    async fn all_docs<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let docs: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        docs.iter().map(|d| decode(d)).collect()
    }

    async fn one_doc<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        key: &str,
        what: &'static str,
    ) -> Result<T, StoreError> {
        let doc: String = sqlx::query_scalar(sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound(what))?;
        decode(&doc)
    }
}

impl DefinitionStore for PgStore {
    fn create_webhook<'a>(
        &'a self,
        spec: WebhookSpec,
        require_secrets: bool,
    ) -> StoreFuture<'a, Webhook> {
        Box::pin(self.put_webhook(None, spec, require_secrets))
    }

    fn list_webhooks<'a>(&'a self) -> StoreFuture<'a, Vec<Webhook>> {
        Box::pin(self.all_docs("SELECT doc FROM webhooks ORDER BY id"))
    }

    fn get_webhook<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Webhook> {
        Box::pin(self.one_doc("SELECT doc FROM webhooks WHERE id = $1", id, "webhook"))
    }

    fn update_webhook<'a>(
        &'a self,
        id: &'a str,
        spec: WebhookSpec,
        require_secrets: bool,
    ) -> StoreFuture<'a, Webhook> {
        Box::pin(self.put_webhook(Some(id), spec, require_secrets))
    }

    fn delete_webhook<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let webhook: Webhook = Self::locked_doc(
                &mut tx,
                "SELECT doc FROM webhooks WHERE id = $1 FOR UPDATE",
                id,
                "webhook",
            )
            .await?;
            let linked =
                sqlx::query("SELECT id, name FROM tools WHERE webhook_id = $1 ORDER BY id")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?;
            if !linked.is_empty() {
                let details = linked
                    .iter()
                    .map(|r| {
                        json!({"tool_id": r.get::<String, _>(0), "tool_name": r.get::<String, _>(1)})
                    })
                    .collect();
                return Err(StoreError::InUse {
                    message: "This webhook is currently in use by one or more tools; unlink or delete them first."
                        .to_string(),
                    details,
                });
            }
            self.set_refs(&mut tx, id, &[]).await?;
            sqlx::query("DELETE FROM webhooks WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            self.emit(&mut tx, &webhook_event("webhook.deleted", &webhook))
                .await?;
            self.announce(&mut tx, StoreChange::Definitions).await?;
            Self::commit(tx).await
        })
    }

    fn create_tool<'a>(&'a self, spec: ToolSpec) -> StoreFuture<'a, Tool> {
        Box::pin(self.put_tool(None, spec))
    }

    fn list_tools<'a>(&'a self) -> StoreFuture<'a, Vec<Tool>> {
        Box::pin(self.all_docs("SELECT doc FROM tools ORDER BY id"))
    }

    fn get_tool<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Tool> {
        Box::pin(self.one_doc("SELECT doc FROM tools WHERE id = $1", id, "tool"))
    }

    fn get_tool_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Tool> {
        Box::pin(self.one_doc("SELECT doc FROM tools WHERE name = $1", name, "tool"))
    }

    fn update_tool<'a>(&'a self, id: &'a str, spec: ToolSpec) -> StoreFuture<'a, Tool> {
        Box::pin(self.put_tool(Some(id), spec))
    }

    fn delete_tool<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let tool: Tool = Self::locked_doc(
                &mut tx,
                "SELECT doc FROM tools WHERE id = $1 FOR UPDATE",
                id,
                "tool",
            )
            .await?;
            sqlx::query("DELETE FROM tools WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if let Some(w) = &tool.spec.webhook_id {
                self.emit(&mut tx, &tool_event("tool.unlinked", &tool, w))
                    .await?;
            }
            self.announce(&mut tx, StoreChange::Definitions).await?;
            Self::commit(tx).await
        })
    }

    fn create_agent<'a>(&'a self, spec: AgentSpec) -> StoreFuture<'a, Agent> {
        Box::pin(self.put_agent(None, spec))
    }

    fn list_agents<'a>(&'a self) -> StoreFuture<'a, Vec<Agent>> {
        Box::pin(self.all_docs("SELECT doc FROM agents ORDER BY id"))
    }

    fn get_agent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Agent> {
        Box::pin(self.one_doc("SELECT doc FROM agents WHERE id = $1", id, "agent"))
    }

    fn get_agent_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Agent> {
        Box::pin(self.one_doc("SELECT doc FROM agents WHERE name = $1", name, "agent"))
    }

    fn update_agent<'a>(&'a self, id: &'a str, spec: AgentSpec) -> StoreFuture<'a, Agent> {
        Box::pin(self.put_agent(Some(id), spec))
    }

    fn delete_agent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let done = sqlx::query("DELETE FROM agents WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("agent"));
            }
            self.announce(&mut tx, StoreChange::Definitions).await?;
            Self::commit(tx).await
        })
    }
}
