//! Placeholders and the templates that hold them, parsed once. One scanner serves validation
//! (every problem, with its message) and compilation (the parsed form the call path renders
//! without scanning a string again).
//!
//! Forms: `{{ args.NAME }}`, `{{ context.PATH }}`, `{{ secret.NAME }}` in static values and body
//! templates; `{name}` in a webhook URL's path.

use serde_json::{Map, Value};

use super::names::{SecretName, is_dotted_path, is_identifier};

/// One `{{ kind.name }}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    /// An argument supplied by the model (body templates only).
    Args(String),
    /// A dotted path into the calling application's context.
    Context(String),
    /// A stored secret, by name.
    Secret(SecretName),
}

impl Placeholder {
    /// The secret's name, for a secret placeholder.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Placeholder::Secret(n) => Some(n),
            _ => None,
        }
    }
}

/// A piece of a parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text sent as written.
    Literal(String),
    /// A value filled in at call time.
    Hole(Placeholder),
}

/// A string with placeholders, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Literal text and placeholders in order.
    pub segments: Vec<Segment>,
}

impl Template {
    /// Parse `s`: the template, or every problem in it.
    pub fn parse(s: &str) -> Result<Template, Vec<String>> {
        let mut segments = Vec::new();
        let mut errors = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                segments.push(Segment::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            // The closing braces are searched after the opening ones: a `}}` earlier is literal.
            let Some(end) = after.find("}}") else {
                errors.push("unclosed '{{' placeholder".to_string());
                rest = "";
                break;
            };
            let inner = after[..end].trim();
            match parse_placeholder(inner) {
                Some(p) => segments.push(Segment::Hole(p)),
                None => errors.push(format!(
                    "placeholder '{{{{ {inner} }}}}' must be {{{{ secret.NAME }}}}, {{{{ context.PATH }}}} or {{{{ args.NAME }}}}"
                )),
            }
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_string()));
        }
        if errors.is_empty() {
            Ok(Template { segments })
        } else {
            Err(errors)
        }
    }

    /// Whether the text holds any placeholder at all.
    pub fn has_holes(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Hole(_)))
    }

    /// The placeholder when the template is exactly one (surrounding blanks allowed): its value
    /// then keeps its JSON type instead of becoming text.
    pub fn sole_placeholder(&self) -> Option<&Placeholder> {
        let mut holes = self.placeholders();
        let first = holes.next()?;
        let only_blank_text = self.segments.iter().all(|s| {
            matches!(s, Segment::Hole(_)) || matches!(s, Segment::Literal(t) if t.trim().is_empty())
        });
        (holes.next().is_none() && only_blank_text).then_some(first)
    }

    /// Every placeholder, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Hole(p) => Some(p),
            Segment::Literal(_) => None,
        })
    }
}

fn parse_placeholder(inner: &str) -> Option<Placeholder> {
    match inner.split_once('.')? {
        ("secret", name) => SecretName::parse(name).ok().map(Placeholder::Secret),
        ("context", path) if is_dotted_path(path) => Some(Placeholder::Context(path.to_string())),
        ("args", name) if is_identifier(name) => Some(Placeholder::Args(name.to_string())),
        _ => None,
    }
}

/// A JSON body template: its structure kept, every string parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    /// A string, parsed.
    Text(Template),
    /// An array of templates.
    Array(Vec<JsonTemplate>),
    /// An object whose values are templates (keys are literal).
    Object(Vec<(String, JsonTemplate)>),
    /// A number, boolean or null, sent as is.
    Literal(Value),
}

impl JsonTemplate {
    /// Parse every string of `v`; all problems at once.
    pub fn parse(v: &Value) -> Result<JsonTemplate, Vec<String>> {
        Ok(match v {
            Value::String(s) => JsonTemplate::Text(Template::parse(s)?),
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                let mut errors = Vec::new();
                for x in a {
                    match JsonTemplate::parse(x) {
                        Ok(t) => out.push(t),
                        Err(e) => errors.extend(e),
                    }
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                JsonTemplate::Array(out)
            }
            Value::Object(m) => {
                let mut out = Vec::with_capacity(m.len());
                let mut errors = Vec::new();
                for (k, x) in m {
                    match JsonTemplate::parse(x) {
                        Ok(t) => out.push((k.clone(), t)),
                        Err(e) => errors.extend(e),
                    }
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                JsonTemplate::Object(out)
            }
            other => JsonTemplate::Literal(other.clone()),
        })
    }

    /// Every placeholder, in document order.
    pub fn placeholders(&self) -> Vec<&Placeholder> {
        let mut out = Vec::new();
        fn walk<'a>(t: &'a JsonTemplate, out: &mut Vec<&'a Placeholder>) {
            match t {
                JsonTemplate::Text(s) => out.extend(s.placeholders()),
                JsonTemplate::Array(a) => a.iter().for_each(|x| walk(x, out)),
                JsonTemplate::Object(m) => m.iter().for_each(|(_, x)| walk(x, out)),
                JsonTemplate::Literal(_) => {}
            }
        }
        walk(self, &mut out);
        out
    }

