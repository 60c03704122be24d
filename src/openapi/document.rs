//! Reading an OpenAPI document: YAML or JSON text (or an object), its version (Swagger 2.0,
//! OpenAPI 3.0 or 3.1), local `$ref`s, and the few places where Swagger 2.0 says things
//! differently (host/basePath, `in: body`/`formData` parameters, `definitions`).

use serde_json::{Map, Value, json};

use super::ImportError;

/// Which specification a document follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Swagger 2.0.
    Swagger2,
    /// OpenAPI 3.0.x.
    OpenApi30,
    /// OpenAPI 3.1.x.
    OpenApi31,
}

/// A parsed document.
pub struct Document {
    /// The whole document (the root every `$ref` points into).
    pub root: Value,
    /// Its version.
    pub version: Version,
}

/// Parse the `spec` of an import request: a JSON or YAML text, or the document itself.
pub fn load(spec: &Value) -> Result<Document, ImportError> {
    let root = match spec {
        Value::Object(_) => spec.clone(),
        Value::String(text) => parse_text(text)?,
        _ => {
            return Err(ImportError::invalid(
                "spec",
                "spec is the document: YAML or JSON text, or the JSON object",
            ));
        }
    };
    let version = detect(&root)?;
    Ok(Document { root, version })
}

fn parse_text(text: &str) -> Result<Value, ImportError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(text).map_err(|e| {
            ImportError::invalid(
                "spec",
                format!("line {}, column {}: {e}", e.line(), e.column()),
            )
        });
    }
    let v: Value = yaml_serde::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
            .unwrap_or_default();
        ImportError::invalid("spec", format!("{at}{e}"))
    })?;
    if !v.is_object() {
        return Err(ImportError::invalid(
            "spec",
            "the document must be a mapping with 'openapi' or 'swagger' at the top",
        ));
    }
    Ok(v)
}

fn detect(root: &Value) -> Result<Version, ImportError> {
    let text = |k: &str| match root.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let version = match (text("openapi"), text("swagger")) {
        (Some(v), _) if v.starts_with("3.0") => Version::OpenApi30,
        (Some(v), _) if v.starts_with("3.1") => Version::OpenApi31,
        (None, Some(v)) if v == "2.0" || v == "2" => Version::Swagger2,
        (Some(v), _) | (None, Some(v)) => {
            return Err(ImportError::invalid(
                "openapi",
                format!("version '{v}' is not supported: Swagger 2.0, OpenAPI 3.0 and 3.1 are"),
            ));
        }
        (None, None) => {
            return Err(ImportError::invalid(
                "openapi",
                "neither 'openapi' nor 'swagger' says which version this document follows",
            ));
        }
    };
    match root.get("paths") {
        Some(Value::Object(_)) => Ok(version),
        _ => Err(ImportError::invalid(
            "paths",
            "the document has no 'paths' object",
        )),
    }
}

impl Document {
    /// The document's title (which identifies its imports).
    pub fn title(&self) -> String {
        self.root
            .pointer("/info/title")
            .and_then(Value::as_str)
            .unwrap_or("untitled")
            .to_string()
    }

    /// Follow a `$ref` chain to the object it names (for parameters and request bodies).
    pub fn deref<'a>(&'a self, v: &'a Value) -> Result<&'a Value, String> {
        let mut cur = v;
        for _ in 0..16 {
            match cur.get("$ref").and_then(Value::as_str) {
                None => return Ok(cur),
                Some(r) => {
                    let pointer = r
                        .strip_prefix('#')
                        .ok_or_else(|| format!("'$ref: {r}' is not local"))?;
                    cur = self
                        .root
                        .pointer(pointer)
                        .ok_or_else(|| format!("'$ref: {r}' points at nothing"))?;
                }
            }
        }
        Err("a $ref chain longer than 16".into())
    }

    /// A schema with every local `$ref` resolved, `allOf` merged and recursion cut; Swagger 2.0
    /// and OpenAPI 3.0 spellings (`nullable`, `x-nullable`) turned into JSON Schema.
    pub fn schema(&self, v: &Value) -> Result<Value, String> {
        let resolved = crate::schema::resolve_refs(&self.root, v)?;
        Ok(normalize_schema(resolved))
    }

