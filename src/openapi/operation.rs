//! One OpenAPI operation → one webhook definition: its URL, parameters (path-level ones
//! included), JSON or form body, and security, each with its types, enums, defaults and
//! descriptions. What toolgate cannot send faithfully is a reason to skip, never half an import.

use serde_json::{Map, Value, json};

use super::document::{Document, Version};
use super::{ImportOptions, Security};
use crate::model::names::is_identifier;
use crate::model::{DataType, Field, Method, QueryStyle, ValueType, WebhookSpec};

/// Longest tool description taken from a summary and description.
const MAX_DESCRIPTION: usize = 1024;

/// An operation, located.
pub struct Op<'a> {
    /// `get`, `post`…
    pub method: &'a str,
    /// The path as in the document (`/pets/{petId}`).
    pub path: &'a str,
    /// The operation object.
    pub op: &'a Value,
    /// The path item (for path-level parameters).
    pub item: &'a Value,
}

impl Op<'_> {
    /// `operationId`, or `METHOD /path` when there is none.
    pub fn id(&self) -> String {
        self.op
            .get("operationId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{} {}", self.method.to_uppercase(), self.path))
    }

    /// Its tags.
    pub fn tags(&self) -> Vec<&str> {
        self.op
            .get("tags")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// `listPets` → `list_pets`, `GET /pets/{id}` → `get_pets_id`: lower snake case of the
/// alphanumeric runs.
pub fn snake_case(s: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    out.trim_matches('_').to_string()
}

/// A model-safe argument name for a wire name (`X-Request-Id` → `x_request_id`).
fn argument_for(name: &str) -> Option<String> {
    if is_identifier(name) {
        return None;
    }
    let mut a = snake_case(name);
    if a.is_empty() || a.starts_with(|c: char| c.is_ascii_digit()) {
        a.insert_str(0, "arg_");
    }
    a.truncate(64);
    Some(a)
}

pub(super) fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Summary and description, one text, cut at a word near `max`.
pub fn describe(op: &Value, max: usize) -> String {
    let mut d = match (text(op, "summary"), text(op, "description")) {
        (Some(s), Some(d)) if d.starts_with(&s) => d,
        (Some(s), Some(d)) => format!("{s}. {d}"),
        (Some(s), None) => s,
        (None, Some(d)) => d,
        (None, None) => String::new(),
    };
    if d.chars().count() > max {
        let cut: String = d.chars().take(max).collect();
        let at = cut.rfind(' ').unwrap_or(cut.len());
        d = format!("{}…", &cut[..at]);
    }
    d
}

/// The field type of a (resolved) schema, if toolgate has one for it.
fn data_type(schema: &Value) -> DataType {
    let t = match schema.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    };
    match t {
        Some("integer") => DataType::Integer,
        Some("number") => DataType::Number,
        Some("boolean") => DataType::Boolean,
        Some("array") => DataType::Array,
        Some("object") => DataType::Object,
        Some(_) => DataType::String,
        None if schema.get("properties").is_some() => DataType::Object,
        None if schema.get("items").is_some() => DataType::Array,
        None if schema.get("anyOf").is_some() || schema.get("oneOf").is_some() => DataType::Object,
        None => DataType::String,
    }
}

