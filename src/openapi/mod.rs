//! OpenAPI import: a Swagger 2.0 or OpenAPI 3.0/3.1 document becomes one webhook and one tool
//! per operation. `plan` is pure (the CLI writes its result as `tools/*.toml`); `apply` puts a
//! plan into the store through the definitions service, updating earlier imports of the same
//! document in place.

pub mod apply;
mod body;
pub mod document;
pub mod operation;
pub mod to_files;

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::validate::{FieldError, validate_webhook};
use crate::model::webhook::ImportMark;
use crate::model::{Field, ToolName, WebhookSpec};
use operation::Op;

/// Why a document cannot be imported at all.
#[derive(Debug, thiserror::Error)]
#[error("the OpenAPI document cannot be imported")]
pub struct ImportError {
    /// Each problem, with where it is (`spec` with a line, or a path in the document).
    pub details: Vec<FieldError>,
}

impl ImportError {
    /// One problem at `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ImportError {
            details: vec![FieldError::new(field, message)],
        }
    }
}

/// The secret that fills in a security scheme.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemeSecret {
    /// A stored secret's name.
    pub secret: String,
}

/// How to import.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportOptions {
    /// The API's base URL; the document's first server when absent.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Put before every tool name (`crm_` → `crm_list_contacts`).
    #[serde(default)]
    pub tool_prefix: Option<String>,
    /// Only these operations (by operationId) or tags.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Security scheme name → the secret that fills it in.
    #[serde(default)]
    pub auth: BTreeMap<String, SchemeSecret>,
}

/// One operation to create or update.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The tool name.
    pub name: ToolName,
    /// The operationId (or `METHOD /path`).
    pub operation_id: String,
    /// HTTP method, upper case.
    pub method: String,
    /// The path as in the document.
    pub path: String,
    /// The tool's description.
    pub description: String,
    /// The webhook.
    pub webhook: WebhookSpec,
}

/// An operation left out, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Skipped {
    /// The operationId (or `METHOD /path`).
    pub operation_id: String,
    /// HTTP method, upper case.
    pub method: String,
    /// The path as in the document.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What a document becomes.
#[derive(Debug, Default)]
pub struct Plan {
    /// `info.title`, which identifies the document's imports.
    pub document: String,
    /// The prefix of this import.
    pub prefix: String,
    /// Operations to create or update.
    pub tools: Vec<Planned>,
    /// Every operationId of the document (included or not): earlier imports of others were removed.
    pub all_operations: HashSet<String>,
    /// Operations left out.
    pub skipped: Vec<Skipped>,
    /// Security schemes that could not be filled in, and similar notes.
    pub warnings: Vec<String>,
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Security requirements → header or query fields with secrets.
pub struct Security {
    schemes: serde_json::Map<String, Value>,
    global: Option<Value>,
    auth: BTreeMap<String, SchemeSecret>,
}

impl Security {
    /// Fill in the first requirement alternative of `o` whose schemes are all given a secret.
    pub fn apply(&self, o: &Op<'_>, spec: &mut WebhookSpec, warnings: &mut Vec<String>) {
        let Some(reqs) = o.op.get("security").or(self.global.as_ref()) else {
            return;
        };
        let alternatives: Vec<&serde_json::Map<String, Value>> = reqs
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default();
        if alternatives.is_empty() || alternatives.iter().any(|a| a.is_empty()) {
            return; // no security, or anonymous access allowed
        }
        for alt in &alternatives {
            let fields: Option<Vec<(bool, Field)>> = alt
                .keys()
                .map(|name| self.field(name))
                .collect::<Option<Vec<_>>>();
            if let Some(fields) = fields {
                for (in_query, f) in fields {
                    if in_query {
                        spec.query_params.push(f);
                    } else {
                        spec.headers.push(f);
                    }
                }
                return;
            }
        }
        let names: Vec<String> = alternatives
            .iter()
            .map(|a| a.keys().cloned().collect::<Vec<_>>().join(" + "))
            .collect();
        warnings.push(format!(
            "{}: needs security ({}) that no secret in 'auth' fills in; it is imported without credentials",
            o.id(),
            names.join(" or ")
        ));
    }

    /// The field for one scheme, when `auth` names its secret and toolgate can send it.
    fn field(&self, name: &str) -> Option<(bool, Field)> {
        let secret = &self.auth.get(name)?.secret;
        let s = self.schemes.get(name)?;
        let kind = s.get("type").and_then(Value::as_str)?;
        let f = |v: Value| serde_json::from_value::<Field>(v).ok();
        match kind {
            "apiKey" => {
                let header = s.get("name").and_then(Value::as_str)?;
                match s.get("in").and_then(Value::as_str)? {
                    "header" => {
                        f(json!({"name": header, "value_type": "secret", "secret": secret}))
                            .map(|x| (false, x))
                    }
                    "query" => f(json!({"name": header, "value_type": "secret", "secret": secret}))
                        .map(|x| (true, x)),
                    _ => None,
                }
            }
            "http" | "basic" => {
                let scheme = s
                    .get("scheme")
                    .and_then(Value::as_str)
                    .unwrap_or(if kind == "basic" { "basic" } else { "" })
                    .to_ascii_lowercase();
                let prefix = match scheme.as_str() {
                    "bearer" => "Bearer",
                    "basic" => "Basic",
                    _ => return None,
                };
                f(json!({"name": "Authorization", "value_type": "static",
                    "value": format!("{prefix} {{{{ secret.{secret} }}}}")}))
                .map(|x| (false, x))
            }
            _ => None,
        }
    }

