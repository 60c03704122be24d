//! Step 3: turn resolved values into the exact HTTP request: path segments percent-encoded,
//! query, headers, and a typed JSON (dotted names nest) or form body.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use super::resolve::{Resolved, scalar_str, scalar_text};
use super::target::Target;
use crate::catalog::CompiledWebhook;
use crate::model::template::UrlSegment;
use crate::model::{BodyEncoding, Method};

/// Everything but RFC 3986 unreserved characters is encoded inside a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// Method.
    pub method: Method,
    /// Full URL.
    pub url: Target,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Per header: whether its value came from a secret or the context (never re-sent to
    /// another origin on a redirect).
    pub sensitive_headers: Vec<bool>,
    /// Whether the body carries a secret or context value.
    pub body_sensitive: bool,
    /// Body bytes and content type.
    pub body: Option<(Vec<u8>, &'static str)>,
    /// The body as recorded in history (JSON, or the form text).
    pub recorded_body: Value,
}

/// Why rendering failed (a value that cannot go where it must).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RenderError {
    /// Field name.
    pub field: String,
    /// Problem.
    pub message: String,
}

fn segment(name: &str, v: &Value) -> Result<String, RenderError> {
    let text = scalar_str(v);
    if text.is_empty() || text == "." || text == ".." {
        return Err(RenderError {
            field: name.to_string(),
            message: "a path segment cannot be empty, '.' or '..'".into(),
        });
    }
    Ok(utf8_percent_encode(&text, SEGMENT).to_string())
}

/// Whether `http::HeaderValue::from_str` would take `text` (checked without building one):
/// no control character but tab, no DEL.
fn can_be_header_value(text: &str) -> bool {
    text.bytes().all(|b| (b >= 32 && b != 127) || b == b'\t')
}

fn insert_nested(root: &mut Map<String, Value>, dotted: &str, v: Value) {
    let mut parts = dotted.split('.').peekable();
    let mut cur = root;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_string(), v);
            return;
        }
        let next = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        match next {
            Value::Object(m) => cur = m,
            _ => return,
        }
    }
}

/// `url` (rendered from `hook`'s template) as a target: on plain HTTP what follows the webhook's
/// origin is put after it as it is when the parser would keep it so (`Target::join_verbatim`;
/// HTTPS goes through reqwest, which needs the URL parsed anyway), else
/// parsed against it when that gives the same URL as parsing the whole text, which is when it
/// starts a path (not `//`, which would name another authority), a query or a fragment, and
/// holds no tab or newline (the parser drops those, which could make `/<tab>/` a `//`).
fn parse_url(hook: &CompiledWebhook, url: &str) -> Result<Target, url::ParseError> {
    if let Some((origin, len)) = hook.origin()
        && let Some(rest) = url.get(len..)
    {
        if origin.scheme() == "http"
            && let Some(joined) = Target::join_verbatim(origin, rest)
        {
            return Ok(joined);
        }
        if joins_to_the_same(rest) {
            return origin.join(rest).map(Target::from);
        }
    }
    Target::parse(url)
}

/// Whether `rest`, joined to an origin, parses as it would at the end of the origin's text.
fn joins_to_the_same(rest: &str) -> bool {
    let b = rest.as_bytes();
    let starts_well = match b.first() {
        None | Some(b'?' | b'#') => true,
        Some(b'/') => !matches!(b.get(1), Some(b'/' | b'\\')),
        _ => false,
    };
    starts_well && !b.iter().any(|c| matches!(c, b'\t' | b'\n' | b'\r'))
}

