//! Compiling a stored definition into what the call path runs: each field's value source with
//! its template parsed, the URL template, the body template, and the model's argument schema.
//! Done once per edit; a call never scans a string for placeholders again.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value, json};

use crate::model::names::SecretName;
use crate::model::template::{JsonTemplate, Template, UrlSegment, UrlTemplate};
use crate::model::{DataType, Field, QueryStyle, Tool, ValueType, Webhook};

/// A dynamic field, as the argument checker needs it.
#[derive(Debug, Clone)]
pub struct DynamicField {
    /// Argument name.
    pub name: String,
    /// Declared type.
    pub data_type: DataType,
    /// Whether it must be supplied.
    pub required: bool,
    /// Used when a non-required value is absent.
    pub default: Option<Value>,
}

/// Where one field's value comes from, parsed.
#[derive(Debug, Clone)]
pub enum FieldSource {
    /// The model's argument of the field's name.
    Dynamic,
    /// A fixed JSON scalar.
    Static(Value),
    /// A string with `{{ secret.X }}` / `{{ context.X }}` placeholders.
    StaticTemplate(Template),
    /// The whole value of the named secret.
    Secret(SecretName),
    /// A dotted path into the context.
    Context(String),
}

impl FieldSource {
    /// Whether the value comes from a secret or the calling application's context.
    pub fn carries_secret_or_context(&self) -> bool {
        matches!(
            self,
            FieldSource::StaticTemplate(_) | FieldSource::Secret(_) | FieldSource::Context(_)
        )
    }
}

/// One field of a compiled webhook.
#[derive(Debug, Clone)]
pub struct CompiledField {
    /// Header, parameter or (dotted) body name.
    pub name: String,
    /// The argument the model supplies it as (dynamic fields).
    pub argument: String,
    /// How an array goes into a query string.
    pub style: QueryStyle,
    /// Declared type.
    pub data_type: DataType,
    /// Where its value comes from.
    pub source: FieldSource,
    /// A context value to redact like a secret.
    pub sensitive: bool,
    /// For a secret field: the context path naming whose value to use.
    pub subject: Option<String>,
}

/// A webhook ready to be called: its fields, URL and body template parsed, its argument schema
/// compiled.
pub struct CompiledWebhook {
    /// The stored definition.
    pub webhook: Webhook,
    /// The URL with its `{name}` path parameters.
    pub url: UrlTemplate,
    /// Headers, query params, path params and body fields, in definition order.
    pub headers: Vec<CompiledField>,
    /// Query params.
    pub query: Vec<CompiledField>,
    /// Path params.
    pub path: Vec<CompiledField>,
    /// Body fields (only declarations of template arguments when `body_template` is set).
    pub body: Vec<CompiledField>,
    /// The parsed body template.
    pub body_template: Option<JsonTemplate>,
    /// JSON Schema of the arguments (`parameters`) as JSON text. A `Value` tree of even a
    /// two-argument schema is four B-tree nodes of about 640 bytes each: kept for every one of
    /// thousands of webhooks, the trees were the largest part of idle memory. Parsed when needed.
    parameters_json: Box<str>,
    /// `parameters_json` parsed, on the webhook's first call.
    parameters: OnceLock<Value>,
    /// The structured-outputs strict variant, built on first use (see `strict_parameters()`).
    strict_parameters: OnceLock<Value>,
    /// Validator of `parameters`, compiled on the first call: most of thousands of stored tools are
    /// never called by one process, and eager validators dominated idle memory and start time.
    validator: OnceLock<Result<jsonschema::Validator, String>>,
    /// The URL's scheme and authority parsed, and how long their text is, on the first call
    /// (`None` when a parameter stands in them): see `origin()`.
    origin: OnceLock<Option<(Arc<url::Url>, usize)>>,
    /// Dynamic fields in definition order.
    pub dynamic: Vec<DynamicField>,
    /// Every secret the webhook uses, sorted: opened before the fields are filled in.
    pub secret_names: Vec<String>,
}