    /// Schemes `auth` names that the document lacks or toolgate cannot fill (oauth2, …).
    fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.auth.keys() {
            match self.schemes.get(name) {
                None => out.push(format!(
                    "auth names '{name}', which the document does not define"
                )),
                Some(s) => {
                    let kind = s.get("type").and_then(Value::as_str).unwrap_or("?");
                    let ok = match kind {
                        "apiKey" => matches!(
                            s.get("in").and_then(Value::as_str),
                            Some("header" | "query")
                        ),
                        "http" => matches!(
                            s.get("scheme")
                                .and_then(Value::as_str)
                                .map(str::to_ascii_lowercase)
                                .as_deref(),
                            Some("bearer" | "basic")
                        ),
                        "basic" => true,
                        _ => false,
                    };
                    if !ok {
                        out.push(format!(
                            "security scheme '{name}' ({kind}) is not supported: apiKey in a header or query, and http bearer or basic are; add its header by hand"
                        ));
                    }
                }
            }
        }
        for (name, s) in &self.schemes {
            if !self.auth.contains_key(name) {
                let kind = s.get("type").and_then(Value::as_str).unwrap_or("?");
                out.push(format!(
                    "security scheme '{name}' ({kind}) is not filled in: pass auth: {{\"{name}\": {{\"secret\": \"<secret name>\"}}}}"
                ));
            }
        }
        out
    }
}

/// Turn a document into a plan: one webhook per operation that toolgate can call faithfully.
pub fn plan(spec: &Value, opts: &ImportOptions) -> Result<Plan, ImportError> {
    let doc = document::load(spec)?;
    let prefix = opts.tool_prefix.clone().unwrap_or_default();
    if !prefix.is_empty() && !crate::model::names::is_tool_name(&prefix) {
        return Err(ImportError::invalid(
            "tool_prefix",
            "a tool prefix is made of A-Z, a-z, 0-9, _ and -",
        ));
    }
    // Every operation needs an absolute base URL: say so once, not once per operation.
    doc.server_url(opts.base_url.as_deref(), &json!({}))?;
    let security = Security {
        schemes: doc.security_schemes(),
        global: doc.root.get("security").cloned(),
        auth: opts.auth.clone(),
    };
    let mut plan = Plan {
        document: doc.title(),
        prefix: prefix.clone(),
        warnings: security.unsupported(),
        ..Plan::default()
    };
    let mut used: HashSet<String> = HashSet::new();
    let paths = doc
        .root
        .get("paths")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (path, item) in &paths {
        let Ok(item) = doc.deref(item) else { continue };
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let o = Op {
                method,
                path,
                op,
                item,
            };
            let id = o.id();
            plan.all_operations.insert(id.clone());
            if let Some(include) = &opts.include
                && !include
                    .iter()
                    .any(|x| *x == id || o.tags().contains(&x.as_str()))
            {
                continue;
            }
            let skip = |reason: String| Skipped {
                operation_id: id.clone(),
                method: method.to_uppercase(),
                path: path.clone(),
                reason,
            };
            let mut webhook =
                match operation::convert(&doc, &o, opts, &security, &mut plan.warnings) {
                    Ok(w) => w,
                    Err(reason) => {
                        plan.skipped.push(skip(reason));
                        continue;
                    }
                };
            let problems = validate_webhook(&webhook, &|_| true);
            if !problems.is_empty() {
                let why: Vec<String> = problems
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                plan.skipped
                    .push(skip(format!("not a valid webhook: {}", why.join("; "))));
                continue;
            }
            webhook.openapi = Some(ImportMark {
                document: plan.document.clone(),
                prefix: prefix.clone(),
                operation_id: id.clone(),
            });
            let Ok(name) = ToolName::parse(unique_name(&prefix, &id, &mut used)) else {
                plan.skipped.push(skip(format!(
                    "no valid tool name can be made from its operationId ({})",
                    ToolName::RULE
                )));
                continue;
            };
            plan.tools.push(Planned {
                name,
                operation_id: id,
                method: method.to_uppercase(),
                path: path.clone(),
                description: operation::describe(op, 1024),
                webhook,
            });
        }
    }
    Ok(plan)
}

/// `prefix + snake_case(operationId)`, at most 64 characters, unique within the import.
fn unique_name(prefix: &str, id: &str, used: &mut HashSet<String>) -> String {
    let mut base = format!("{prefix}{}", operation::snake_case(id));
    if base.is_empty() {
        base = "operation".into();
    }
    base.truncate(64);
    let mut name = base.clone();
    let mut n = 2;
    while used.contains(&name) {
        let suffix = format!("_{n}");
        let mut b = base.clone();
        b.truncate(64 - suffix.len());
        name = format!("{b}{suffix}");
        n += 1;
    }
    used.insert(name.clone());
    name
}
