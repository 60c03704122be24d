//! A registered HTTP API call: method, URL template, timeout and its fields.

use serde::{Deserialize, Serialize};

use super::ManagedBy;
use super::template::{JsonTemplate, Placeholder, Template};

use super::field::{Field, ValueType};

/// HTTP methods a webhook may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET (no body).
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Method {
    /// The method as reqwest wants it.
    pub fn as_http(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }

    /// Upper-case method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// How body fields are encoded.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// `application/json`, typed values, dotted names nest.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// Optional retry policy for transient upstream failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts, 1..=4.
    pub max_attempts: u32,
}

fn default_timeout() -> u64 {
    10_000
}

fn is_default_encoding(e: &BodyEncoding) -> bool {
    *e == BodyEncoding::Json
}

/// A webhook definition as submitted by a user (API JSON or a `tools/` file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Human name.
    pub name: String,
    /// What the call does; the default tool description.
    #[serde(default)]
    pub description: String,
    /// HTTP method.
    pub method: Method,
    /// Absolute http(s) URL, with `{path_param}` placeholders.
    pub url: String,
    /// Overall timeout in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Request headers.
    #[serde(default)]
    pub headers: Vec<Field>,
    /// Query string parameters.
    #[serde(default)]
    pub query_params: Vec<Field>,
    /// Path parameters.
    #[serde(default)]
    pub path_params: Vec<Field>,
    /// Body fields.
    #[serde(default)]
    pub body: Vec<Field>,
    /// Body encoding.
    #[serde(default, skip_serializing_if = "is_default_encoding")]
    pub body_encoding: BodyEncoding,
    /// Dotted paths of the JSON response handed to the model (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_fields: Vec<String>,
    /// Retry policy (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// A JSON body whose strings may hold `{{ args.NAME }}`, `{{ context.PATH }}` and
    /// `{{ secret.NAME }}`; replaces body fields (which then only declare argument types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_template: Option<serde_json::Value>,
    /// Set by toolgate on a definition loaded from a config file: the API refuses to edit or
    /// delete it (409 `managed_by_file`); the file is the place to change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<ManagedBy>,
    /// The file that defines it, when `managed_by` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_file: Option<String>,
    /// The OpenAPI operation it was imported from: a re-import updates it in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<ImportMark>,
}

/// Where an imported webhook came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportMark {
    /// The document's `info.title`.
    pub document: String,
    /// The `tool_prefix` of the import (one document may be imported under several prefixes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// The operation's `operationId` (or `METHOD /path` when it has none).
    pub operation_id: String,
}

impl WebhookSpec {
    /// Every field with the list it belongs to, in a stable order.
    pub fn all_fields(&self) -> impl Iterator<Item = (&'static str, usize, &Field)> {
        let lists: [(&'static str, &Vec<Field>); 4] = [
            ("headers", &self.headers),
            ("query_params", &self.query_params),
            ("path_params", &self.path_params),
            ("body", &self.body),
        ];
        lists
            .into_iter()
            .flat_map(|(list, fields)| fields.iter().enumerate().map(move |(i, f)| (list, i, f)))
    }

    /// Every placeholder of static values and the body template, in order; malformed ones
    /// (refused by validation) are skipped.
    fn placeholders(&self) -> Vec<Placeholder> {
        let mut out = Vec::new();
        for (_, _, f) in self.all_fields() {
            if f.value_type == ValueType::Static
                && let Some(serde_json::Value::String(s)) = &f.value
                && let Ok(t) = Template::parse(s)
            {
                out.extend(t.placeholders().cloned());
            }
        }
        if let Some(t) = self
            .body_template
            .as_ref()
            .and_then(|t| JsonTemplate::parse(t).ok())
        {
            out.extend(t.placeholders().into_iter().cloned());
        }
        out
    }

    /// Names of all stored secrets this definition refers to (fields and placeholders).
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .all_fields()
            .filter(|(_, _, f)| f.value_type == ValueType::Secret)
            .filter_map(|(_, _, f)| f.secret.clone())
            .collect();
        names.extend(
            self.placeholders()
                .iter()
                .filter_map(|p| p.secret().map(str::to_string)),
        );
        names.sort();
        names.dedup();
        names
    }

    /// Names of `{{ args.NAME }}` used in the body template, first use first.
    pub fn template_args(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(t) = self
            .body_template
            .as_ref()
            .and_then(|t| JsonTemplate::parse(t).ok())
        {
            for p in t.placeholders() {
                if let Placeholder::Args(name) = p
                    && !out.contains(name)
                {
                    out.push(name.clone());
                }
            }
        }
        out
    }
}

/// A stored webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Webhook {
    /// Opaque id.
    pub id: super::WebhookId,
    /// The definition.
    #[serde(flatten)]
    pub spec: WebhookSpec,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last edit time (RFC 3339).
    pub updated_at: String,
}

stamped!(Webhook, WebhookSpec, WebhookId);