impl CompiledWebhook {
    /// JSON Schema of the arguments, parsed on first use and kept: for the call path, which
    /// needs it on every call of this webhook.
    pub fn parameters(&self) -> &Value {
        self.parameters.get_or_init(|| self.parameters_copy())
    }

    /// JSON Schema of the arguments, parsed afresh and not kept: for exports of every tool,
    /// which would otherwise keep a tree per webhook for good.
    pub fn parameters_copy(&self) -> Value {
        // The text was serialised from a `Value` by `compile_webhook`: it parses.
        serde_json::from_str(&self.parameters_json).unwrap_or_default()
    }

    /// The structured-outputs strict variant of `parameters`: every property required, the
    /// optional ones nullable, every object closed. Built on first use: only strict exports need
    /// it, and a copy per webhook was a good part of idle memory with thousands of tools.
    pub fn strict_parameters(&self) -> &Value {
        self.strict_parameters.get_or_init(|| {
            // A copy: a strict export of every tool would otherwise keep both trees for each.
            let parameters = self.parameters_copy();
            let mut props = Map::new();
            let mut all = Vec::with_capacity(self.dynamic.len());
            for d in &self.dynamic {
                let mut strict = crate::schema::strict_variant(&parameters["properties"][&d.name]);
                if !d.required {
                    crate::schema::make_nullable(&mut strict);
                }
                props.insert(d.name.clone(), strict);
                all.push(json!(d.name));
            }
            json!({"type": "object", "properties": props, "required": all, "additionalProperties": false})
        })
    }

    /// The URL's scheme and authority, parsed once, with the length of their text: every
    /// rendered URL starts with that text, so the rest can be put after it as text or parsed
    /// against it (`call::target`), and the host (IDNA and IP address checks and all) is not
    /// parsed again on every call. Shared, so a request's URL can hold it without a copy.
    /// `None` when the first literal part of the URL does not hold the whole authority.
    pub fn origin(&self) -> Option<(&Arc<url::Url>, usize)> {
        self.origin
            .get_or_init(|| origin_of(&self.url))
            .as_ref()
            .map(|(u, n)| (u, *n))
    }

