//! Step 2: give every field its value: arguments, static values, context paths and, at the
//! last moment, secrets. Every secret value used is remembered so history can redact it.

use serde_json::{Map, Value};

use super::args::coerce_owned;
use crate::catalog::{CompiledField, CompiledWebhook, FieldSource};
use crate::model::template::{Placeholder, Segment};
use crate::model::{BodyEncoding, QueryStyle};
// foldhash: these maps are looked up on every call, and SipHash cost more than the lookups.
use foldhash::HashMap;
use std::sync::Arc;

use crate::store::StoreError;

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
    /// The secret has no value for the subject the context names.
    #[error("secret '{name}' has no value for the subject '{subject}'")]
    MissingSubjectValue {
        /// Secret name.
        name: String,
        /// The subject from the context.
        subject: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Field values per list, in definition order; absent optional values are left out. Names are
/// the webhook's own (borrowed: a call copies none).
#[derive(Debug, Default)]
pub struct Resolved<'a> {
    /// Header name and value.
    pub headers: Vec<(&'a str, Value)>,
    /// Query name and value.
    pub query: Vec<(&'a str, Value)>,
    /// Path param name and value.
    pub path: Vec<(&'a str, Value)>,
    /// Body name (maybe dotted) and value.
    pub body: Vec<(&'a str, Value)>,
    /// The rendered `body_template`, when the webhook has one.
    pub template_body: Option<Value>,
    /// Secret values used, for redaction.
    pub secrets: Vec<String>,
    /// Names of headers whose value came from a secret or the context.
    pub sensitive_headers: Vec<&'a str>,
    /// Whether the body carries a secret or context value.
    pub body_sensitive: bool,
}

/// Look up a dotted path (`user.id`, `items.0.name`) in a JSON value.
pub fn lookup_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |cur, seg| match cur {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

pub use crate::model::template::{scalar_str, scalar_text};

struct Ctx<'a> {
    args: &'a Map<String, Value>,
    context: &'a Value,
    opened: &'a HashMap<String, Arc<str>>,
    secrets: Vec<String>,
}

impl Ctx<'_> {
    fn secret(&mut self, name: &str) -> Result<String, ResolveError> {
        let v = self
            .opened
            .get(name)
            .ok_or_else(|| ResolveError::MissingSecret(name.to_string()))?;
        if !self.secrets.iter().any(|s| s.as_str() == &**v) {
            self.secrets.push(v.to_string());
        }
        Ok(v.to_string())
    }

    fn context(&self, path: &str) -> Result<Value, ResolveError> {
        match lookup_path(self.context, path) {
            None | Some(Value::Null) => Err(ResolveError::MissingContext(path.to_string())),
            Some(v) => Ok(v.clone()),
        }
    }

    /// The value of one placeholder.
    fn placeholder(&mut self, p: &Placeholder) -> Result<Value, ResolveError> {
        match p {
            Placeholder::Secret(name) => Ok(Value::String(self.secret(name)?)),
            Placeholder::Context(path) => self.context(path),
            Placeholder::Args(name) => Ok(self.args.get(name).cloned().unwrap_or(Value::Null)),
        }
    }

    fn field(
        &mut self,
        list: &str,
        i: usize,
        f: &CompiledField,
    ) -> Result<Option<Value>, ResolveError> {
        let typed = |v: Value| {
            coerce_owned(f.data_type, v).map_err(|m| ResolveError::BadValue {
                field: format!("{list}[{i}]"),
                message: m,
            })
        };
        match &f.source {
            FieldSource::Dynamic => Ok(self.args.get(&f.argument).cloned()),
            FieldSource::Secret(name) => {
                let v = match &f.subject {
                    None => self.secret(name)?,
                    Some(path) => {
                        let subject = subject_of(self.context, path)?;
                        let v = self
                            .opened
                            .get(&crate::store::secret_cache::subject_key(name, &subject))
                            .ok_or_else(|| ResolveError::MissingSubjectValue {
                                name: name.to_string(),
                                subject: subject.clone(),
                            })?
                            .to_string();
                        if !self.secrets.contains(&v) {
                            self.secrets.push(v.clone());
                        }
                        v
                    }
                };
                typed(Value::String(v)).map(Some)
            }
            FieldSource::Context(path) => {
                let v = self.context(path)?;
                if f.sensitive {
                    // Redacted like a secret wherever the call is shown.
                    let text = scalar_text(&v);
                    if !text.is_empty() && !self.secrets.contains(&text) {
                        self.secrets.push(text);
                    }
                }
                if f.data_type.is_scalar() && matches!(v, Value::Array(_) | Value::Object(_)) {
                    return Err(ResolveError::BadValue {
                        field: format!("context.{path}"),
                        message: "context value must be a scalar".into(),
                    });
                }
                typed(v).map(Some)
            }
            FieldSource::StaticTemplate(t) => {
                // A static value is text: every placeholder is inserted as text.
                let mut out = String::new();
                for seg in &t.segments {
                    match seg {
                        Segment::Literal(text) => out.push_str(text),
                        Segment::Hole(p) => out.push_str(&scalar_str(&self.placeholder(p)?)),
                    }
                }
                typed(Value::String(out)).map(Some)
            }
            FieldSource::Static(v) => Ok(Some(v.clone())),
        }
    }
}

/// The subject a context path names: a non-empty scalar.
pub fn subject_of(context: &Value, path: &str) -> Result<String, ResolveError> {
    match lookup_path(context, path) {
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
            let s = scalar_text(v);
            if s.is_empty() {
                Err(ResolveError::MissingContext(path.to_string()))
            } else {
                Ok(s)
            }
        }
        _ => Err(ResolveError::MissingContext(path.to_string())),
    }
}

/// Fill in every field of `hook` for one call; `opened` holds the values of the secrets it uses
/// (a missing one fails the call).
pub fn resolve<'a>(
    hook: &'a CompiledWebhook,
    args: &Map<String, Value>,
    context: &Value,
    opened: &HashMap<String, Arc<str>>,
) -> Result<Resolved<'a>, ResolveError> {
    let mut ctx = Ctx {
        args,
        context,
        opened,
        secrets: Vec::new(),
    };
    let mut out = Resolved::default();
    for (list, fields, dest) in [
        ("headers", &hook.headers, &mut out.headers),
        ("query_params", &hook.query, &mut out.query),
        ("path_params", &hook.path, &mut out.path),
        ("body", &hook.body, &mut out.body),
    ] {
        if list == "body" && hook.body_template.is_some() {
            continue; // body entries only declare the template's arguments
        }
        for (i, f) in fields.iter().enumerate() {
            if let Some(v) = ctx.field(list, i, f)? {
                if f.source.carries_secret_or_context() {
                    match list {
                        "headers" => out.sensitive_headers.push(&f.name),
                        "body" => out.body_sensitive = true,
                        _ => {}
                    }
                }
                let flat = list == "query_params"
                    || (list == "body" && hook.webhook.spec.body_encoding == BodyEncoding::Form);
                match v {
                    // An array in a query string or form body: the key repeated, or one
                    // comma-joined value.
                    Value::Array(items) if flat && f.style == QueryStyle::Comma => {
                        let joined: Vec<String> = items.iter().map(scalar_text).collect();
                        dest.push((&f.name, Value::String(joined.join(","))));
                    }
                    Value::Array(items) if flat => {
                        dest.extend(items.into_iter().map(|x| (f.name.as_str(), x)));
                    }
                    v => dest.push((&f.name, v)),
                }
            }
        }
    }
    if let Some(t) = &hook.body_template {
        out.template_body = Some(t.render(&mut |p| ctx.placeholder(p))?);
        out.body_sensitive |= t
            .placeholders()
            .iter()
            .any(|p| !matches!(p, Placeholder::Args(_)));
    }
    out.secrets = ctx.secrets;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_values_stay_inside_their_strings() {
        let args: Map<String, Value> = serde_json::from_value(json!({
            "text": "He said \"hi\"\n}, \"evil\": {\"x\": 1} é 😀", "n": 5}))
        .unwrap();
        let ctx_value = json!({"tags": {"phone_number": "+4912345"}});
        let opened = HashMap::default();
        let mut ctx = Ctx {
            args: &args,
            context: &ctx_value,
            opened: &opened,
            secrets: Vec::new(),
        };
        let t = json!({"body": "{{ args.text }}", "count": "{{ args.n }}", "label": "n={{ args.n }}!",
                       "recipientList": [{"recipientNo": "{{ context.tags.phone_number }}"}]});
        let t = crate::model::template::JsonTemplate::parse(&t).unwrap();
        let out = t.render(&mut |p| ctx.placeholder(p)).unwrap();
        assert_eq!(out["body"], json!(args["text"]));
        assert_eq!(out["count"], json!(5));
        assert_eq!(out["label"], "n=5!");
        assert_eq!(out["recipientList"][0]["recipientNo"], "+4912345");
        // A literal `}}` before a placeholder stays where it is.
        let t = crate::model::template::JsonTemplate::parse(&json!("a}} {{ args.n }} b")).unwrap();
        assert_eq!(
            t.render(&mut |p| ctx.placeholder(p)).unwrap(),
            json!("a}} 5 b")
        );
        let text = out.to_string();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back.as_object().unwrap().len(),
            4,
            "no injected keys: {text}"
        );
    }

    #[test]
    fn paths() {
        let v = json!({"user": {"id": 7, "tags": ["a", "b"]}});
        assert_eq!(lookup_path(&v, "user.id"), Some(&json!(7)));
        assert_eq!(lookup_path(&v, "user.tags.1"), Some(&json!("b")));
        assert_eq!(lookup_path(&v, "user.missing"), None);
        assert_eq!(lookup_path(&v, "user.tags.x"), None);
    }
}
