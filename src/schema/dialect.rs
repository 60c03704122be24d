//! What each model provider accepts: OpenAI's strict variant, Gemini's function declarations,
//! and the checks a schema must pass for both.

use serde_json::{Map, Value, json};

use super::type_names;

/// Keywords OpenAI's strict mode does not accept: they are left out of the strict variant and
/// enforced by toolgate's own validation instead.
const STRICT_UNSUPPORTED: &[&str] = &[
    "default",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "examples",
    "example",
    "readOnly",
    "writeOnly",
    "deprecated",
    "title",
    "nullable",
    "$schema",
    "$id",
    "$defs",
    "definitions",
];

/// Keywords Gemini's function declarations accept (an OpenAPI 3.0 subset); everything else is
/// left out of its variant.
const GEMINI_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "anyOf",
];

/// Problems OpenAI's function calling has with a (resolved) schema: arrays without `items`,
/// references left, nesting deeper than 10, more than 1,000 enum values.
pub fn openai_problems(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, path: &str, depth: usize, out: &mut Vec<String>) {
        let Value::Object(m) = v else { return };
        if depth > 10 {
            out.push(format!("{path}: nested deeper than 10 levels"));
            return;
        }
        if m.contains_key("$ref") {
            out.push(format!("{path}: unresolved $ref"));
        }
        if type_names(m).contains(&"array") && !m.contains_key("items") {
            out.push(format!("{path}: an array needs 'items'"));
        }
        if let Some(Value::Array(e)) = m.get("enum")
            && e.len() > 1000
        {
            out.push(format!("{path}: more than 1000 enum values"));
        }
        if let Some(Value::Object(props)) = m.get("properties") {
            for (k, p) in props {
                walk(p, &format!("{path}.{k}"), depth + 1, out);
            }
        }
        if let Some(items) = m.get("items") {
            walk(items, &format!("{path}[]"), depth + 1, out);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(alts)) = m.get(key) {
                for (i, a) in alts.iter().enumerate() {
                    walk(a, &format!("{path}.{key}[{i}]"), depth + 1, out);
                }
            }
        }
    }
    walk(schema, "schema", 0, &mut out);
    out
}