    /// The argument validator, compiled once.
    pub fn validator(&self) -> Result<&jsonschema::Validator, &str> {
        self.validator
            .get_or_init(|| {
                // Formats (date, email, uuid…) are enforced, not only shown to the model.
                jsonschema::options()
                    .should_validate_formats(true)
                    .build(self.parameters())
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// The scheme and authority at the start of `url`'s first literal part, parsed, and their length.
fn origin_of(url: &UrlTemplate) -> Option<(Arc<url::Url>, usize)> {
    let first = match url.segments.first()? {
        UrlSegment::Literal(t) => t,
        UrlSegment::Param(_) => return None,
    };
    let after_scheme = first.find("://")? + 3;
    let end = match first[after_scheme..].find(['/', '?', '#', '\\']) {
        Some(i) => after_scheme + i,
        // The authority runs to the end of the literal: whole only if nothing follows it.
        None if url.segments.len() == 1 => first.len(),
        None => return None,
    };
    let origin = url::Url::parse(&first[..end]).ok()?;
    (origin.has_host() && matches!(origin.scheme(), "http" | "https"))
        .then(|| (Arc::new(origin), end))
}

/// A linked tool ready to be offered and called.
pub struct CompiledTool {
    /// The stored tool.
    pub tool: Tool,
    /// Its webhook.
    pub hook: Arc<CompiledWebhook>,
}

impl CompiledTool {
    /// What the model is told the tool does: the tool's description, else its webhook's.
    pub fn description(&self) -> &str {
        self.tool
            .spec
            .description
            .as_deref()
            .unwrap_or(&self.hook.webhook.spec.description)
    }

    /// OpenAI tool definition. Built when asked for (exports are cached per catalog snapshot):
    /// keeping two JSON trees per tool cost more memory than anything else in the catalog.
    pub fn definition(&self) -> Value {
        json!({"type": "function", "function": {
            "name": self.tool.spec.name, "description": self.description(), "parameters": self.hook.parameters_copy()}})
    }

    /// OpenAI tool definition, strict variant.
    pub fn strict_definition(&self) -> Value {
        json!({"type": "function", "function": {
            "name": self.tool.spec.name, "description": self.description(),
            "parameters": self.hook.strict_parameters(), "strict": true}})
    }
}

/// A bound as JSON: whole numbers without a fraction (`100`, not `100.0`).
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// The JSON Schema a dynamic field shows the model (and validates against).
fn property(f: &Field) -> Result<Value, String> {
    let mut p = match (&f.schema, f.data_type.is_scalar()) {
        (Some(s), false) => match crate::schema::resolve_refs(s, s)? {
            Value::Object(m) => m,
            _ => return Err(format!("field '{}': schema is not an object", f.name)),
        },
        _ => Map::new(),
    };
    p.entry("type")
        .or_insert_with(|| json!(f.data_type.schema_type()));
    if !f.description.is_empty() {
        p.entry("description")
            .or_insert_with(|| json!(f.description));
    }
    let rules = [
        ("enum", f.allowed.as_ref().map(|e| json!(e))),
        ("default", f.default.clone()),
        ("minimum", f.minimum.map(number)),
        ("maximum", f.maximum.map(number)),
        ("minLength", f.min_length.map(|n| json!(n))),
        ("maxLength", f.max_length.map(|n| json!(n))),
        ("pattern", f.pattern.as_ref().map(|x| json!(x))),
        ("format", f.format.as_ref().map(|x| json!(x))),
    ];
    for (k, v) in rules {
        if let Some(v) = v {
            p.insert(k.into(), v);
        }
    }
    Ok(Value::Object(p))
}

fn compile_field(f: &Field) -> Result<CompiledField, String> {
    let missing = |what: &str| format!("field '{}' has no {what}", f.name);
    let source = match f.value_type {
        ValueType::Dynamic => FieldSource::Dynamic,
        ValueType::Secret => FieldSource::Secret(
            f.secret
                .as_deref()
                .and_then(|s| SecretName::parse(s).ok())
                .ok_or_else(|| missing("valid secret name"))?,
        ),
        ValueType::Context => FieldSource::Context(
            f.value
                .as_ref()
                .and_then(Value::as_str)
                .ok_or_else(|| missing("context path"))?
                .to_string(),
        ),
        ValueType::Static => match &f.value {
            Some(Value::String(s)) => {
                let t = Template::parse(s)
                    .map_err(|e| format!("field '{}': {}", f.name, e.join("; ")))?;
                if t.has_holes() {
                    FieldSource::StaticTemplate(t)
                } else {
                    FieldSource::Static(Value::String(s.clone()))
                }
            }
            Some(v) => FieldSource::Static(v.clone()),
            None => return Err(missing("value")),
        },
    };
    Ok(CompiledField {
        name: f.name.clone(),
        argument: f.arg_name().to_string(),
        style: f.style,
        data_type: f.data_type,
        source,
        sensitive: f.sensitive,
        subject: f.subject.clone(),
    })
}

fn compile_fields(fields: &[Field]) -> Result<Vec<CompiledField>, String> {
    fields.iter().map(compile_field).collect()
}

/// Compile a webhook: field sources, URL and body templates, argument schema. Fails only for a
/// definition that validation would refuse (stored by an older build, or corrupt).
pub fn compile_webhook(webhook: Webhook) -> Result<CompiledWebhook, String> {
    let mut props = Map::new();
    let mut required = Vec::new();
    let mut dynamic = Vec::new();
    for (_, _, f) in webhook.spec.all_fields() {
        if f.value_type != ValueType::Dynamic {
            continue;
        }
        let name = f.arg_name().to_string();
        let schema = property(f)?;
        props.insert(name.clone(), schema);
        if f.required {
            required.push(json!(name));
        }
        dynamic.push(DynamicField {
            name,
            data_type: f.data_type,
            required: f.required,
            default: f.default.clone(),
        });
    }
    for name in webhook.spec.template_args() {
        if props.contains_key(&name) {
            continue;
        }
        props.insert(name.clone(), json!({"type": "string"}));
        required.push(json!(name));
        dynamic.push(DynamicField {
            name,
            data_type: DataType::String,
            required: true,
            default: None,
        });
    }
    let parameters = json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
    let spec = &webhook.spec;
    let body_template = spec
        .body_template
        .as_ref()
        .map(|t| JsonTemplate::parse(t).map_err(|e| format!("body_template: {}", e.join("; "))))
        .transpose()?;
    Ok(CompiledWebhook {
        url: UrlTemplate::parse(&spec.url),
        headers: compile_fields(&spec.headers)?,
        query: compile_fields(&spec.query_params)?,
        path: compile_fields(&spec.path_params)?,
        body: compile_fields(&spec.body)?,
        body_template,
        secret_names: webhook.spec.secret_names(),
        webhook,
        parameters_json: parameters.to_string().into_boxed_str(),
        parameters: OnceLock::new(),
        strict_parameters: OnceLock::new(),
        validator: OnceLock::new(),
        origin: OnceLock::new(),
        dynamic,
    })
}

/// Compile a linked tool against its compiled webhook.
pub fn compile_tool(tool: Tool, hook: Arc<CompiledWebhook>) -> CompiledTool {
    CompiledTool { tool, hook }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WebhookSpec;
    use crate::model::template::Placeholder;

    fn hook(fields: Value) -> Webhook {
        let mut spec = json!({"name": "Order", "description": "Look up", "method": "GET",
            "url": "https://x.example/o/{order_number}"});
        spec.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let spec: WebhookSpec = serde_json::from_value(spec).unwrap();
        Webhook {
            id: crate::model::WebhookId::new(),
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
        // An export reads the schema without keeping a tree; only a call keeps one.
        let tool = Tool {
            id: crate::model::ToolId::new(),
            spec: serde_json::from_value(json!({"name": "order", "webhook_id": c.webhook.id}))
                .unwrap(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        let t = compile_tool(tool, Arc::new(c));
        assert_eq!(t.definition()["function"]["parameters"]["type"], "object");
        assert!(t.hook.parameters.get().is_none(), "the export kept a tree");
        let c = Arc::into_inner(t.hook).unwrap();
        assert_eq!(
            *c.parameters(),
            json!({"type": "object", "properties": {
                "verbose": {"type": "boolean"},
                "order_number": {"type": "string", "description": "The order"}},
              "required": ["order_number"], "additionalProperties": false})
        );
        assert_eq!(
            c.strict_parameters()["properties"]["verbose"]["type"],
            json!(["boolean", "null"])
        );
        assert_eq!(
            c.strict_parameters()["required"],
            json!(["verbose", "order_number"])
        );
        assert!(jsonschema::meta::is_valid(c.parameters()));
        assert_eq!(&c.parameters_copy(), c.parameters());
        assert!(jsonschema::meta::is_valid(c.strict_parameters()));
    }

    #[test]
    fn field_sources_are_parsed_once() {
        let w = hook(json!({
            "path_params": [{"name": "order_number", "value_type": "dynamic"}],
            "headers": [{"name": "Authorization", "value_type": "static", "value": "Bearer {{ secret.tok }}"},
                        {"name": "X-Plain", "value_type": "static", "value": "{not a placeholder}"},
                        {"name": "X-Key", "value_type": "secret", "secret": "k"},
                        {"name": "X-User", "value_type": "context", "value": "user.id"}]
        }));
        let c = compile_webhook(w).unwrap();
        assert_eq!(c.url.params().collect::<Vec<_>>(), ["order_number"]);
        assert!(matches!(c.path[0].source, FieldSource::Dynamic));
        match &c.headers[0].source {
            FieldSource::StaticTemplate(t) => assert_eq!(
                t.placeholders().collect::<Vec<_>>(),
                [&Placeholder::Secret(SecretName::parse("tok").unwrap())]
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&c.headers[1].source, FieldSource::Static(Value::String(s)) if s == "{not a placeholder}")
        );
        assert!(matches!(&c.headers[2].source, FieldSource::Secret(s) if *s == "k"));
        assert!(matches!(&c.headers[3].source, FieldSource::Context(p) if p == "user.id"));
    }
}
