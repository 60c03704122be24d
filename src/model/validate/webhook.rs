//! Webhook definitions: fields, URL, templates and body paths.

use std::collections::HashMap;

use serde_json::Value;

use super::{
    FieldError, check_display_name, check_unmanaged, is_dotted_path, is_identifier,
    url_credentials_error,
};
use crate::model::field::{DataType, Field, ValueType};
use crate::model::template::{Placeholder, Template, UrlTemplate};
use crate::model::webhook::{Method, WebhookSpec};

fn static_matches(data_type: DataType, v: &Value) -> bool {
    match (data_type, v) {
        (_, Value::String(s)) if s.contains("{{") => true,
        (DataType::Array, Value::Array(_)) => true,
        (DataType::Object, Value::Object(_)) => true,
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
    if let Some(subject) = &f.subject {
        if f.value_type != ValueType::Secret {
            errs.push(FieldError::new(
                at("subject"),
                "only secret fields have a subject (the context path naming whose value to use)",
            ));
        } else if !crate::model::names::is_dotted_path(subject) {
            errs.push(FieldError::new(
                at("subject"),
                "a subject is a context path such as user.id",
            ));
        }
    }
    if f.sensitive && f.value_type != ValueType::Context {
        errs.push(FieldError::new(
            at("sensitive"),
            "only context fields can be sensitive (secrets are redacted anyway; dynamic values come from the model)",
        ));
    }
    if f.name.is_empty() {
        errs.push(FieldError::new(at("name"), "name must not be empty"));
    } else if let Some(arg) = &f.argument {
        // The wire name may be anything its place allows; the model sees `argument`.
        if !is_identifier(arg) {
            errs.push(FieldError::new(
                at("argument"),
                "an argument name must match ^[A-Za-z_][A-Za-z0-9_]{0,63}$",
            ));
        }
        if f.value_type != ValueType::Dynamic {
            errs.push(FieldError::new(
                at("argument"),
                "'argument' names what the model supplies: only dynamic fields have one",
            ));
        }
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
            Some(Value::Array(_) | Value::Object(_)) if f.data_type.is_scalar() => errs.push(
                FieldError::new(at("value"), "a static value must be a JSON scalar"),
            ),
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
        if f.value_type == ValueType::Dynamic && !f.arg_name().is_empty() {
            if let Some(first) = dynamic_names.get(f.arg_name()) {
                errs.push(FieldError::new(
                    format!("{list}[{i}].name"),
                    format!("dynamic name '{}' is already used by {first}", f.arg_name()),
                ));
            } else {
                dynamic_names.insert(f.arg_name(), format!("{list}[{i}]"));
            }
        }
        super::field_rules::check_value_rules(list, i, f, spec.body_encoding, &mut errs);
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
    if spec.body_encoding != crate::model::BodyEncoding::Json {
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
