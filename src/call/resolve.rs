//! Step 2: give every field its value: arguments, static values, context paths and, at the
//! last moment, secrets. Every secret value used is remembered so history can redact it.

use serde_json::{Map, Value};

use super::args::coerce;
use crate::model::validate::placeholders;
use crate::model::{Field, ValueType, WebhookSpec};
use crate::store::{Store, StoreError};

/// Why a webhook could not be filled in.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The calling application did not supply a context value.
    #[error("missing context value '{0}'")]
    MissingContext(String),
    /// A value does not fit its field.
    #[error("{field}: {message}")]
    BadValue {
        /// Field path.
        field: String,
        /// Problem.
        message: String,
    },
    /// A referenced secret is not stored.
    #[error("secret '{0}' is not set")]
    MissingSecret(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Field values per list, in definition order; absent optional values are left out.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Header name and value.
    pub headers: Vec<(String, Value)>,
    /// Query name and value.
    pub query: Vec<(String, Value)>,
    /// Path param name and value.
    pub path: Vec<(String, Value)>,
    /// Body name (maybe dotted) and value.
    pub body: Vec<(String, Value)>,
    /// Secret values used, for redaction.
    pub secrets: Vec<String>,
}

/// Look up a dotted path (`user.id`, `items.0.name`) in a JSON value.
pub fn lookup_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |cur, seg| match cur {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A scalar as text, the way it goes into URLs, headers and templates.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

struct Ctx<'a> {
    args: &'a Map<String, Value>,
    context: &'a Value,
    store: &'a dyn Store,
    secrets: Vec<String>,
}

impl Ctx<'_> {
    fn secret(&mut self, name: &str) -> Result<String, ResolveError> {
        let v = self
            .store
            .secret_value(name)?
            .ok_or_else(|| ResolveError::MissingSecret(name.to_string()))?;
        if !self.secrets.contains(&v) {
            self.secrets.push(v.clone());
        }
        Ok(v)
    }

    fn context(&self, path: &str) -> Result<Value, ResolveError> {
        match lookup_path(self.context, path) {
            None | Some(Value::Null) => Err(ResolveError::MissingContext(path.to_string())),
            Some(v) => Ok(v.clone()),
        }
    }

    fn field(&mut self, list: &str, i: usize, f: &Field) -> Result<Option<Value>, ResolveError> {
        let typed = |v: Value| {
            coerce(f.data_type, &v).map_err(|m| ResolveError::BadValue {
                field: format!("{list}[{i}]"),
                message: m,
            })
        };
        match f.value_type {
            ValueType::Dynamic => Ok(self.args.get(&f.name).cloned()),
            ValueType::Secret => {
                let name = f.secret.as_deref().unwrap_or_default();
                let v = self.secret(name)?;
                typed(Value::String(v)).map(Some)
            }
            ValueType::Context => {
                let path = f.value.as_ref().and_then(Value::as_str).unwrap_or_default();
                let v = self.context(path)?;
                if matches!(v, Value::Array(_) | Value::Object(_)) {
                    return Err(ResolveError::BadValue {
                        field: format!("context.{path}"),
                        message: "context value must be a scalar".into(),
                    });
                }
                typed(v).map(Some)
            }
            ValueType::Static => match &f.value {
                Some(Value::String(s)) if s.contains("{{") => {
                    let mut out = String::with_capacity(s.len());
                    let mut rest = s.as_str();
                    for p in placeholders(s).into_iter().flatten() {
                        let Some(start) = rest.find("{{") else { break };
                        let Some(end) = rest[start..].find("}}") else {
                            break;
                        };
                        out.push_str(&rest[..start]);
                        let value = if p.0 == "secret" {
                            self.secret(&p.1)?
                        } else {
                            scalar_text(&self.context(&p.1)?)
                        };
                        out.push_str(&value);
                        rest = &rest[start + end + 2..];
                    }
                    out.push_str(rest);
                    typed(Value::String(out)).map(Some)
                }
                Some(v) => Ok(Some(v.clone())),
                None => Ok(None),
            },
        }
    }
}

/// Fill in every field of `spec` for one call.
pub fn resolve(
    spec: &WebhookSpec,
    args: &Map<String, Value>,
    context: &Value,
    store: &dyn Store,
) -> Result<Resolved, ResolveError> {
    let mut ctx = Ctx {
        args,
        context,
        store,
        secrets: Vec::new(),
    };
    let mut out = Resolved::default();
    for (list, fields, dest) in [
        ("headers", &spec.headers, &mut out.headers),
        ("query_params", &spec.query_params, &mut out.query),
        ("path_params", &spec.path_params, &mut out.path),
        ("body", &spec.body, &mut out.body),
    ] {
        for (i, f) in fields.iter().enumerate() {
            if let Some(v) = ctx.field(list, i, f)? {
                dest.push((f.name.clone(), v));
            }
        }
    }
    out.secrets = ctx.secrets;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let v = json!({"user": {"id": 7, "tags": ["a", "b"]}});
        assert_eq!(lookup_path(&v, "user.id"), Some(&json!(7)));
        assert_eq!(lookup_path(&v, "user.tags.1"), Some(&json!("b")));
        assert_eq!(lookup_path(&v, "user.missing"), None);
        assert_eq!(lookup_path(&v, "user.tags.x"), None);
    }
}
