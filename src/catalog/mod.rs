//! Linked tools compiled once into their OpenAI definition and argument validator.
//! Held in a snapshot that edits replace atomically; the call path only reads it, lock-free.

mod compile;

// foldhash: these maps are looked up on every call, and SipHash cost more than the lookups.
use foldhash::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use serde_json::{Value, json};

pub use compile::{
    CompiledField, CompiledTool, CompiledWebhook, DynamicField, FieldSource, compile_tool,
    compile_webhook,
};

use crate::model::{AgentSpec, ToolName, WebhookId};
use crate::store::{Store, StoreError};

/// One consistent view of everything callable.
#[derive(Default)]
pub struct Snapshot {
    /// Every webhook, by id.
    pub webhooks: HashMap<WebhookId, Arc<CompiledWebhook>>,
    /// Every linked tool, by name.
    pub tools: HashMap<ToolName, Arc<CompiledTool>>,
    openai_json: OnceLock<axum::body::Bytes>,
    webhook_text: OnceLock<WebhookText>,
}

/// Every webhook's name, URL and description in one string (fields and webhooks separated by
/// NUL, which no query can match across), with where each webhook's part starts: a search is
/// then one SIMD scan of contiguous memory instead of 30,000 small searches behind as many
/// pointers (5 ms at 10,000 webhooks, most of it waiting on memory).
struct WebhookText {
    text: String,
    /// (start offset, webhook), in offset order.
    starts: Vec<(usize, Arc<CompiledWebhook>)>,
}

impl Snapshot {
    /// The tools a caller sees: every linked tool sorted by name, or an agent's in the agent's
    /// order (names that are not linked tools are left out). The one place this is decided, for
    /// the OpenAI export, MCP, agents and `/v1/chat/completions`.
    pub fn visible_tools(&self, agent: Option<&AgentSpec>) -> Vec<Arc<CompiledTool>> {
        match agent {
            Some(a) => a
                .tools
                .iter()
                .filter_map(|n| self.tools.get(n).cloned())
                .collect(),
            None => {
                let mut all: Vec<Arc<CompiledTool>> = self.tools.values().cloned().collect();
                all.sort_by(|a, b| a.tool.spec.name.cmp(&b.tool.spec.name));
                all
            }
        }
    }

    /// [`Snapshot::visible_tools`] less the tools `caller` may not use.
    pub fn tools_for(
        &self,
        agent: Option<&AgentSpec>,
        caller: Option<&crate::access::Caller>,
    ) -> Vec<Arc<CompiledTool>> {
        let mut tools = self.visible_tools(agent);
        if let Some(c) = caller {
            tools.retain(|t| c.may_use(&t.tool.spec));
        }
        tools
    }

    /// Whether `caller` may use every linked tool (so the shared export serves it).
    pub fn all_visible_to(&self, caller: &crate::access::Caller) -> bool {
        self.tools.values().all(|t| caller.may_use(&t.tool.spec))
    }

    /// Webhooks whose name, URL or description `m` matches.
    pub fn search_webhooks(&self, m: &crate::search::Matcher) -> Vec<Arc<CompiledWebhook>> {
        fn fields(c: &CompiledWebhook) -> [&str; 3] {
            let s = &c.webhook.spec;
            [s.name.as_str(), s.url.as_str(), s.description.as_str()]
        }
        let Some(searcher) = m.ascii() else {
            return self
                .webhooks
                .values()
                .filter(|c| m.matches(&fields(c)))
                .cloned()
                .collect();
        };
        let index = self.webhook_text.get_or_init(|| {
            let mut text = String::new();
            let mut starts = Vec::with_capacity(self.webhooks.len());
            for c in self.webhooks.values() {
                starts.push((text.len(), c.clone()));
                for f in fields(c) {
                    text.push_str(f);
                    text.push('\0');
                }
            }
            WebhookText { text, starts }
        });
        let mut found: Vec<Arc<CompiledWebhook>> = Vec::new();
        let mut last = None;
        for hit in searcher.find_iter(&index.text) {
            let owner = index
                .starts
                .partition_point(|(start, _)| *start <= hit.start())
                - 1;
            if last != Some(owner) {
                found.push(index.starts[owner].1.clone());
                last = Some(owner);
            }
        }
        found
    }

    /// `{"tools":[…]}` of every linked tool, sorted by name, serialised once per snapshot so
    /// exporting thousands of tools is a memory copy.
    pub fn openai_json(&self) -> axum::body::Bytes {
        self.openai_json
            .get_or_init(|| {
                let mut names: Vec<&ToolName> = self.tools.keys().collect();
                names.sort();
                let defs: Vec<Value> = names
                    .iter()
                    .map(|n| self.tools[n.as_str()].definition())
                    .collect();
                // Serialising plain JSON values cannot fail.
                serde_json::to_vec(&json!({ "tools": defs }))
                    .unwrap_or_default()
                    .into()
            })
            .clone()
    }
}

