//! Definition checks: every problem in a webhook or tool, each with its field path, at once.
//! Runs at the edge (API and `tools/` files) so the call path can trust what it is given.

use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

use super::agent::AgentSpec;
use super::event::{EVENT_TYPES, SubscriptionAuth, SubscriptionSpec};
use super::field::{DataType, Field, ValueType};
use super::template::{Placeholder, Template, UrlTemplate};
use super::tool::ToolSpec;
use super::webhook::{Method, WebhookSpec};

/// One problem with a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the offending field, e.g. `path_params[0].name`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    /// A problem at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub use super::names::{
    check_display_name, is_dotted_path, is_identifier, is_tool_name, url_credentials_error,
};

fn static_matches(data_type: DataType, v: &Value) -> bool {
    match (data_type, v) {
        (_, Value::String(s)) if s.contains("{{") => true,
        (DataType::String, Value::String(_)) => true,
        (DataType::Number, Value::Number(_)) => true,
        (DataType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (DataType::Boolean, Value::Bool(_)) => true,
        _ => false,
    }
}

/// Check one field; `list` is its list name, used for paths and list-specific rules.
fn check_field(
    list: &str,
    i: usize,
    f: &Field,
    method: Method,
    secret_exists: &dyn Fn(&str) -> bool,
    errs: &mut Vec<FieldError>,
) {
    let at = |k: &str| format!("{list}[{i}].{k}");
    if f.name.is_empty() {
        errs.push(FieldError::new(at("name"), "name must not be empty"));
    } else if f.value_type == ValueType::Dynamic {
        let ok = if list == "body" {
            f.name.split('.').all(is_identifier)
        } else {
            is_identifier(&f.name)
        };
        if !ok {
            errs.push(FieldError::new(
                at("name"),
                "a dynamic field name must match ^[A-Za-z_][A-Za-z0-9_]{0,63}$ (body names may be dotted)",
            ));
        }
    } else if list == "body" && f.name.split('.').any(str::is_empty) {
        errs.push(FieldError::new(
            at("name"),
            "dotted body names need non-empty segments",
        ));
    }
    if list == "headers" && reqwest::header::HeaderName::from_bytes(f.name.as_bytes()).is_err() {
        errs.push(FieldError::new(at("name"), "not a valid HTTP header name"));
    }
    if list == "body" && method == Method::Get {
        errs.push(FieldError::new(
            format!("body[{i}]"),
            "a GET webhook cannot have a body",
        ));
    }
    match f.value_type {
        ValueType::Dynamic => {
            if f.value.is_some() {
                errs.push(FieldError::new(
                    at("value"),
                    "a dynamic field takes its value from the model; remove 'value'",
                ));
            }
            if list == "path_params" && !f.required {
                errs.push(FieldError::new(
                    at("required"),
                    "a dynamic path param must be required",
                ));
            }
            if f.description.len() > 1024 {
                errs.push(FieldError::new(
                    at("description"),
                    "description is longer than 1024 characters",
                ));
            }
        }
        ValueType::Static => match &f.value {
            None | Some(Value::Null) => {
                errs.push(FieldError::new(at("value"), "a static field needs a value"))
            }
            Some(Value::Array(_) | Value::Object(_)) => errs.push(FieldError::new(
                at("value"),
                "a static value must be a JSON scalar",
            )),
            Some(v) => {
                if !static_matches(f.data_type, v) {
                    errs.push(FieldError::new(
                        at("value"),
                        format!(
                            "value does not match data_type '{}'",
                            f.data_type.schema_type()
                        ),
                    ));
                }
                if let Value::String(s) = v {
                    // Placeholders hold no line breaks, so the literal text decides here; a
                    // secret or context value with one is still refused when the call renders.
                    if list == "headers" && reqwest::header::HeaderValue::from_str(s).is_err() {
                        errs.push(FieldError::new(
                            at("value"),
                            "a header value cannot contain line breaks or other control characters",
                        ));
                    }
                    match Template::parse(s) {
                        Err(msgs) => {
                            errs.extend(msgs.into_iter().map(|m| FieldError::new(at("value"), m)))
                        }
                        Ok(t) => {
                            for p in t.placeholders() {
                                match p {
                                    Placeholder::Secret(name) if !secret_exists(name) => errs
                                        .push(FieldError::new(
                                            at("value"),
                                            format!("unknown secret '{name}'"),
                                        )),
                                    Placeholder::Args(_) => errs.push(FieldError::new(
                                        at("value"),
                                        "{{ args.NAME }} placeholders belong in body_template; use a dynamic field here",
                                    )),
                                    _ => {}
                                }
                            }
                        }
                    }
                }
            }
        },
        ValueType::Secret => match &f.secret {
            None => errs.push(FieldError::new(
                at("secret"),
                "a secret field needs 'secret', the secret's name",
            )),
            Some(name) if !is_identifier(name) => errs.push(FieldError::new(
                at("secret"),
                "secret names match ^[A-Za-z_][A-Za-z0-9_]{0,63}$",
            )),
            Some(name) if !secret_exists(name) => errs.push(FieldError::new(
                at("secret"),
                format!("unknown secret '{name}'"),
            )),
            Some(_) => {}
        },
        ValueType::Context => match &f.value {
            Some(Value::String(p)) if is_dotted_path(p) => {}
            _ => errs.push(FieldError::new(
                at("value"),
                "a context field needs 'value', a dotted path such as \"user.id\"",
            )),
        },
    }
    if f.value_type != ValueType::Secret && f.secret.is_some() {
        errs.push(FieldError::new(
            at("secret"),
            "'secret' is only used with value_type \"secret\"",
        ));
    }
}

/// Every problem with a webhook definition. `secret_exists` answers whether a secret name is stored.
pub fn validate_webhook(
    spec: &WebhookSpec,
    secret_exists: &dyn Fn(&str) -> bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(check_display_name("name", &spec.name));
    errs.extend(check_unmanaged(spec.managed_by, &spec.managed_file));
    if spec.description.len() > 4096 {
        errs.push(FieldError::new(
            "description",
            "description is longer than 4096 characters",
        ));
    }
    if !(1..=120_000).contains(&spec.timeout_ms) {
        errs.push(FieldError::new(
            "timeout_ms",
            "timeout_ms must be between 1 and 120000",
        ));
    }
    if let Some(r) = spec.retry
        && !(1..=4).contains(&r.max_attempts)
    {
        errs.push(FieldError::new(
            "retry.max_attempts",
            "max_attempts must be between 1 and 4",
        ));
    }
    for (i, p) in spec.response_fields.iter().enumerate() {
        if !is_dotted_path(p) {
            errs.push(FieldError::new(
                format!("response_fields[{i}]"),
                "a response field is a dotted path such as \"order.status\"",
            ));
        }
    }
    check_url(spec, &mut errs);
    let mut dynamic_names: HashMap<&str, String> = HashMap::new();
    for (list, i, f) in spec.all_fields() {
        check_field(list, i, f, spec.method, secret_exists, &mut errs);
        if f.value_type == ValueType::Dynamic && !f.name.is_empty() {
            if let Some(first) = dynamic_names.get(f.name.as_str()) {
                errs.push(FieldError::new(
                    format!("{list}[{i}].name"),
                    format!("dynamic name '{}' is already used by {first}", f.name),
                ));
            } else {
                dynamic_names.insert(&f.name, format!("{list}[{i}]"));
            }
        }
    }
    check_body_paths(spec, &mut errs);
    check_template(spec, secret_exists, &mut errs);
    errs
}

fn check_template(
    spec: &WebhookSpec,
    secret_exists: &dyn Fn(&str) -> bool,
    errs: &mut Vec<FieldError>,
) {
    let Some(t) = &spec.body_template else { return };
    if !matches!(t, Value::Object(_) | Value::Array(_)) {
        errs.push(FieldError::new(
            "body_template",
            "body_template must be a JSON object or array",
        ));
        return;
    }
    if spec.method == Method::Get {
        errs.push(FieldError::new(
            "body_template",
            "a GET webhook cannot have a body",
        ));
    }
    if spec.body_encoding != super::webhook::BodyEncoding::Json {
        errs.push(FieldError::new(
            "body_encoding",
            "body_template is sent as JSON",
        ));
    }
    for (i, f) in spec.body.iter().enumerate() {
        if f.value_type != ValueType::Dynamic {
            errs.push(FieldError::new(
                format!("body[{i}].value_type"),
                "with body_template, body entries only declare template arguments (value_type \"dynamic\")",
            ));
        }
    }
    // Each string on its own, so one malformed placeholder does not hide an unknown secret.
    fn walk(v: &Value, secret_exists: &dyn Fn(&str) -> bool, errs: &mut Vec<FieldError>) {
        match v {
            Value::String(s) => match Template::parse(s) {
                Err(msgs) => errs.extend(
                    msgs.into_iter()
                        .map(|m| FieldError::new("body_template", m)),
                ),
                Ok(t) => {
                    for name in t.placeholders().filter_map(Placeholder::secret) {
                        if !secret_exists(name) {
                            errs.push(FieldError::new(
                                "body_template",
                                format!("unknown secret '{name}'"),
                            ));
                        }
                    }
                }
            },
            Value::Array(a) => a.iter().for_each(|x| walk(x, secret_exists, errs)),
            Value::Object(m) => m.values().for_each(|x| walk(x, secret_exists, errs)),
            _ => {}
        }
    }
    walk(t, secret_exists, errs);
}

fn check_url(spec: &WebhookSpec, errs: &mut Vec<FieldError>) {
    let url = &spec.url;
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        errs.push(FieldError::new(
            "url",
            "url must be an absolute http:// or https:// URL",
        ));
        return;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..authority_end].contains(['{', '}']) {
        errs.push(FieldError::new(
            "url",
            "placeholders are only allowed in the path, not the host",
        ));
        return;
    }
    let template = UrlTemplate::parse(url);
    let holes: Vec<&str> = template.params().collect();
    let mut filled = url.clone();
    for h in &holes {
        filled = filled.replacen(&format!("{{{h}}}"), "x", 1);
    }
    match reqwest::Url::parse(&filled) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {
            if let Some(m) = url_credentials_error(&u) {
                errs.push(FieldError::new("url", m));
                return;
            }
        }
        _ => {
            errs.push(FieldError::new("url", "url is not a valid absolute URL"));
            return;
        }
    }
    for h in holes {
        if !spec.path_params.iter().any(|p| p.name == h) {
            errs.push(FieldError::new(
                "url",
                format!("placeholder '{{{h}}}' has no matching path param"),
            ));
        }
    }
}

