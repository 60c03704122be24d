//! The value rules a field may carry (`enum`, `default`, bounds, `pattern`, `format`, an array or
//! object `schema`, the query `style`) and where arrays and objects may go.

use serde_json::Value;

use super::FieldError;
use crate::model::field::{DataType, Field, QueryStyle, ValueType};
use crate::model::webhook::BodyEncoding;
use crate::schema;

/// Whether `v` is a value of `dt` (arrays and objects by their JSON kind only).
fn has_type(dt: DataType, v: &Value) -> bool {
    match (dt, v) {
        (DataType::String, Value::String(_)) => true,
        (DataType::Number, Value::Number(_)) => true,
        (DataType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (DataType::Boolean, Value::Bool(_)) => true,
        (DataType::Array, Value::Array(_)) => true,
        (DataType::Object, Value::Object(_)) => true,
        _ => false,
    }
}

/// Every problem with `f`'s value rules, at `list[i]`.
pub(super) fn check_value_rules(
    list: &str,
    i: usize,
    f: &Field,
    encoding: BodyEncoding,
    errs: &mut Vec<FieldError>,
) {
    let at = |k: &str| format!("{list}[{i}].{k}");
    let t = f.data_type.schema_type();
    let only = |key: &str, types: &str| format!("'{key}' applies to {types} fields only");
    // Where arrays and objects may go.
    match (f.data_type, list) {
        (DataType::Array | DataType::Object, "headers" | "path_params") => {
            errs.push(FieldError::new(
                at("data_type"),
                format!(
                    "{t} values cannot be sent in {}: use a query or body field",
                    list.replace('_', " ")
                ),
            ))
        }
        (DataType::Object, "query_params") => errs.push(FieldError::new(
            at("data_type"),
            "object values cannot be sent in a query string: use a body field",
        )),
        (DataType::Object, "body") if encoding == BodyEncoding::Form => errs.push(FieldError::new(
            at("data_type"),
            "object values cannot be sent in a form body: use a JSON body",
        )),
        _ => {}
    }
    if f.style != QueryStyle::Repeat && !(list == "query_params" && f.data_type == DataType::Array)
    {
        errs.push(FieldError::new(at("style"), only("style", "query array")));
    }
    if let Some(values) = &f.allowed {
        if values.is_empty() || values.len() > 1000 {
            errs.push(FieldError::new(at("enum"), "enum lists 1 to 1000 values"));
        }
        for (j, v) in values.iter().enumerate() {
            if !has_type(f.data_type, v) {
                errs.push(FieldError::new(
                    format!("{list}[{i}].enum[{j}]"),
                    format!("value is not of data_type '{t}'"),
                ));
            }
        }
    }
    if let Some(d) = &f.default {
        if f.value_type != ValueType::Dynamic || f.required {
            errs.push(FieldError::new(
                at("default"),
                "a default is used when a non-required dynamic value is absent: set \"required\": false",
            ));
        }
        if !has_type(f.data_type, d) {
            errs.push(FieldError::new(
                at("default"),
                format!("default is not of data_type '{t}'"),
            ));
        } else if f.allowed.as_ref().is_some_and(|e| !e.contains(d)) {
            errs.push(FieldError::new(at("default"), "default is not one of enum"));
        }
    }
    let numeric = matches!(f.data_type, DataType::Number | DataType::Integer);
    for (key, v) in [("minimum", f.minimum), ("maximum", f.maximum)] {
        if v.is_some() && !numeric {
            errs.push(FieldError::new(at(key), only(key, "number and integer")));
        }
    }
    if let (Some(lo), Some(hi)) = (f.minimum, f.maximum)
        && lo > hi
    {
        errs.push(FieldError::new(at("minimum"), "minimum is above maximum"));
    }
    let text = f.data_type == DataType::String;
    for (key, set) in [
        ("min_length", f.min_length.is_some()),
        ("max_length", f.max_length.is_some()),
        ("pattern", f.pattern.is_some()),
    ] {
        if set && !text {
            errs.push(FieldError::new(at(key), only(key, "string")));
        }
    }
    if let (Some(lo), Some(hi)) = (f.min_length, f.max_length)
        && lo > hi
    {
        errs.push(FieldError::new(
            at("min_length"),
            "min_length is above max_length",
        ));
    }
    if let Some(p) = &f.pattern
        && (p.len() > 1000 || regex::Regex::new(p).is_err())
    {
        errs.push(FieldError::new(
            at("pattern"),
            "not a valid regular expression",
        ));
    }
    if let Some(fmt) = &f.format
        && (fmt.is_empty() || fmt.len() > 64 || !f.data_type.is_scalar())
    {
        errs.push(FieldError::new(
            at("format"),
            "format is a short JSON Schema format name (date, date-time, email, uuid, …) for scalar fields",
        ));
    }
    check_schema(list, i, f, errs);
}

/// An array or object field's `schema`: present, of the field's type, its local `$ref`s
/// resolvable, acceptable to every model provider.
fn check_schema(list: &str, i: usize, f: &Field, errs: &mut Vec<FieldError>) {
    let at = format!("{list}[{i}].schema");
    let Some(s) = &f.schema else {
        if !f.data_type.is_scalar() {
            errs.push(FieldError::new(
                at,
                format!(
                    "an {} field needs 'schema', the JSON Schema of its value",
                    f.data_type.schema_type()
                ),
            ));
        }
        return;
    };
    if f.data_type.is_scalar() {
        errs.push(FieldError::new(at, "'schema' applies to array and object fields only (scalars use enum, minimum, pattern, …)"));
        return;
    }
    if !s.is_object() {
        errs.push(FieldError::new(at, "schema must be a JSON object"));
        return;
    }
    let resolved = match schema::resolve_refs(s, s) {
        Ok(r) => r,
        Err(m) => {
            errs.push(FieldError::new(at, m));
            return;
        }
    };
    let declared = resolved.get("type").and_then(Value::as_str);
    if declared.is_some_and(|d| d != f.data_type.schema_type()) {
        errs.push(FieldError::new(
            at.clone(),
            format!(
                "schema type '{}' does not match data_type '{}'",
                declared.unwrap_or(""),
                f.data_type.schema_type()
            ),
        ));
    }
    if !jsonschema::meta::is_valid(&resolved) {
        errs.push(FieldError::new(at.clone(), "not a valid JSON Schema"));
    }
    let mut typed = resolved;
    if let Some(m) = typed.as_object_mut() {
        m.entry("type")
            .or_insert_with(|| Value::String(f.data_type.schema_type().into()));
    }
    for p in schema::openai_problems(&typed) {
        errs.push(FieldError::new(at.clone(), format!("OpenAI: {p}")));
    }
    for p in schema::gemini_problems(&typed) {
        errs.push(FieldError::new(at.clone(), format!("Gemini: {p}")));
    }
    if list == "query_params"
        && let Some(items) = typed.get("items")
        && items
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t == "object" || t == "array")
    {
        errs.push(FieldError::new(
            at,
            "a query array holds scalars (strings, numbers, booleans)",
        ));
    }
}