/// The strict (structured outputs) variant of a property schema: every object closed with
/// `additionalProperties: false` and every property required (optional ones made nullable),
/// keywords strict mode rejects left out, `oneOf` given as `anyOf`.
pub fn strict_variant(schema: &Value) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        if STRICT_UNSUPPORTED.contains(&k.as_str()) {
            continue;
        }
        match k.as_str() {
            "properties" => {
                let Value::Object(props) = v else { continue };
                let required: Vec<&str> = m
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut strict_props = Map::new();
                for (name, p) in props {
                    let mut sp = strict_variant(p);
                    if !required.contains(&name.as_str()) {
                        make_nullable(&mut sp);
                    }
                    strict_props.insert(name.clone(), sp);
                }
                out.insert(
                    "required".into(),
                    Value::Array(props.keys().map(|k| json!(k)).collect()),
                );
                out.insert("properties".into(), Value::Object(strict_props));
            }
            "required" => {}
            "items" => {
                out.insert(k.clone(), strict_variant(v));
            }
            "anyOf" | "oneOf" => {
                let alts = v
                    .as_array()
                    .map(|a| a.iter().map(strict_variant).collect())
                    .unwrap_or_default();
                out.insert("anyOf".into(), Value::Array(alts));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if type_names(&out).contains(&"object") || out.contains_key("properties") {
        out.insert("additionalProperties".into(), json!(false));
        out.entry("properties").or_insert_with(|| json!({}));
        out.entry("required").or_insert_with(|| json!([]));
    }
    Value::Object(out)
}

/// Let a schema also accept `null` (how strict mode expresses "optional").
pub fn make_nullable(schema: &mut Value) {
    let Value::Object(m) = schema else { return };
    match m.get_mut("type") {
        Some(Value::String(t)) => {
            let t = t.clone();
            m.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(ts)) => {
            if !ts.contains(&json!("null")) {
                ts.push(json!("null"));
            }
        }
        _ => {
            if let Some(Value::Array(alts)) = m.get_mut("anyOf")
                && !alts.iter().any(|a| a.get("type") == Some(&json!("null")))
            {
                alts.push(json!({"type": "null"}));
            }
        }
    }
    if let Some(Value::Array(e)) = m.get_mut("enum")
        && !e.contains(&Value::Null)
    {
        e.push(Value::Null);
    }
}

/// The Gemini variant of a schema: only the keywords its function declarations accept,
/// `["t", "null"]` written as `nullable`, `oneOf` as `anyOf`.
pub fn gemini_variant(schema: &Value) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let key = if k == "oneOf" { "anyOf" } else { k.as_str() };
        if !GEMINI_KEYWORDS.contains(&key) {
            continue;
        }
        let v = match key {
            "type" => match v {
                Value::Array(ts) => {
                    let non_null: Vec<&Value> = ts.iter().filter(|t| *t != "null").collect();
                    if non_null.len() < ts.len() {
                        out.insert("nullable".into(), json!(true));
                    }
                    non_null
                        .first()
                        .map(|t| (*t).clone())
                        .unwrap_or(json!("string"))
                }
                other => other.clone(),
            },
            "properties" => Value::Object(
                v.as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(n, s)| (n.clone(), gemini_variant(s)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "items" => gemini_variant(v),
            "anyOf" => Value::Array(
                v.as_array()
                    .map(|a| a.iter().map(gemini_variant).collect())
                    .unwrap_or_default(),
            ),
            "enum" => Value::Array(
                v.as_array()
                    .map(|a| a.iter().filter(|x| !x.is_null()).cloned().collect())
                    .unwrap_or_default(),
            ),
            _ => v.clone(),
        };
        out.insert(key.to_string(), v);
    }
    Value::Object(out)
}

/// Problems Gemini has with the Gemini variant of a schema: arrays without `items`, enums of
/// anything but strings.
pub fn gemini_problems(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        let Value::Object(m) = v else { return };
        if m.get("type") == Some(&json!("array")) && !m.contains_key("items") {
            out.push(format!("{path}: an array needs 'items'"));
        }
        if let Some(Value::Array(e)) = m.get("enum")
            && e.iter().any(|x| !x.is_string())
            && m.get("type") == Some(&json!("string"))
        {
            out.push(format!("{path}: Gemini enums hold strings only"));
        }
        if let Some(Value::Object(props)) = m.get("properties") {
            for (k, p) in props {
                walk(p, &format!("{path}.{k}"), out);
            }
        }
        if let Some(items) = m.get("items") {
            walk(items, &format!("{path}[]"), out);
        }
    }
    walk(&gemini_variant(schema), "schema", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_closes_every_object() {
        let s = json!({"type": "object", "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]+$"},
            "qty": {"type": "integer", "minimum": 1, "default": 1},
            "addr": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            "required": ["sku"]});
        let st = strict_variant(&s);
        assert_eq!(st["additionalProperties"], json!(false));
        assert_eq!(st["required"], json!(["addr", "qty", "sku"]));
        assert_eq!(st["properties"]["qty"]["type"], json!(["integer", "null"]));
        assert!(st["properties"]["qty"].get("minimum").is_none());
        assert!(st["properties"]["sku"].get("pattern").is_none());
        assert_eq!(
            st["properties"]["addr"]["additionalProperties"],
            json!(false)
        );
        assert!(jsonschema::meta::is_valid(&st));
    }

    #[test]
    fn dialect_checks() {
        assert_eq!(openai_problems(&json!({"type": "array"})).len(), 1);
        assert!(openai_problems(&json!({"type": "array", "items": {"type": "string"}})).is_empty());
        let g = gemini_variant(
            &json!({"type": ["string", "null"], "additionalProperties": false,
            "oneOf": [{"type": "string", "pattern": "x"}], "enum": ["a", null]}),
        );
        assert_eq!(
            g,
            json!({"type": "string", "nullable": true, "anyOf": [{"type": "string"}], "enum": ["a"]})
        );
        assert!(!gemini_problems(&json!({"type": "array"})).is_empty());
    }
}
