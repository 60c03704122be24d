//! JSON Schema work shared by field definitions, the compiled tool schemas and the OpenAPI
//! import: local `$ref` resolution (with `allOf` merged and recursion cut), the variants each
//! model provider accepts (OpenAI's strict mode, Gemini's function declarations), the checks a
//! schema must pass for each (`dialect`), and coercion of a model's arguments along a schema.

mod dialect;

pub use dialect::{
    gemini_problems, gemini_variant, make_nullable, openai_problems, strict_variant,
};

use serde_json::{Map, Value, json};

/// How deep a recursive schema is expanded before it is cut (the cut is said in a description).
pub const MAX_REF_DEPTH: usize = 4;

/// Resolve every local `$ref` (`#/…` JSON pointers into `root`), merge `allOf`, and cut recursion
/// at `MAX_REF_DEPTH`. `$defs`/`definitions` are dropped from the result (nothing refers to them
/// any more).
pub fn resolve_refs(root: &Value, v: &Value) -> Result<Value, String> {
    resolve(root, v, &mut Vec::new())
}

fn resolve(root: &Value, v: &Value, stack: &mut Vec<String>) -> Result<Value, String> {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                let Some(pointer) = r.strip_prefix('#') else {
                    return Err(format!(
                        "'$ref: {r}' is not local; only '#/…' references are resolved"
                    ));
                };
                let target = root
                    .pointer(pointer)
                    .ok_or_else(|| format!("'$ref: {r}' points at nothing"))?;
                if stack.iter().filter(|s| *s == r).count() >= 1 && stack.len() >= MAX_REF_DEPTH {
                    let mut cut = json!({"type": "object",
                        "description": format!("(recursive: {r} is cut at depth {MAX_REF_DEPTH})")});
                    if target.get("type") == Some(&json!("array")) {
                        cut = json!({"type": "array", "items": {},
                            "description": format!("(recursive: {r} is cut at depth {MAX_REF_DEPTH})")});
                    }
                    return Ok(cut);
                }
                stack.push(r.clone());
                let mut out = resolve(root, target, stack)?;
                stack.pop();
                // Sibling keywords of `$ref` (3.1 allows e.g. a description) win over the target's.
                if let Value::Object(o) = &mut out {
                    for (k, x) in m {
                        if k != "$ref" {
                            o.insert(k.clone(), resolve(root, x, stack)?);
                        }
                    }
                }
                return Ok(out);
            }
            let mut out = Map::new();
            for (k, x) in m {
                if k == "$defs" || k == "definitions" {
                    continue;
                }
                out.insert(k.clone(), resolve(root, x, stack)?);
            }
            if let Some(Value::Array(parts)) = out.remove("allOf") {
                merge_all_of(&mut out, parts);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => Ok(Value::Array(
            a.iter()
                .map(|x| resolve(root, x, stack))
                .collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}

/// Fold resolved `allOf` parts into one object schema: properties and required lists joined,
/// other keywords taken from the first part that has them.
fn merge_all_of(out: &mut Map<String, Value>, parts: Vec<Value>) {
    for part in parts {
        let Value::Object(p) = part else { continue };
        for (k, v) in p {
            match (k.as_str(), out.get_mut(&k), v) {
                ("properties", Some(Value::Object(have)), Value::Object(add)) => {
                    have.extend(add);
                }
                ("required", Some(Value::Array(have)), Value::Array(add)) => {
                    for r in add {
                        if !have.contains(&r) {
                            have.push(r);
                        }
                    }
                }
                (_, Some(_), _) => {}
                (_, None, v) => {
                    out.insert(k, v);
                }
            }
        }
    }
    if out.contains_key("properties") && !out.contains_key("type") {
        out.insert("type".into(), json!("object"));
    }
}

pub(crate) fn type_names(schema: &Map<String, Value>) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Coerce a model's value along `schema`, where that is unambiguous: an object or array sent
/// as a JSON string is parsed back, scalars in strings become numbers and booleans (and numbers
/// become strings) as the schema says. What cannot be coerced is left for validation to name.
pub fn coerce(schema: &Value, v: &Value) -> Value {
    let Value::Object(s) = schema else {
        return v.clone();
    };
    let types = type_names(s);
    let wants = |t: &str| types.contains(&t);
    if let Value::String(text) = v
        && (wants("object") || wants("array"))
        && !wants("string")
    {
        let trimmed = text.trim();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(parsed) = serde_json::from_str::<Value>(trimmed)
        {
            return coerce(schema, &parsed);
        }
    }
    match v {
        Value::Object(m) if wants("object") || s.contains_key("properties") => {
            let props = s.get("properties").and_then(Value::as_object);
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        let sub = props.and_then(|p| p.get(k)).or(extra);
                        (
                            k.clone(),
                            sub.map(|sub| coerce(sub, x)).unwrap_or(x.clone()),
                        )
                    })
                    .collect(),
            )
        }
        Value::Array(a) if wants("array") => {
            let items = s.get("items");
            Value::Array(
                a.iter()
                    .map(|x| items.map(|i| coerce(i, x)).unwrap_or(x.clone()))
                    .collect(),
            )
        }
        _ => {
            let scalar = [
                ("integer", crate::model::DataType::Integer),
                ("number", crate::model::DataType::Number),
                ("boolean", crate::model::DataType::Boolean),
                ("string", crate::model::DataType::String),
            ];
            if v.is_null() || types.len() != 1 {
                return v.clone();
            }
            scalar
                .iter()
                .find(|(name, _)| wants(name))
                .and_then(|(_, dt)| crate::call::args::coerce(*dt, v).ok())
                .unwrap_or_else(|| v.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_chains_all_of_and_recursion() {
        let root = json!({"$defs": {
            "Id": {"$ref": "#/$defs/Text"},
            "Text": {"type": "string", "minLength": 1},
            "Base": {"type": "object", "properties": {"id": {"$ref": "#/$defs/Id"}}, "required": ["id"]},
            "Pet": {"allOf": [{"$ref": "#/$defs/Base"},
                              {"properties": {"name": {"type": "string"}}, "required": ["name"]}]},
            "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}
        }});
        let pet = resolve_refs(&root, &json!({"$ref": "#/$defs/Pet"})).unwrap();
        assert_eq!(
            pet,
            json!({"type": "object", "properties": {"id": {"type": "string", "minLength": 1},
                   "name": {"type": "string"}}, "required": ["id", "name"]})
        );
        let node = resolve_refs(&root, &json!({"$ref": "#/$defs/Node"})).unwrap();
        let mut depth = 0;
        let mut cur = &node;
        while let Some(c) = cur.pointer("/properties/child") {
            depth += 1;
            cur = c;
        }
        assert!(depth <= MAX_REF_DEPTH + 1, "{node}");
        assert!(cur["description"].as_str().unwrap().contains("recursive"));
        assert!(resolve_refs(&root, &json!({"$ref": "#/$defs/Nope"})).is_err());
        assert!(resolve_refs(&root, &json!({"$ref": "other.yaml#/X"})).is_err());
    }

    #[test]
    fn coercion_follows_the_schema() {
        let s = json!({"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "sku": {"type": "string"}, "quantity": {"type": "integer"}}}},
            "gift": {"type": "boolean"}}});
        let v = coerce(
            &s,
            &json!({"items": "[{\"sku\": 1, \"quantity\": \"2\"}]", "gift": "true"}),
        );
        assert_eq!(
            v,
            json!({"items": [{"sku": "1", "quantity": 2}], "gift": true})
        );
        // What cannot be coerced is left as it is, for validation to name.
        assert_eq!(coerce(&json!({"type": "integer"}), &json!("x")), json!("x"));
        assert_eq!(
            coerce(&json!({"type": "array", "items": {}}), &json!("not json")),
            json!("not json")
        );
    }
}