/// The live catalog.
pub struct Catalog {
    snap: ArcSwap<Snapshot>,
    /// Serialises rebuilds, so a slow full reload cannot overwrite a newer single refresh.
    edit: tokio::sync::Mutex<()>,
    version: tokio::sync::watch::Sender<u64>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            snap: ArcSwap::from_pointee(Snapshot::default()),
            edit: tokio::sync::Mutex::new(()),
            version: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Catalog {
    /// Watch for changes of what is offered (tools, webhooks, agents).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Tell watchers that what is offered changed.
    pub fn notify_changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn publish(&self, snap: Snapshot) {
        self.snap.store(Arc::new(snap));
        self.notify_changed();
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.load_full()
    }

    /// Rebuild everything from the store (start-up).
    pub async fn load_all(&self, store: &dyn Store) -> Result<(), StoreError> {
        let _guard = self.edit.lock().await;
        let mut snap = Snapshot::default();
        for w in store.list_webhooks().await? {
            let id = w.id.clone();
            match compile_webhook(w) {
                Ok(c) => {
                    snap.webhooks.insert(id, Arc::new(c));
                }
                Err(e) => {
                    tracing::error!(webhook_id = %id, error = %e, "webhook does not compile; skipped")
                }
            }
        }
        for t in store.list_tools().await? {
            if let Some(hook) = t
                .spec
                .webhook_id
                .as_ref()
                .and_then(|w| snap.webhooks.get(w))
                .cloned()
            {
                snap.tools
                    .insert(t.spec.name.clone(), Arc::new(compile_tool(t, hook)));
            }
        }
        self.publish(snap);
        Ok(())
    }

    /// Re-read one webhook (and the tools linked to it) after an edit or delete.
    pub async fn refresh_webhook(&self, store: &dyn Store, id: &str) -> Result<(), StoreError> {
        let _guard = self.edit.lock().await;
        let cur = self.snap.load_full();
        let mut webhooks = cur.webhooks.clone();
        let mut tools = cur.tools.clone();
        match store.get_webhook(id).await {
            Ok(w) => {
                let hook = Arc::new(compile_webhook(w).map_err(StoreError::Corrupt)?);
                webhooks.insert(hook.webhook.id.clone(), hook.clone());
                for t in tools.values_mut() {
                    if t.tool.spec.webhook_id.as_deref() == Some(id) {
                        *t = Arc::new(compile_tool(t.tool.clone(), hook.clone()));
                    }
                }
            }
            Err(StoreError::NotFound(_)) => {
                webhooks.remove(id);
                tools.retain(|_, t| t.tool.spec.webhook_id.as_deref() != Some(id));
            }
            Err(e) => return Err(e),
        }
        self.publish(Snapshot {
            webhooks,
            tools,
            ..Default::default()
        });
        Ok(())
    }

    /// Re-read one tool after an edit, unlink or delete (`previous_name` if it was renamed or deleted).
    pub async fn refresh_tool(
        &self,
        store: &dyn Store,
        id: &str,
        previous_name: Option<&str>,
    ) -> Result<(), StoreError> {
        let _guard = self.edit.lock().await;
        let cur = self.snap.load_full();
        let webhooks = cur.webhooks.clone();
        let mut tools = cur.tools.clone();
        if let Some(prev) = previous_name {
            tools.remove(prev);
        }
        tools.retain(|_, t| t.tool.id != id);
        match store.get_tool(id).await {
            Ok(t) => {
                if let Some(hook) = t
                    .spec
                    .webhook_id
                    .as_ref()
                    .and_then(|w| webhooks.get(w))
                    .cloned()
                {
                    tools.insert(t.spec.name.clone(), Arc::new(compile_tool(t, hook)));
                }
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.publish(Snapshot {
            webhooks,
            tools,
            ..Default::default()
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Webhook, WebhookSpec};
    use serde_json::json;

    fn compiled(host: &str, name: &str, description: &str) -> Arc<CompiledWebhook> {
        let spec: WebhookSpec =
            serde_json::from_value(json!({"name": name, "description": description,
            "method": "GET", "url": format!("https://{host}.example/x")}))
            .expect("spec");
        let w = Webhook {
            id: WebhookId::new(),
            spec,
            created_at: String::new(),
            updated_at: String::new(),
        };
        Arc::new(compile::compile_webhook(w).expect("compiles"))
    }

    #[test]
    fn webhook_search_matches_any_field_once_and_never_across_fields() {
        let mut snap = Snapshot::default();
        for (host, name, description) in [
            ("a", "Orders", "Look up an order in system 42"),
            ("b", "System 42 orders", "system 42, twice in one webhook"),
            ("c", "Users", "Look up a user in system 4"),
            ("d", "Café", "Réservation"),
        ] {
            let hook = compiled(host, name, description);
            snap.webhooks.insert(hook.webhook.id.clone(), hook);
        }
        // The hosts of the matching webhooks, sorted.
        let hosts = |q: &str| {
            let mut v: Vec<String> = snap
                .search_webhooks(&crate::search::Matcher::new(&Some(q.to_string())))
                .iter()
                .map(|c| c.webhook.spec.url[8..9].to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(hosts("SYSTEM 42"), ["a", "b"]);
        assert_eq!(hosts("c.example"), ["c"], "the URL is searched");
        // "Users" + the URL after it must not match as one string.
        assert!(hosts("usershttps").is_empty());
        assert_eq!(hosts("réserv"), ["d"], "a non-ASCII query");
        assert_eq!(hosts("RÉSERV"), ["d"]);
        assert!(hosts("nothing like it").is_empty());
    }
}
