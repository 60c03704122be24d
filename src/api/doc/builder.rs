//! The small layer that turns handler types into OpenAPI: a schemars generator whose
//! definitions become `components.schemas`, and an operation builder.

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use super::super::types::ErrorEnvelope;

/// The document builder: one schema generator whose definitions become `components.schemas`.
pub(super) struct Doc {
    pub(super) generator: SchemaGenerator,
    pub(super) paths: Map<String, Value>,
}

/// One operation being described.
pub(super) struct Op {
    value: Map<String, Value>,
    path: &'static str,
    method: &'static str,
}

impl Doc {
    pub(super) fn new() -> Doc {
        let mut settings = SchemaSettings::draft2020_12();
        settings.definitions_path = "/components/schemas".into();
        Doc {
            generator: settings.into_generator(),
            paths: Map::new(),
        }
    }

    /// A `$ref` to `T`'s schema (added to the components).
    pub(super) fn schema<T: JsonSchema>(&mut self) -> Value {
        serde_json::to_value(self.generator.subschema_for::<T>()).unwrap_or(json!({}))
    }

    /// Query parameters from the properties of `Q` (a handler's query struct).
    pub(super) fn query<Q: JsonSchema>(&mut self) -> Vec<Value> {
        let reference = self.schema::<Q>();
        let root = match reference.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap_or_default();
                self.generator
                    .definitions()
                    .get(name)
                    .cloned()
                    .unwrap_or(json!({}))
            }
            None => reference,
        };
        let props = root
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        props
            .into_iter()
            .map(|(name, schema)| {
                let description = schema.get("description").cloned();
                let mut p =
                    json!({"name": name, "in": "query", "required": false, "schema": schema});
                if let Some(d) = description {
                    p["description"] = d;
                }
                p
            })
            .collect()
    }

    pub(super) fn op(
        &mut self,
        method: &'static str,
        path: &'static str,
        summary: &str,
        tag: &str,
    ) -> Op {
        let mut value = Map::new();
        value.insert("summary".into(), json!(summary));
        value.insert("tags".into(), json!([tag]));
        value.insert("operationId".into(), json!(operation_id(method, path)));
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            value.insert("parameters".into(), Value::Array(params));
        }
        let envelope = self.schema::<ErrorEnvelope>();
        value.insert(
            "responses".into(),
            json!({"default": {"description": "An error, in the envelope every error uses",
                "content": {"application/json": {"schema": envelope}}}}),
        );
        Op {
            value,
            path,
            method,
        }
    }

    pub(super) fn add(&mut self, op: Op) {
        let item = self
            .paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        item[op.method] = Value::Object(op.value);
    }
}

/// `get /v1/webhooks/{id}` → `get_v1_webhooks_id`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            seg.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_'),
        );
    }
    id
}

impl Op {
    pub(super) fn json_body(mut self, schema: Value) -> Op {
        self.value.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": schema}}}),
        );
        self
    }

    pub(super) fn params(mut self, extra: Vec<Value>) -> Op {
        let list = self.value.entry("parameters").or_insert_with(|| json!([]));
        if let Value::Array(a) = list {
            a.extend(extra);
        }
        self
    }

    pub(super) fn ok(mut self, status: u16, description: &str, schema: Option<Value>) -> Op {
        let mut r = json!({"description": description});
        if let Some(s) = schema {
            r["content"] = json!({"application/json": {"schema": s}});
        }
        self.value["responses"][status.to_string()] = r;
        self
    }

    pub(super) fn content(mut self, status: u16, description: &str, media: Value) -> Op {
        self.value["responses"][status.to_string()] =
            json!({"description": description, "content": media});
        self
    }

    pub(super) fn public(mut self) -> Op {
        self.value.insert("security".into(), json!([]));
        self
    }
}