fn check_body_paths(spec: &WebhookSpec, errs: &mut Vec<FieldError>) {
    let names: Vec<&str> = spec.body.iter().map(|f| f.name.as_str()).collect();
    for (i, a) in names.iter().enumerate() {
        for b in names.iter().skip(i + 1) {
            if a == b || b.starts_with(&format!("{a}.")) || a.starts_with(&format!("{b}.")) {
                errs.push(FieldError::new(
                    format!("body[{i}].name"),
                    format!("body names '{a}' and '{b}' collide"),
                ));
            }
        }
    }
}

/// `managed_by` and `managed_file` are toolgate's marks of file-loaded definitions: never given.
fn check_unmanaged(by: Option<super::ManagedBy>, file: &Option<String>) -> Option<FieldError> {
    (by.is_some() || file.is_some()).then(|| {
        FieldError::new(
            "managed_by",
            "managed_by and managed_file are set by toolgate on definitions loaded from config files",
        )
    })
}

/// Every problem with a tool definition (the webhook link is checked by the store).
pub fn validate_tool(spec: &ToolSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(check_unmanaged(spec.managed_by, &spec.managed_file));
    if !is_tool_name(&spec.name) {
        errs.push(FieldError::new(
            "name",
            "tool names match ^[A-Za-z0-9_-]{1,64}$",
        ));
    }
    if let Some(d) = &spec.description
        && d.len() > 4096
    {
        errs.push(FieldError::new(
            "description",
            "description is longer than 4096 characters",
        ));
    }
    errs
}