    /// The base URL of the API: `base_url`, else the first server (variables at their defaults).
    pub fn server_url(&self, base_url: Option<&str>, op: &Value) -> Result<String, ImportError> {
        if let Some(b) = base_url {
            return Ok(b.trim_end_matches('/').to_string());
        }
        let url = match self.version {
            Version::Swagger2 => {
                let host = self.root.get("host").and_then(Value::as_str);
                let base = self
                    .root
                    .get("basePath")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let scheme = self
                    .root
                    .pointer("/schemes/0")
                    .and_then(Value::as_str)
                    .unwrap_or("https");
                match host {
                    Some(h) => format!("{scheme}://{h}{base}"),
                    None => base.to_string(),
                }
            }
            _ => {
                let server = op
                    .pointer("/servers/0")
                    .or_else(|| self.root.pointer("/servers/0"));
                match server {
                    None => String::new(),
                    Some(s) => {
                        let mut url = s
                            .get("url")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        if let Some(Value::Object(vars)) = s.get("variables") {
                            for (name, var) in vars {
                                let default =
                                    var.get("default").and_then(Value::as_str).unwrap_or("");
                                url = url.replace(&format!("{{{name}}}"), default);
                            }
                        }
                        url
                    }
                }
            }
        };
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(url.trim_end_matches('/').to_string())
        } else {
            Err(ImportError::invalid(
                "base_url",
                format!(
                    "the document's server URL '{url}' is not absolute: give base_url (e.g. https://api.example.com{url})"
                ),
            ))
        }
    }

    /// Security schemes by name (`components.securitySchemes`, or `securityDefinitions`).
    pub fn security_schemes(&self) -> Map<String, Value> {
        let at = match self.version {
            Version::Swagger2 => "/securityDefinitions",
            _ => "/components/securitySchemes",
        };
        self.root
            .pointer(at)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
}

/// OpenAPI 3.0's `nullable: true` and Swagger's `x-nullable` as a JSON Schema type union;
/// extension keywords (`x-…`), `discriminator`, `xml` and `externalDocs` dropped.
fn normalize_schema(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let nullable = m.get("nullable") == Some(&json!(true))
                || m.get("x-nullable") == Some(&json!(true));
            let mut out = Map::new();
            for (k, x) in m {
                if k.starts_with("x-")
                    || matches!(
                        k.as_str(),
                        "nullable" | "discriminator" | "xml" | "externalDocs" | "example"
                    )
                {
                    continue;
                }
                let x = match k.as_str() {
                    // Property names and enum values are data, not schemas.
                    "properties" => Value::Object(
                        x.as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(n, s)| (n.clone(), normalize_schema(s.clone())))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    "enum" | "default" | "const" | "required" | "examples" => x,
                    _ => normalize_schema(x),
                };
                out.insert(k, x);
            }
            if nullable {
                let mut v = Value::Object(out);
                crate::schema::make_nullable(&mut v);
                return v;
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(normalize_schema).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_errors() {
        let d = load(&json!(
            "openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths: {}\n"
        ))
        .unwrap();
        assert_eq!(d.version, Version::OpenApi30);
        assert_eq!(d.title(), "T");
        assert_eq!(
            load(&json!({"swagger": "2.0", "paths": {}}))
                .unwrap()
                .version,
            Version::Swagger2
        );
        assert_eq!(
            load(&json!({"openapi": "3.1.0", "paths": {}}))
                .unwrap()
                .version,
            Version::OpenApi31
        );
        let e = load(&json!({"openapi": "4.0", "paths": {}})).err().unwrap();
        assert!(e.details[0].message.contains("not supported"), "{e:?}");
        let e = load(&json!("openapi: 3.0.0\npaths:\n  /a: [\n"))
            .err()
            .unwrap();
        let d = format!("{:?}", e);
        assert!(d.contains("line"), "{d}");
        assert!(load(&json!(5)).is_err());
    }

    #[test]
    fn nullable_becomes_a_type_union() {
        let v = normalize_schema(json!({"type": "string", "nullable": true, "x-go-type": "s"}));
        assert_eq!(v, json!({"type": ["string", "null"]}));
    }
}