/// A dynamic field for a value described by `schema`.
pub(super) fn field(
    name: &str,
    schema: &Value,
    description: Option<String>,
    required: bool,
) -> Field {
    let dt = data_type(schema);
    let mut f: Field = serde_json::from_value(json!({"name": name, "value_type": "dynamic"}))
        .unwrap_or_else(|_| unreachable!("a minimal field always deserialises"));
    f.data_type = dt;
    f.required = required;
    f.argument = argument_for(name);
    f.description = description
        .or_else(|| text(schema, "description"))
        .unwrap_or_default();
    f.description = f.description.chars().take(1024).collect();
    if dt.is_scalar() {
        let fits = |v: &Value| match dt {
            DataType::String => v.is_string(),
            DataType::Integer => v.is_i64() || v.is_u64(),
            DataType::Number => v.is_number(),
            DataType::Boolean => v.is_boolean(),
            _ => false,
        };
        f.allowed = schema
            .get("enum")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter(|v| fits(v)).cloned().collect::<Vec<_>>())
            .filter(|e| !e.is_empty());
        if !required {
            f.default = schema.get("default").filter(|d| fits(d)).cloned();
        }
        if matches!(dt, DataType::Integer | DataType::Number) {
            f.minimum = schema.get("minimum").and_then(Value::as_f64);
            f.maximum = schema.get("maximum").and_then(Value::as_f64);
        }
        if dt == DataType::String {
            f.min_length = schema.get("minLength").and_then(Value::as_u64);
            f.max_length = schema.get("maxLength").and_then(Value::as_u64);
            f.pattern = text(schema, "pattern").filter(|p| regex::Regex::new(p).is_ok());
        }
        f.format = text(schema, "format").filter(|x| x.len() <= 64);
        if f.default
            .as_ref()
            .is_some_and(|d| f.allowed.as_ref().is_some_and(|e| !e.contains(d)))
        {
            f.default = None;
        }
    } else {
        let mut s = schema.clone();
        if let Some(m) = s.as_object_mut() {
            m.remove("description");
            if dt == DataType::Array {
                m.entry("items").or_insert_with(|| json!({}));
            }
        }
        f.schema = Some(s);
    }
    f
}

/// What an operation becomes, or why it is skipped.
pub fn convert(
    doc: &Document,
    o: &Op<'_>,
    opts: &ImportOptions,
    security: &Security,
    warnings: &mut Vec<String>,
) -> Result<WebhookSpec, String> {
    let method = match o.method {
        "get" => Method::Get,
        "post" => Method::Post,
        "put" => Method::Put,
        "patch" => Method::Patch,
        "delete" => Method::Delete,
        other => {
            return Err(format!(
                "the {} method is not supported",
                other.to_uppercase()
            ));
        }
    };
    let base = doc
        .server_url(opts.base_url.as_deref(), o.op)
        .map_err(|e| e.to_string())?;
    let mut spec: WebhookSpec = serde_json::from_value(json!({
        "name": "imported", "method": method, "url": format!("{base}{}", o.path)}))
    .map_err(|e| e.to_string())?;
    spec.name = match text(o.op, "summary") {
        Some(s) => s.chars().filter(|c| !c.is_control()).take(200).collect(),
        None => format!("{} {}", o.method.to_uppercase(), o.path),
    };
    spec.description = describe(o.op, MAX_DESCRIPTION);
    let mut body_param: Option<Value> = None;
    let mut form_params: Vec<Value> = Vec::new();
    for p in parameters(doc, o)? {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let place = p.get("in").and_then(Value::as_str).unwrap_or("");
        match place {
            "cookie" => {
                return Err(format!(
                    "cookie parameter '{name}' cannot be sent by toolgate"
                ));
            }
            "body" => {
                body_param = Some(p.clone());
                continue;
            }
            "formData" => {
                form_params.push(p.clone());
                continue;
            }
            _ => {}
        }
        let schema = param_schema(doc, &p)?;
        let required = place == "path" || p.get("required") == Some(&json!(true));
        let mut f = field(&name, &schema, text(&p, "description"), required);
        let dt = f.data_type;
        match place {
            "path" | "header" if !dt.is_scalar() => {
                return Err(format!(
                    "{place} parameter '{name}' is an {}, which cannot be sent there",
                    dt.schema_type()
                ));
            }
            "query" if dt == DataType::Object => {
                return Err(format!(
                    "query parameter '{name}' is an object (deepObject), which toolgate cannot send faithfully"
                ));
            }
            _ => {}
        }
        if place == "query" && dt == DataType::Array {
            let explode = p.get("explode").and_then(Value::as_bool);
            let style = p.get("style").and_then(Value::as_str).unwrap_or("form");
            let comma = match doc.version {
                Version::Swagger2 => !matches!(
                    p.get("collectionFormat").and_then(Value::as_str),
                    Some("multi")
                ),
                _ => explode == Some(false) && style == "form",
            };
            if comma {
                f.style = QueryStyle::Comma;
            }
        }
        match place {
            "path" => spec.path_params.push(f),
            "query" => spec.query_params.push(f),
            "header" => {
                // OpenAPI ignores these as parameters; they are set by the transport.
                if ["accept", "content-type", "authorization"]
                    .contains(&name.to_ascii_lowercase().as_str())
                {
                    continue;
                }
                spec.headers.push(f)
            }
            other => {
                return Err(format!(
                    "parameter '{name}' is in '{other}', which is unknown"
                ));
            }
        }
    }
    super::body::body(doc, o, &mut spec, body_param, form_params)?;
    if method == Method::Get && !spec.body.is_empty() {
        return Err("a GET operation with a request body cannot be sent".into());
    }
    security.apply(o, &mut spec, warnings);
    dedupe_arguments(&mut spec);
    Ok(spec)
}