    /// Fill in the template with `fill`, which gives each placeholder's value.
    pub fn render<E>(
        &self,
        fill: &mut dyn FnMut(&Placeholder) -> Result<Value, E>,
    ) -> Result<Value, E> {
        Ok(match self {
            JsonTemplate::Text(t) => render_text(t, fill)?,
            JsonTemplate::Array(a) => {
                Value::Array(a.iter().map(|x| x.render(fill)).collect::<Result<_, _>>()?)
            }
            JsonTemplate::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), x.render(fill)?);
                }
                Value::Object(out)
            }
            JsonTemplate::Literal(v) => v.clone(),
        })
    }
}

/// A string template's value: a sole placeholder keeps its JSON type; otherwise values are
/// inserted as text. Working on the JSON tree (not on text) means no value can escape its string.
pub fn render_text<E>(
    t: &Template,
    fill: &mut dyn FnMut(&Placeholder) -> Result<Value, E>,
) -> Result<Value, E> {
    if let Some(p) = t.sole_placeholder() {
        return fill(p);
    }
    let mut out = String::new();
    for s in &t.segments {
        match s {
            Segment::Literal(text) => out.push_str(text),
            Segment::Hole(p) => out.push_str(&scalar_str(&fill(p)?)),
        }
    }
    Ok(Value::String(out))
}

/// A scalar as text, the way it goes into URLs, headers and templates.
pub fn scalar_text(v: &Value) -> String {
    scalar_str(v).into_owned()
}

/// `scalar_text` borrowed from a string value (no copy where the text is only read).
pub fn scalar_str(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        Value::Null => std::borrow::Cow::Borrowed(""),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// A webhook URL with `{name}` path placeholders, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    /// Literal URL text and parameter names in order.
    pub segments: Vec<UrlSegment>,
}

/// A piece of a URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSegment {
    /// URL text.
    Literal(String),
    /// A path parameter's name.
    Param(String),
}

impl UrlTemplate {
    /// Parse `{name}` placeholders; an unclosed `{` holds the rest of the URL as its name, so the
    /// validator can say so.
    pub fn parse(url: &str) -> UrlTemplate {
        let mut segments = Vec::new();
        let mut rest = url;
        while let Some(start) = rest.find('{') {
            if start > 0 {
                segments.push(UrlSegment::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 1..];
            match after.find('}') {
                Some(end) => {
                    segments.push(UrlSegment::Param(after[..end].to_string()));
                    rest = &after[end + 1..];
                }
                None => {
                    segments.push(UrlSegment::Param(after.to_string()));
                    rest = "";
                }
            }
        }
        if !rest.is_empty() {
            segments.push(UrlSegment::Literal(rest.to_string()));
        }
        UrlTemplate { segments }
    }

    /// Parameter names in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            UrlSegment::Param(p) => Some(p.as_str()),
            UrlSegment::Literal(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fill(p: &Placeholder) -> Result<Value, ()> {
        Ok(match p {
            Placeholder::Args(n) => json!(format!("A:{n}")),
            Placeholder::Context(path) if path == "n" => json!(5),
            Placeholder::Context(path) => json!(format!("C:{path}")),
            Placeholder::Secret(n) => json!(format!("S:{n}")),
        })
    }

    #[test]
    fn each_form_parses() {
        let t = Template::parse("Bearer {{ secret.crm_token }} for {{context.user.id}} {{args.x}}")
            .unwrap();
        let ps: Vec<&Placeholder> = t.placeholders().collect();
        assert_eq!(
            ps,
            [
                &Placeholder::Secret(SecretName::parse("crm_token").unwrap()),
                &Placeholder::Context("user.id".into()),
                &Placeholder::Args("x".into())
            ]
        );
        assert!(Template::parse("no placeholders").unwrap().segments.len() == 1);
        assert!(!Template::parse("plain").unwrap().has_holes());
        assert_eq!(Template::parse("").unwrap().segments, vec![]);
    }

    #[test]
    fn malformed_forms_say_why() {
        for bad in [
            "{{ secret.x",
            "{{ env.HOME }}",
            "{{ secret.a-b }}",
            "{{ context. }}",
            "{{}}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Template::parse("{{ a }} {{ b }}").unwrap_err().len(), 2);
    }

    #[test]
    fn closing_braces_before_a_placeholder_are_literal() {
        let t = Template::parse("a}} {{ args.x }} b").unwrap();
        assert_eq!(render_text(&t, &mut fill).unwrap(), json!("a}} A:x b"));
    }

    #[test]
    fn sole_placeholder_keeps_its_type() {
        let t = Template::parse(" {{ context.n }} ").unwrap();
        assert_eq!(render_text(&t, &mut fill).unwrap(), json!(5));
        let t = Template::parse("n={{ context.n }}").unwrap();
        assert_eq!(render_text(&t, &mut fill).unwrap(), json!("n=5"));
    }

    #[test]
    fn json_templates_keep_structure() {
        let t = JsonTemplate::parse(
            &json!({"a": ["{{ args.x }}", 1, null], "b": {"c": "k {{ secret.s }}"}}),
        )
        .unwrap();
        assert_eq!(t.placeholders().len(), 2);
        assert_eq!(
            t.render(&mut fill).unwrap(),
            json!({"a": ["A:x", 1, null], "b": {"c": "k S:s"}})
        );
    }

    #[test]
    fn url_templates() {
        let u = UrlTemplate::parse("http://x/a/{b}/c/{d}?q=1");
        assert_eq!(u.params().collect::<Vec<_>>(), ["b", "d"]);
        assert_eq!(
            UrlTemplate::parse("http://x/{open")
                .params()
                .collect::<Vec<_>>(),
            ["open"]
        );
    }
}
