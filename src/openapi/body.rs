//! An operation's request body → body fields: JSON bodies one field per top-level property
//! (nested objects and arrays with their schema), form bodies (3.x media type or Swagger 2.0
//! `formData` parameters) a form body; multipart and binary bodies are reasons to skip.

use serde_json::{Value, json};

use super::document::{Document, Version};
use super::operation::{Op, field, param_schema, text};
use crate::model::{BodyEncoding, DataType, WebhookSpec};

/// Fill `spec`'s body from the operation, or say why it cannot be sent.
pub(super) fn body(
    doc: &Document,
    o: &Op<'_>,
    spec: &mut WebhookSpec,
    body_param: Option<Value>,
    form_params: Vec<Value>,
) -> Result<(), String> {
    // Swagger 2.0 form parameters: one field each.
    if !form_params.is_empty() {
        if form_params
            .iter()
            .any(|p| p.get("type").and_then(Value::as_str) == Some("file"))
        {
            return Err("a file upload (multipart) cannot be sent by toolgate".into());
        }
        let multipart =
            o.op.get("consumes")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|x| x == "multipart/form-data"));
        if multipart {
            return Err("a multipart/form-data body cannot be sent by toolgate".into());
        }
        spec.body_encoding = BodyEncoding::Form;
        for p in &form_params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            let schema = param_schema(doc, p)?;
            let f = field(
                name,
                &schema,
                text(p, "description"),
                p.get("required") == Some(&json!(true)),
            );
            if f.data_type == DataType::Object {
                return Err(format!(
                    "form field '{name}' is an object, which a form body cannot carry"
                ));
            }
            spec.body.push(f);
        }
        return Ok(());
    }
    let (schema, encoding) = match (doc.version, body_param) {
        (Version::Swagger2, Some(p)) => (
            doc.schema(p.get("schema").unwrap_or(&json!({})))?,
            BodyEncoding::Json,
        ),
        (Version::Swagger2, None) => return Ok(()),
        _ => {
            let Some(rb) = o.op.get("requestBody") else {
                return Ok(());
            };
            let rb = doc.deref(rb)?;
            let content = rb
                .get("content")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let json_media = content.iter().find(|(k, _)| {
                let k = k.split(';').next().unwrap_or("").trim();
                k == "application/json" || k.ends_with("+json")
            });
            let form_media = content.get("application/x-www-form-urlencoded");
            let (media, encoding) = match (json_media, form_media) {
                (Some((_, m)), _) => (m, BodyEncoding::Json),
                (None, Some(m)) => (m, BodyEncoding::Form),
                (None, None) => {
                    let kinds: Vec<&str> = content.keys().map(String::as_str).collect();
                    return Err(format!(
                        "the request body is {}, which toolgate cannot send (JSON and form bodies only)",
                        if kinds.is_empty() {
                            "empty".to_string()
                        } else {
                            kinds.join(", ")
                        }
                    ));
                }
            };
            (
                doc.schema(media.get("schema").unwrap_or(&json!({})))?,
                encoding,
            )
        }
    };
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Err(
            "the request body is not a JSON object with declared properties (an array or free-form body cannot be split into fields)"
                .into(),
        );
    };
    let needed: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    spec.body_encoding = encoding;
    for (name, p) in props {
        if p.get("readOnly") == Some(&json!(true)) {
            continue;
        }
        if name.contains('.') || name.is_empty() {
            return Err(format!(
                "body property '{name}' cannot be named as a field (dots nest)"
            ));
        }
        // A property the body schema requires is required even when the body as a whole is
        // optional (3.0's default): a call without it would be a half-formed request.
        let f = field(name, p, None, needed.contains(&name.as_str()));
        if encoding == BodyEncoding::Form && f.data_type == DataType::Object {
            return Err(format!(
                "form field '{name}' is an object, which a form body cannot carry"
            ));
        }
        spec.body.push(f);
    }
    Ok(())
}