/// Every problem with a secret's name and value.
pub fn validate_secret(name: Option<&str>, value: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(n) = name
        && !is_identifier(n)
    {
        errs.push(FieldError::new(
            "name",
            "secret names match ^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        ));
    }
    if value.is_empty() {
        errs.push(FieldError::new("value", "value must not be empty"));
    } else if value.len() > 65_536 {
        errs.push(FieldError::new("value", "value is longer than 64 KiB"));
    }
    errs
}

/// Every problem with a subscription. `secret_exists` answers for the secret its auth names.
pub fn validate_subscription(
    spec: &SubscriptionSpec,
    secret_exists: &dyn Fn(&str) -> bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(check_display_name("name", &spec.name));
    match reqwest::Url::parse(&spec.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            if let Some(m) = url_credentials_error(&u) {
                errs.push(FieldError::new("url", m));
            }
        }
        _ => errs.push(FieldError::new(
            "url",
            "url must be an absolute http:// or https:// URL",
        )),
    }
    if spec.event_types.is_empty() {
        errs.push(FieldError::new(
            "event_types",
            "list at least one event type, or \"*\" for all",
        ));
    }
    for (i, t) in spec.event_types.iter().enumerate() {
        if t != "*" && !EVENT_TYPES.contains(&t.as_str()) {
            errs.push(FieldError::new(
                format!("event_types[{i}]"),
                format!("unknown event type; one of: *, {}", EVENT_TYPES.join(", ")),
            ));
        }
    }
    match &spec.auth {
        SubscriptionAuth::ApiKey { header, .. }
            if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() =>
        {
            errs.push(FieldError::new(
                "auth.header",
                "not a valid HTTP header name",
            ))
        }
        SubscriptionAuth::Basic { username, .. }
            if username.is_empty() || username.contains(':') =>
        {
            errs.push(FieldError::new(
                "auth.username",
                "username must be non-empty and contain no ':'",
            ))
        }
        SubscriptionAuth::ClientSecret { field, .. } if !is_identifier(field) => {
            errs.push(FieldError::new(
                "auth.field",
                "field must match ^[A-Za-z_][A-Za-z0-9_]{0,63}$",
            ))
        }
        _ => {}
    }
    if let Some(n) = spec.auth.secret_name()
        && !secret_exists(n)
    {
        let field = if matches!(spec.auth, SubscriptionAuth::Basic { .. }) {
            "auth.password_secret"
        } else {
            "auth.secret"
        };
        errs.push(FieldError::new(field, format!("unknown secret '{n}'")));
    }
    errs
}

/// A prompt file name: a plain name inside the prompts directory, never a path.
pub fn is_prompt_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
}

