//! Webhooks, tools and agents, with their name, link and secret-reference indexes.

use super::*;

impl SledStore {
    pub(super) fn check_secret_refs(
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

    pub(super) fn put_webhook(
        &self,
        id: Option<&str>,
        spec: WebhookSpec,
        require: bool,
    ) -> Result<Webhook, StoreError> {
        let new_names = spec.secret_names();
        let res = (
            &self.webhooks,
            &self.secret_names,
            &self.secret_users,
            &self.outbox,
        )
            .transaction(|(wh, sn, su, ob)| {
                self.check_secret_refs(&new_names, require, sn)?;
                let old: Option<Webhook> = match id {
                    None => None,
                    Some(id) => match wh.get(id.as_bytes())? {
                        Some(raw) => Some(tx_decode(&raw)?),
                        None => return abort(StoreError::NotFound("webhook")),
                    },
                };
                let old_names = old
                    .as_ref()
                    .map(|o| o.spec.secret_names())
                    .unwrap_or_default();
                let webhook = Webhook::stamped(spec.clone(), old.as_ref());
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

    pub(super) fn put_tool(&self, id: Option<&str>, spec: ToolSpec) -> Result<Tool, StoreError> {
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
                    return abort(StoreError::NameTaken(spec.name.to_string()));
                }
                if let Some(w) = &spec.webhook_id
                    && wh.get(w.as_bytes())?.is_none()
                {
                    return abort(StoreError::Invalid(vec![FieldError::new(
                        "webhook_id",
                        format!("unknown webhook '{w}'"),
                    )]));
                }
                let tool = Tool::stamped(spec.clone(), old.as_ref());
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

    pub(super) fn put_agent(&self, id: Option<&str>, spec: AgentSpec) -> Result<Agent, StoreError> {
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
                return abort(StoreError::NameTaken(spec.name.to_string()));
            }
            if let Some(o) = &old
                && o.spec.name != spec.name
            {
                an.remove(o.spec.name.as_bytes())?;
            }
            let agent = Agent::stamped(spec.clone(), old.as_ref());
            an.insert(spec.name.as_bytes(), agent.id.as_bytes())?;
            at.insert(
                agent.id.as_bytes(),
                encode(&agent).map_err(ConflictableTransactionError::Abort)?,
            )?;
            Ok(agent)
        });
        res.map_err(tx_err)
    }
}

impl DefinitionStore for SledStore {
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

    fn list_webhooks<'a>(&'a self) -> StoreFuture<'a, Vec<Webhook>> {
        Box::pin(async move { Self::all(&self.webhooks) })
    }

    fn get_webhook<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Webhook> {
        Box::pin(async move {
            decode(
                &self
                    .webhooks
                    .get(id.as_bytes())?
                    .ok_or(StoreError::NotFound("webhook"))?,
            )
        })
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
                                Some(raw) => tx_decode::<Tool>(&raw)?.spec.name.into(),
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

    fn list_tools<'a>(&'a self) -> StoreFuture<'a, Vec<Tool>> {
        Box::pin(async move { Self::all(&self.tools) })
    }

    fn get_tool<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Tool> {
        Box::pin(async move {
            decode(
                &self
                    .tools
                    .get(id.as_bytes())?
                    .ok_or(StoreError::NotFound("tool"))?,
            )
        })
    }

    fn get_tool_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Tool> {
        Box::pin(async move {
            let id = self
                .tool_names
                .get(name.as_bytes())?
                .ok_or(StoreError::NotFound("tool"))?;
            self.get_tool(&String::from_utf8_lossy(&id)).await
        })
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

    fn list_agents<'a>(&'a self) -> StoreFuture<'a, Vec<Agent>> {
        Box::pin(async move { Self::all(&self.agents) })
    }

    fn get_agent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Agent> {
        Box::pin(async move {
            decode(
                &self
                    .agents
                    .get(id.as_bytes())?
                    .ok_or(StoreError::NotFound("agent"))?,
            )
        })
    }

    fn get_agent_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Agent> {
        Box::pin(async move {
            let id = self
                .agent_names
                .get(name.as_bytes())?
                .ok_or(StoreError::NotFound("agent"))?;
            self.get_agent(&String::from_utf8_lossy(&id)).await
        })
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
}
