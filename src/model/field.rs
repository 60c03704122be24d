//! One value of a webhook request: a header, query param, path param or body field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The JSON type a field's value has on the wire and in the model's schema.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// Any text.
    #[default]
    String,
    /// A finite JSON number.
    Number,
    /// A whole JSON number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A JSON array; `schema` holds its JSON Schema (with `items`).
    Array,
    /// A JSON object; `schema` holds its JSON Schema (with `properties`).
    Object,
}

impl DataType {
    /// The JSON Schema `type` keyword for this data type.
    pub fn schema_type(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Number => "number",
            DataType::Integer => "integer",
            DataType::Boolean => "boolean",
            DataType::Array => "array",
            DataType::Object => "object",
        }
    }

    /// Whether values of this type are JSON scalars.
    pub fn is_scalar(self) -> bool {
        !matches!(self, DataType::Array | DataType::Object)
    }
}

/// How an array goes into a query string.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum QueryStyle {
    /// The key repeated: `tags=a&tags=b` (OpenAPI's `form`, `explode: true`).
    #[default]
    Repeat,
    /// One key, values joined by commas: `tags=a,b`.
    Comma,
}

fn is_default_style(s: &QueryStyle) -> bool {
    *s == QueryStyle::Repeat
}

/// Where a field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// Supplied by the model as an argument.
    Dynamic,
    /// A fixed value, possibly with `{{ secret.X }}` / `{{ context.X }}` placeholders.
    Static,
    /// The whole value of a stored secret.
    Secret,
    /// A dotted path into the per-call context supplied by the calling application.
    Context,
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_true() -> bool {
    true
}

/// A field definition exactly as the API accepts and returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Header, parameter or (possibly dotted) body field name; for dynamic fields also the argument name.
    pub name: String,
    /// Shown to the model for dynamic fields.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Declared JSON type.
    #[serde(default)]
    pub data_type: DataType,
    /// Where the value comes from.
    pub value_type: ValueType,
    /// Whether a dynamic value must be supplied (default true).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub required: bool,
    /// Static value, or the context path for `context` fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Secret name for `secret` fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The argument name the model uses, when `name` (the wire name: a header such as
    /// `X-Request-Id`, a parameter such as `filter[status]`) is not an identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argument: Option<String>,
    /// Allowed values, of the field's type.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// Used when a non-required dynamic value is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Smallest allowed number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Largest allowed number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Shortest allowed string, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    /// Longest allowed string, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// A regular expression strings must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// A JSON Schema `format` (`date`, `date-time`, `email`, `uuid`, …), enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The JSON Schema of an `array` or `object` value (local `$ref`s are resolved on save).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// How an array query parameter is sent.
    #[serde(default, skip_serializing_if = "is_default_style")]
    pub style: QueryStyle,
    /// For a secret field: the context path (`user.id`) naming whose value of the secret to use
    /// (`PUT /v1/secrets/{id}/values/{subject}`). A subject without a value fails the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A context value that is a credential (the end user's own token, say): redacted like a
    /// secret in history, events, logs and tool results. Context fields only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

impl Field {
    /// The argument name the model sees (dynamic fields): `argument`, else `name`.
    pub fn arg_name(&self) -> &str {
        self.argument.as_deref().unwrap_or(&self.name)
    }
}
