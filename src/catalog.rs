//! Linked tools compiled once into their OpenAI definition and argument validator.
//! Held in a snapshot that edits replace atomically; the call path only reads it, lock-free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use serde_json::{Map, Value, json};

use crate::model::{DataType, Field, Tool, ValueType, Webhook};
use crate::store::{Store, StoreError};

/// A dynamic field, as the argument checker needs it.
#[derive(Debug, Clone)]
pub struct DynamicField {
    /// Argument name.
    pub name: String,
    /// Declared type.
    pub data_type: DataType,
    /// Whether it must be supplied.
    pub required: bool,
}

/// A webhook ready to be called: its argument schema compiled.
pub struct CompiledWebhook {
    /// The stored definition.
    pub webhook: Webhook,
    /// JSON Schema of the arguments (`parameters`).
    pub parameters: Value,
    /// The structured-outputs strict variant.
    pub strict_parameters: Value,
    /// Validator of `parameters`, compiled on the first call: most of thousands of stored tools are
    /// never called by one process, and eager validators dominated idle memory and start time.
    validator: OnceLock<Result<jsonschema::Validator, String>>,
    /// Dynamic fields in definition order.
    pub dynamic: Vec<DynamicField>,
}

impl CompiledWebhook {
    /// The argument validator, compiled once.
    pub fn validator(&self) -> Result<&jsonschema::Validator, &str> {
        self.validator
            .get_or_init(|| jsonschema::validator_for(&self.parameters).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// A linked tool ready to be offered and called.
pub struct CompiledTool {
    /// The stored tool.
    pub tool: Tool,
    /// Its webhook.
    pub hook: Arc<CompiledWebhook>,
    /// OpenAI tool definition.
    pub definition: Value,
    /// OpenAI tool definition, strict variant.
    pub strict_definition: Value,
}

fn property(f: &Field, nullable: bool) -> Value {
    let t = f.data_type.schema_type();
    let mut p = Map::new();
    p.insert(
        "type".into(),
        if nullable {
            json!([t, "null"])
        } else {
            json!(t)
        },
    );
    if !f.description.is_empty() {
        p.insert("description".into(), json!(f.description));
    }
    Value::Object(p)
}

/// Compile a webhook's dynamic fields into its argument schema and validator.
pub fn compile_webhook(webhook: Webhook) -> Result<CompiledWebhook, String> {
    let mut props = Map::new();
    let mut strict_props = Map::new();
    let mut required = Vec::new();
    let mut all = Vec::new();
    let mut dynamic = Vec::new();
    for (_, _, f) in webhook.spec.all_fields() {
        if f.value_type != ValueType::Dynamic {
            continue;
        }
        props.insert(f.name.clone(), property(f, false));
        strict_props.insert(f.name.clone(), property(f, !f.required));
        if f.required {
            required.push(json!(f.name));
        }
        all.push(json!(f.name));
        dynamic.push(DynamicField {
            name: f.name.clone(),
            data_type: f.data_type,
            required: f.required,
        });
    }
    for name in webhook.spec.template_args() {
        if props.contains_key(&name) {
            continue;
        }
        props.insert(name.clone(), json!({"type": "string"}));
        strict_props.insert(name.clone(), json!({"type": "string"}));
        required.push(json!(name));
        all.push(json!(name));
        dynamic.push(DynamicField {
            name,
            data_type: DataType::String,
            required: true,
        });
    }
    let parameters = json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
    let strict_parameters = json!({"type": "object", "properties": strict_props, "required": all, "additionalProperties": false});
    Ok(CompiledWebhook {
        webhook,
        parameters,
        strict_parameters,
        validator: OnceLock::new(),
        dynamic,
    })
}

/// Compile a linked tool against its compiled webhook.
pub fn compile_tool(tool: Tool, hook: Arc<CompiledWebhook>) -> CompiledTool {
    let description = tool
        .spec
        .description
        .clone()
        .unwrap_or_else(|| hook.webhook.spec.description.clone());
    let definition = json!({"type": "function", "function": {
        "name": tool.spec.name, "description": description, "parameters": hook.parameters}});
    let strict_definition = json!({"type": "function", "function": {
        "name": tool.spec.name, "description": description, "parameters": hook.strict_parameters, "strict": true}});
    CompiledTool {
        tool,
        hook,
        definition,
        strict_definition,
    }
}

/// One consistent view of everything callable.
#[derive(Default)]
pub struct Snapshot {
    /// Every webhook, by id.
    pub webhooks: HashMap<String, Arc<CompiledWebhook>>,
    /// Every linked tool, by name.
    pub tools: HashMap<String, Arc<CompiledTool>>,
    openai_json: OnceLock<axum::body::Bytes>,
}

impl Snapshot {
    /// `{"tools":[…]}` of every linked tool, sorted by name, serialised once per snapshot so
    /// exporting thousands of tools is a memory copy.
    pub fn openai_json(&self) -> axum::body::Bytes {
        self.openai_json
            .get_or_init(|| {
                let mut names: Vec<&String> = self.tools.keys().collect();
                names.sort();
                let defs: Vec<&Value> = names.iter().map(|n| &self.tools[*n].definition).collect();
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
    edit: Mutex<()>,
    version: tokio::sync::watch::Sender<u64>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            snap: ArcSwap::from_pointee(Snapshot::default()),
            edit: Mutex::new(()),
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
    pub fn load_all(&self, store: &dyn Store) -> Result<(), StoreError> {
        let _guard = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let mut snap = Snapshot::default();
        for w in store.list_webhooks()? {
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
        for t in store.list_tools()? {
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
    pub fn refresh_webhook(&self, store: &dyn Store, id: &str) -> Result<(), StoreError> {
        let _guard = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let cur = self.snap.load();
        let mut webhooks = cur.webhooks.clone();
        let mut tools = cur.tools.clone();
        match store.get_webhook(id) {
            Ok(w) => {
                let hook = Arc::new(compile_webhook(w).map_err(StoreError::Corrupt)?);
                webhooks.insert(id.to_string(), hook.clone());
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
    pub fn refresh_tool(
        &self,
        store: &dyn Store,
        id: &str,
        previous_name: Option<&str>,
    ) -> Result<(), StoreError> {
        let _guard = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let cur = self.snap.load();
        let webhooks = cur.webhooks.clone();
        let mut tools = cur.tools.clone();
        if let Some(prev) = previous_name {
            tools.remove(prev);
        }
        tools.retain(|_, t| t.tool.id != id);
        match store.get_tool(id) {
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
    use crate::model::WebhookSpec;

    fn hook(fields: Value) -> Webhook {
        let mut spec = json!({"name": "Order", "description": "Look up", "method": "GET",
            "url": "https://x.example/o/{order_number}"});
        spec.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let spec: WebhookSpec = serde_json::from_value(spec).unwrap();
        Webhook {
            id: "wh_1".into(),
            spec,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn compiles_dynamic_fields_only() {
        let w = hook(json!({
            "path_params": [{"name": "order_number", "description": "The order", "data_type": "string", "value_type": "dynamic"}],
            "query_params": [{"name": "verbose", "data_type": "boolean", "value_type": "dynamic", "required": false},
                             {"name": "format", "value_type": "static", "value": "json"}],
            "headers": [{"name": "X-User", "value_type": "context", "value": "user.id"}]
        }));
        let c = compile_webhook(w).unwrap();
        assert_eq!(
            c.parameters,
            json!({"type": "object", "properties": {
                "verbose": {"type": "boolean"},
                "order_number": {"type": "string", "description": "The order"}},
              "required": ["order_number"], "additionalProperties": false})
        );
        assert_eq!(
            c.strict_parameters["properties"]["verbose"]["type"],
            json!(["boolean", "null"])
        );
        assert_eq!(
            c.strict_parameters["required"],
            json!(["verbose", "order_number"])
        );
        assert!(jsonschema::meta::is_valid(&c.parameters));
        assert!(jsonschema::meta::is_valid(&c.strict_parameters));
    }
}