/// Render the request for `hook` from resolved values.
pub fn render(hook: &CompiledWebhook, r: &Resolved) -> Result<PreparedRequest, RenderError> {
    let spec = &hook.webhook.spec;
    let mut segments: Vec<(&str, String)> = Vec::with_capacity(r.path.len());
    for (name, v) in &r.path {
        segments.push((*name, segment(name, v)?));
    }
    let mut url = String::with_capacity(spec.url.len() + 32);
    for part in &hook.url.segments {
        match part {
            UrlSegment::Literal(text) => url.push_str(text),
            UrlSegment::Param(name) => match segments.iter().position(|(n, _)| n == name) {
                Some(i) => url.push_str(&segments.remove(i).1),
                None => {
                    url.push('{');
                    url.push_str(name);
                    url.push('}');
                }
            },
        }
    }
    // Path params without a placeholder are appended as segments, before any query.
    if !segments.is_empty() {
        let after_authority = url.find("://").map(|i| i + 3).unwrap_or(0);
        let split = url[after_authority..]
            .find(['?', '#'])
            .map(|i| i + after_authority)
            .unwrap_or(url.len());
        let (head, tail) = url.split_at(split);
        let mut head = head.to_string();
        for (_, s) in segments {
            if !head.ends_with('/') {
                head.push('/');
            }
            head.push_str(&s);
        }
        url = head + tail;
    }
    let mut url = parse_url(hook, &url).map_err(|e| RenderError {
        field: "url".into(),
        message: format!("rendered URL is invalid: {e}"),
    })?;
    if !r.query.is_empty() {
        url.append_query_pairs(r.query.iter().map(|(name, v)| (*name, scalar_str(v))));
    }
    let mut headers = Vec::with_capacity(r.headers.len());
    let sensitive_headers = r
        .headers
        .iter()
        .map(|(name, _)| r.sensitive_headers.contains(name))
        .collect();
    for (name, v) in &r.headers {
        let text = scalar_text(v);
        if !can_be_header_value(&text) {
            return Err(RenderError {
                field: name.to_string(),
                message: "value cannot be sent in an HTTP header".into(),
            });
        }
        headers.push((name.to_string(), text));
    }
    let (body, recorded_body) = if let Some(t) = &r.template_body {
        (
            Some((t.to_string().into_bytes(), "application/json")),
            t.clone(),
        )
    } else if r.body.is_empty() && spec.body.is_empty() {
        (None, Value::Null)
    } else {
        match spec.body_encoding {
            BodyEncoding::Json => {
                let mut root = Map::new();
                for (name, v) in &r.body {
                    insert_nested(&mut root, name, v.clone());
                }
                let v = Value::Object(root);
                (Some((v.to_string().into_bytes(), "application/json")), v)
            }
            BodyEncoding::Form => {
                let pairs: Vec<(&str, String)> =
                    r.body.iter().map(|(n, v)| (*n, scalar_text(v))).collect();
                let text = serde_urlencoded::to_string(&pairs).map_err(|e| RenderError {
                    field: "body".into(),
                    message: format!("the form body cannot be encoded: {e}"),
                })?;
                (
                    Some((
                        text.clone().into_bytes(),
                        "application/x-www-form-urlencoded",
                    )),
                    Value::String(text),
                )
            }
        }
    };
    Ok(PreparedRequest {
        method: spec.method,
        url,
        headers,
        sensitive_headers,
        body_sensitive: r.body_sensitive,
        body,
        recorded_body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_values_are_checked_as_the_http_crate_checks_them() {
        let mut texts: Vec<String> = (0u8..=127).map(|b| format!("a{}b", b as char)).collect();
        texts.extend(["", "café", "\u{7f}", "tab\tok", "line\nbreak", "nul\0"].map(String::from));
        for text in texts {
            assert_eq!(
                can_be_header_value(&text),
                reqwest::header::HeaderValue::from_str(&text).is_ok(),
                "{text:?}"
            );
        }
    }

    fn spec(url: &str, method: &str) -> crate::model::WebhookSpec {
        serde_json::from_value(json!({"name": "t", "method": method, "url": url})).unwrap()
    }

    fn compiled(spec: crate::model::WebhookSpec) -> CompiledWebhook {
        crate::catalog::compile_webhook(crate::model::Webhook {
            id: crate::model::WebhookId::new(),
            spec,
            created_at: String::new(),
            updated_at: String::new(),
        })
        .unwrap()
    }

    #[test]
    fn a_url_parsed_against_its_origin_is_the_url_parsed_whole() {
        let templates = [
            "http://127.0.0.1:8080/api/orders/{id}",
            "HTTP://User:Pw@EXAMPLE.com:80/a/{id}?q=1#f",
            "https://bücher.example/p/{id}",
            "http://[::1]:9/x/{id}/y",
            "http://h.example",
            "http://h.example?x=1",
            "http://h.example#frag",
            "http://h.example/a/../b/./{id}",
            "http://h.example//x/{id}",
            "http://h.example/\t/x/{id}",
            "http://h.example\\x\\{id}",
            "http://h.example/\\x/{id}",
            "http://h{id}.example/x",
            "http://h.example:{id}/x",
            "  http://h.example/x/{id}  ",
            "http://h.example/%7e%41/{id}",
        ];
        let mut joined = 0;
        for t in templates {
            let hook = compiled(spec(t, "GET"));
            for value in ["v1", "a%2Fb", "..", ""] {
                let rendered = t.replace("{id}", value);
                let whole = reqwest::Url::parse(&rendered).map(|u| u.to_string());
                let parsed = parse_url(&hook, &rendered).map(|u| u.as_str().to_string());
                assert_eq!(parsed, whole, "{t} with {value:?}");
            }
            joined += usize::from(hook.origin().is_some());
        }
        // The fast path is taken where it can be (not where a parameter is in the authority).
        assert!(joined >= 12, "only {joined} templates had an origin");
        assert!(
            compiled(spec("http://h{id}.example/x", "GET"))
                .origin()
                .is_none()
        );
    }

    #[test]
    fn plain_http_urls_are_joined_as_text_and_https_ones_parsed() {
        let joined = |t: &str, rendered: &str| {
            matches!(
                parse_url(&compiled(spec(t, "GET")), rendered),
                Ok(t) if t.is_joined()
            )
        };
        let t = "http://127.0.0.1:8080/api/orders/{id}";
        assert!(joined(t, "http://127.0.0.1:8080/api/orders/A-1001"));
        // What the parser would change is parsed.
        assert!(!joined(t, "http://127.0.0.1:8080/api/orders/a%2e"));
        assert!(!joined(
            "https://api.example/orders/{id}",
            "https://api.example/orders/A-1001"
        ));
    }

    #[test]
    fn path_segments() {
        let s = spec("https://api.example/orders/{id}/items", "GET");
        let r = Resolved {
            path: vec![
                ("id", json!("a/b c é")),
                ("extra", json!(7)),
                ("more", json!("x?y")),
            ],
            ..Default::default()
        };
        let p = render(&compiled(s.clone()), &r).unwrap();
        assert_eq!(
            p.url.as_str(),
            "https://api.example/orders/a%2Fb%20c%20%C3%A9/items/7/x%3Fy"
        );
    }

    #[test]
    fn appended_before_query_and_dot_segments_refused() {
        let s = spec("https://api.example/v1?fmt=json", "GET");
        let r = Resolved {
            path: vec![("a", json!("x"))],
            query: vec![("q", json!("1 2"))],
            ..Default::default()
        };
        assert_eq!(
            render(&compiled(s.clone()), &r).unwrap().url.as_str(),
            "https://api.example/v1/x?fmt=json&q=1+2"
        );
        let r = Resolved {
            path: vec![("a", json!(".."))],
            ..Default::default()
        };
        assert!(render(&compiled(s.clone()), &r).is_err());
    }

    #[test]
    fn nested_json_body() {
        let mut s = spec("https://api.example/t", "POST");
        s.body =
            serde_json::from_value(json!([{"name": "customer.email", "value_type": "dynamic"}]))
                .unwrap();
        let r = Resolved {
            body: vec![
                ("customer.email", json!("a@b.c")),
                ("customer.id", json!(4)),
                ("urgent", json!(true)),
            ],
            ..Default::default()
        };
        let p = render(&compiled(s.clone()), &r).unwrap();
        assert_eq!(
            p.recorded_body,
            json!({"customer": {"email": "a@b.c", "id": 4}, "urgent": true})
        );
    }

    #[test]
    fn header_injection_refused() {
        let s = spec("https://api.example/t", "GET");
        let r = Resolved {
            headers: vec![("X-A", json!("a\r\nInjected: 1"))],
            ..Default::default()
        };
        assert!(render(&compiled(s.clone()), &r).is_err());
    }
}