/// Every problem with an agent. `tool_exists` and `prompt_exists` answer for names it refers to.
pub fn validate_agent(
    spec: &AgentSpec,
    tool_exists: &dyn Fn(&str) -> bool,
    prompt_exists: &dyn Fn(&str) -> bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(check_unmanaged(spec.managed_by, &spec.managed_file));
    if !is_tool_name(&spec.name) {
        errs.push(FieldError::new(
            "name",
            "agent names match ^[A-Za-z0-9_-]{1,64}$",
        ));
    }
    if spec.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        errs.push(FieldError::new("model", "model must not be empty"));
    }
    match (&spec.system_prompt, &spec.prompt) {
        (Some(_), Some(_)) => errs.push(FieldError::new(
            "prompt",
            "give either system_prompt or prompt, not both",
        )),
        (None, Some(p)) if !is_prompt_file_name(p) => errs.push(FieldError::new(
            "prompt",
            "prompt is a file name in the prompts directory, e.g. \"support.md\"",
        )),
        (None, Some(p)) if !prompt_exists(p) => errs.push(FieldError::new(
            "prompt",
            format!("no prompt file '{p}' in the prompts directory"),
        )),
        _ => {}
    }
    for (i, t) in spec.tools.iter().enumerate() {
        if !tool_exists(t) {
            errs.push(FieldError::new(
                format!("tools[{i}]"),
                format!("unknown tool '{t}'"),
            ));
        } else if spec.tools[..i].contains(t) {
            errs.push(FieldError::new(
                format!("tools[{i}]"),
                format!("tool '{t}' is listed twice"),
            ));
        }
    }
    if !(1..=64).contains(&spec.max_steps) {
        errs.push(FieldError::new(
            "max_steps",
            "max_steps must be between 1 and 64",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for (s, ok) in [
            ("a", true),
            ("_x1", true),
            ("1a", false),
            ("a-b", false),
            ("", false),
        ] {
            assert_eq!(is_identifier(s), ok, "{s}");
        }
        assert!(!is_identifier(&"a".repeat(65)));
    }
}