/// Path-level and operation-level parameters, resolved; the operation's win by (name, in).
fn parameters(doc: &Document, o: &Op<'_>) -> Result<Vec<Value>, String> {
    let mut out: Vec<Value> = Vec::new();
    for list in [o.item.get("parameters"), o.op.get("parameters")]
        .into_iter()
        .flatten()
    {
        for p in list.as_array().into_iter().flatten() {
            let p = doc.deref(p)?.clone();
            let key = |v: &Value| (v.get("name").cloned(), v.get("in").cloned());
            out.retain(|q| key(q) != key(&p));
            out.push(p);
        }
    }
    Ok(out)
}

/// A parameter's schema: `schema` (3.x), or the parameter itself (Swagger 2.0 keeps `type`,
/// `items`, `enum` on it).
pub(super) fn param_schema(doc: &Document, p: &Value) -> Result<Value, String> {
    match p.get("schema") {
        Some(s) => doc.schema(s),
        None => {
            if let Some(Value::Object(content)) = p.get("content")
                && let Some(media) = content.values().next()
            {
                return doc.schema(media.get("schema").unwrap_or(&json!({})));
            }
            let mut s = Map::new();
            for k in [
                "type",
                "items",
                "enum",
                "default",
                "minimum",
                "maximum",
                "minLength",
                "maxLength",
                "pattern",
                "format",
            ] {
                if let Some(v) = p.get(k) {
                    s.insert(k.into(), v.clone());
                }
            }
            doc.schema(&Value::Object(s))
        }
    }
}

/// Two fields whose argument names collide (a query `id` and a body `id`): the later one
/// gets its list's name appended.
fn dedupe_arguments(spec: &mut WebhookSpec) {
    let mut seen: Vec<String> = Vec::new();
    for (suffix, list) in [
        ("path", &mut spec.path_params),
        ("query", &mut spec.query_params),
        ("header", &mut spec.headers),
        ("body", &mut spec.body),
    ] {
        for f in list
            .iter_mut()
            .filter(|f| f.value_type == ValueType::Dynamic)
        {
            let mut arg = f.arg_name().to_string();
            if seen.contains(&arg) {
                arg = format!("{arg}_{suffix}");
                let mut n = 2;
                while seen.contains(&arg) {
                    arg = format!("{}_{suffix}{n}", f.arg_name());
                    n += 1;
                }
                f.argument = Some(arg.clone());
            }
            seen.push(arg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(snake_case("listPets"), "list_pets");
        assert_eq!(
            snake_case("GET /pets/{petId}/photos"),
            "get_pets_pet_id_photos"
        );
        assert_eq!(snake_case("createHTTPThing"), "create_httpthing");
        assert_eq!(
            argument_for("X-Request-Id").as_deref(),
            Some("x_request_id")
        );
        assert_eq!(
            argument_for("filter[status]").as_deref(),
            Some("filter_status")
        );
        assert_eq!(argument_for("1st").as_deref(), Some("arg_1st"));
        assert_eq!(argument_for("petId"), None);
    }

    #[test]
    fn descriptions_are_trimmed_at_a_word() {
        let op = json!({"summary": "Find pets", "description": "word ".repeat(500)});
        let d = describe(&op, 100);
        assert!(
            d.starts_with("Find pets. word") && d.ends_with('…') && d.chars().count() <= 101,
            "{d}"
        );
    }
}
