//! Step 5: classify and shape the answer: the call result for the caller, and `content`, the
//! text handed back to the model (reduced to `response_fields`, compact, cut to size, said so).

use serde::Serialize;
use serde_json::{Map, Value};

use super::resolve::lookup_path;
use super::send::Sent;
use crate::model::Outcome;
use crate::model::validate::FieldError;
use crate::redact::Redactor;

/// What a call returns to its caller (HTTP route, agent loop, MCP).
#[derive(Debug, Clone, schemars::JsonSchema)]
pub struct CallResult {
    /// History record id.
    pub call_id: String,
    /// True only for success.
    pub ok: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// Upstream HTTP status, if any.
    pub status: Option<u16>,
    /// Wall time.
    pub duration_ms: u64,
    /// Parsed JSON body, else text (cut at the configured size). `None` when no tree of it was
    /// built: it is then `content` parsed (`response_is_content` is set), see `response_value`.
    #[schemars(with = "Value")]
    pub response: Option<Value>,
    /// Text for the model.
    pub content: String,
    /// Refusal details (invalid arguments).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
    /// Whether `content` is exactly `response` written as compact JSON (the whole body, reduced,
    /// cut and redacted nowhere else): an answer can then carry `content` as its `response`
    /// instead of writing the tree out a second time. Not part of the answer.
    #[serde(skip)]
    pub response_is_content: bool,
}

/// Written as the answer's JSON: `response` is the tree, or `content` parsed when none was built.
impl Serialize for CallResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let details = !self.details.is_empty();
        let mut st = s.serialize_struct("CallResult", 7 + usize::from(details))?;
        st.serialize_field("call_id", &self.call_id)?;
        st.serialize_field("ok", &self.ok)?;
        st.serialize_field("outcome", &self.outcome)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("duration_ms", &self.duration_ms)?;
        st.serialize_field("response", &*self.response_value())?;
        st.serialize_field("content", &self.content)?;
        if details {
            st.serialize_field("details", &self.details)?;
        }
        st.end()
    }
}

impl CallResult {
    /// The response as a tree: built here from `content` when the call left it as text only
    /// (`Null` if that text does not parse, which `response_is_content` rules out).
    pub fn response_value(&self) -> std::borrow::Cow<'_, Value> {
        match &self.response {
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => {
                std::borrow::Cow::Owned(serde_json::from_str(&self.content).unwrap_or_default())
            }
        }
    }

    /// This result as the answer's JSON (exactly what `Serialize` writes), into `out`. When
    /// `content` is the response as compact JSON, the response is copied from it instead of
    /// written out from the tree a second time.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        if !self.response_is_content || !self.details.is_empty() {
            return serde_json::to_writer(out, self);
        }
        out.extend_from_slice(b"{\"call_id\":");
        serde_json::to_writer(&mut *out, &self.call_id)?;
        out.extend_from_slice(if self.ok {
            b",\"ok\":true,\"outcome\":"
        } else {
            b",\"ok\":false,\"outcome\":"
        });
        serde_json::to_writer(&mut *out, &self.outcome)?;
        out.extend_from_slice(b",\"status\":");
        serde_json::to_writer(&mut *out, &self.status)?;
        out.extend_from_slice(b",\"duration_ms\":");
        serde_json::to_writer(&mut *out, &self.duration_ms)?;
        out.extend_from_slice(b",\"response\":");
        out.extend_from_slice(self.content.as_bytes());
        out.extend_from_slice(b",\"content\":");
        super::compact_json::write_string(out, &self.content)?;
        out.push(b'}');
        Ok(())
    }
}

/// The answer of a successful call whose body can be handed on as it is, as compact JSON text
/// (what serde_json writes of the parsed body, keys in the upstream's order), without building
/// its tree: the body was read whole, fits `limit`, is JSON, is not reduced to
/// `response_fields`, fits `max` as text, and holds nothing to redact. The text is then the
/// response everywhere: the answer, `content` and the history record. `None`: take the general
/// path (`body_value`, `success_content`).
pub fn verbatim_json(
    sent: &Sent,
    response_fields: &[String],
    limit: usize,
    max: usize,
    redactor: &Redactor,
) -> Option<String> {
    let body = &sent.body;
    if sent.outcome != Outcome::Success
        || sent.body_truncated
        || body.len() > limit
        || !response_fields.is_empty()
    {
        return None;
    }
    let text = match super::compact_json::already_compact(body, max) {
        Some(text) => text,
        None => transcoded(body, max)?,
    };
    (!text.is_empty() && redactor.is_clean_json(&text)).then_some(text)
}

/// The compact text serde_json writes of the JSON `body`, if it is JSON and the text fits `max`.
pub(super) fn transcoded(body: &[u8], max: usize) -> Option<String> {
    // Capped at `max`: a body whose text would be cut stops being written as soon as it is
    // too long, rather than transcoded whole and then parsed again by the general path.
    let mut out = Capped {
        out: Vec::with_capacity(body.len().min(max)),
        max,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_transcode::transcode(&mut de, &mut serde_json::Serializer::new(&mut out)).ok()?;
    de.end().ok()?;
    String::from_utf8(out.out).ok()
}

/// A buffer that refuses to grow past `max` bytes (the write fails instead).
struct Capped {
    out: Vec<u8>,
    max: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + bytes.len() > self.max {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.out.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The upstream's body read for the caller: as shown, and the whole parsed JSON.
#[derive(Debug)]
pub struct BodyValue {
    /// The response as shown: the parsed JSON if it fits the limit, else text cut to it.
    pub shown: Value,
    whole: Whole,
}

/// Where the whole parsed body is.
#[derive(Debug)]
enum Whole {
    /// In `shown` (one tree serves both).
    Shown,
    /// Here: it was too large to be shown and `shown` is text cut from the body.
    Apart(Value),
    /// Nowhere: the body is not JSON, or was read only in part.
    Unparsed,
}

impl BodyValue {
    /// Whether `shown` is the whole parsed body (not text cut from it).
    pub fn whole_is_shown(&self) -> bool {
        matches!(self.whole, Whole::Shown)
    }

    /// The whole parsed JSON (redacted), if the body parsed.
    pub fn whole(&self) -> Option<&Value> {
        match &self.whole {
            Whole::Shown => Some(&self.shown),
            Whole::Apart(v) => Some(v),
            Whole::Unparsed => None,
        }
    }
}

/// The response as shown (JSON if it parses and fits `limit`, else text cut to `limit`) and the
/// whole parsed JSON, both already redacted: redaction comes before every cut, so no cut can keep
/// part of a secret. The body is parsed once, and redacted in place.
pub fn body_value(
    body: &[u8],
    read_truncated: bool,
    limit: usize,
    redactor: &Redactor,
) -> BodyValue {
    let parsed = if read_truncated {
        None
    } else {
        serde_json::from_slice::<Value>(body)
            .ok()
            .map(|v| redactor.into_value(v))
            // A tree that still holds a secret across its structure is not handed on: the body
            // is then redacted as text, like a body that is not JSON.
            .filter(|v| redactor.is_clean_value(v))
    };
    match parsed {
        Some(v) if body.len() <= limit => BodyValue {
            shown: v,
            whole: Whole::Shown,
        },
        parsed => {
            let text = String::from_utf8_lossy(body);
            BodyValue {
                shown: Value::String(redactor.cut(&text, limit, read_truncated).0),
                whole: parsed.map_or(Whole::Unparsed, Whole::Apart),
            }
        }
    }
}

/// Keep only the listed dotted paths of a JSON value, nested as in the original.
pub fn reduce(v: &Value, paths: &[String]) -> Value {
    let mut out = Value::Object(Map::new());
    for p in paths {
        let Some(found) = lookup_path(v, p) else {
            continue;
        };
        let mut cur = &mut out;
        let segs: Vec<&str> = p.split('.').collect();
        for (i, seg) in segs.iter().enumerate() {
            let Value::Object(m) = cur else { break };
            if i + 1 == segs.len() {
                m.insert((*seg).to_string(), found.clone());
                break;
            }
            cur = m
                .entry((*seg).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    out
}

/// `text` redacted and cut to `max`, and whether it is untouched (nothing redacted, nothing cut).
fn with_limit(text: String, max: usize, already_cut: bool, redactor: &Redactor) -> (String, bool) {
    let total = text.len();
    match redactor.cut_text_noting(text, max, already_cut) {
        (t, redacted, false) => (t, !redacted),
        (t, _, true) => (
            format!(
                "{t}\n[truncated: the response was {total} bytes; only the first {} are shown. Ask for something narrower if more is needed.]",
                t.len()
            ),
            false,
        ),
    }
}

/// The model's text for a successful call; `full` is the redacted parsed body, if it parsed.
/// Also says whether the text is exactly `full` written as compact JSON (see
/// `CallResult::response_is_content`).
pub fn success_content(
    full: Option<&Value>,
    sent: &Sent,
    response_fields: &[String],
    max: usize,
    redactor: &Redactor,
) -> (String, bool) {
    // `serde_json::to_string` writes bytes straight into its buffer; `Value`'s `Display` (the
    // same text) went through `fmt::Write`, one call per piece.
    let (text, whole) = match full {
        Some(v) if !response_fields.is_empty() => (compact(&reduce(v, response_fields)), false),
        Some(v) => (compact(v), true),
        None => (String::from_utf8_lossy(&sent.body).to_string(), false),
    };
    if text.is_empty() {
        return ("The call succeeded (the response was empty).".into(), false);
    }
    let (text, untouched) = with_limit(text, max, sent.body_truncated, redactor);
    (text, whole && untouched)
}

/// A JSON value as compact text (what its `Display` writes).
fn compact(v: &Value) -> String {
    // Writing a `Value` cannot fail: its keys are strings and its numbers finite.
    serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// The model's text for a failed call: one plain sentence naming the status or the problem.
pub fn failure_content(sent: &Sent, timeout_ms: u64, redactor: &Redactor) -> String {
    match sent.outcome {
        Outcome::HttpError => {
            let status = sent.status.unwrap_or(0);
            let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
            let body = String::from_utf8_lossy(&sent.body);
            let snippet = redactor.cut(body.trim(), 300, sent.body_truncated).0;
            if snippet.is_empty() {
                format!("The tool call failed: the API answered HTTP {status} {reason}.")
            } else {
                format!("The tool call failed: the API answered HTTP {status} {reason}: {snippet}")
            }
        }
        Outcome::Timeout => format!("The tool call failed: the API did not answer within {timeout_ms} ms."),
        Outcome::Blocked => "The tool call was refused: its destination is not allowed by the gateway's network policy.".into(),
        _ => format!(
            "The tool call failed: the API could not be reached ({}).",
            sent.error.as_deref().unwrap_or("network error")
        ),
    }
}

/// The model's text for a refused call.
pub fn refusal_content(details: &[FieldError]) -> String {
    let list: Vec<String> = details
        .iter()
        .map(|d| format!("{}: {}", d.field, d.message))
        .collect();
    format!(
        "The tool call was not made because its arguments are invalid: {}. Correct them and call again, or ask the user.",
        list.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reduces_to_fields() {
        let v = json!({"order": {"status": "shipped", "total": 5}, "items": [{"name": "a"}, {"name": "b"}], "x": 1});
        assert_eq!(
            reduce(
                &v,
                &["order.status".into(), "items.1.name".into(), "nope".into()]
            ),
            json!({"order": {"status": "shipped"}, "items": {"1": {"name": "b"}}})
        );
    }

    #[test]
    fn content_is_cut_and_says_so() {
        let big = json!({"data": "x".repeat(1000)});
        let sent = Sent {
            outcome: Outcome::Success,
            status: Some(200),
            headers: Vec::new(),
            body: Vec::new(),
            body_truncated: false,
            error: None,
            attempts: 1,
        };
        let (c, verbatim) = success_content(Some(&big), &sent, &[], 100, &Redactor::default());
        assert!(c.len() < 300 && c.contains("[truncated"), "{c}");
        assert!(!verbatim, "a cut text is not the response");
        assert_eq!(
            Redactor::default().cut("héllo", 2, false),
            ("h".into(), true)
        );
    }

    fn sent_with(body: &[u8]) -> Sent {
        Sent {
            outcome: Outcome::Success,
            status: Some(200),
            headers: Vec::new(),
            body: body.to_vec(),
            body_truncated: false,
            error: None,
            attempts: 1,
        }
    }

    /// The answer written from `content` is, byte for byte, what serde writes from the tree.
    #[test]
    fn an_answer_from_its_content_is_what_serde_writes() {
        let bodies = [
            r#"{"order":{"number":"A-1001","status":"shipped","eta":"2026-11-24"}}"#,
            r#"[1, 2.5, -3e2, 18446744073709551615, "x\"y\\z</script>", null, true]"#,
            r#"{"é":"\u00e9\n\t\u0001","z":{},"a":[],"b":{"c":[{"d":0}]}}"#,
            r#""just a string""#,
            "42",
        ];
        let redactor = Redactor::new(&["not-in-any-body".to_string()]);
        for b in bodies {
            let body = body_value(b.as_bytes(), false, 10_000, &redactor);
            let (content, verbatim) = success_content(
                body.whole(),
                &sent_with(b.as_bytes()),
                &[],
                10_000,
                &redactor,
            );
            assert!(verbatim && body.whole_is_shown(), "{b}");
            for (ok, status) in [(true, Some(200)), (false, None)] {
                let result = CallResult {
                    call_id: "019a-\"id\"".into(),
                    ok,
                    outcome: if ok {
                        Outcome::Success
                    } else {
                        Outcome::HttpError
                    },
                    status,
                    duration_ms: 17,
                    response: Some(body.shown.clone()),
                    content: content.clone(),
                    details: Vec::new(),
                    response_is_content: true,
                };
                let mut fast = Vec::new();
                result.write_json(&mut fast).expect("write");
                let serde = serde_json::to_vec(&result).expect("serde");
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&serde)
                );
            }
        }
    }

    #[test]
    fn content_is_not_the_response_when_reduced_cut_or_redacted_as_text() {
        let body = br#"{"order":{"status":"shipped","lines":[1,2]}}"#;
        let sent = sent_with(body);
        let plain = Redactor::default();
        let whole = body_value(body, false, 10_000, &plain);
        let fields = ["order.status".to_string()];
        assert!(!success_content(whole.whole(), &sent, &fields, 10_000, &plain).1);
        assert!(!success_content(whole.whole(), &sent, &[], 10, &plain).1);
        // Too large to be shown: the shown response is text cut from the body.
        assert!(!body_value(body, false, 10, &plain).whole_is_shown());
        // A secret that only the text holds (no string of the tree does): the text is redacted,
        // so the content is not the tree written out.
        let secret = Redactor::new(&["1,2".to_string()]);
        let tree = body_value(body, false, 10_000, &secret);
        let (content, verbatim) = success_content(tree.whole(), &sent, &[], 10_000, &secret);
        assert!(!content.contains("1,2") && !verbatim, "{content}");
        // Nor does the response hand the tree on: it is the body redacted as text.
        assert!(tree.whole().is_none() && !tree.whole_is_shown());
        let shown = tree.shown.to_string();
        assert!(
            !shown.contains("1,2") && shown.contains("[REDACTED]"),
            "{shown}"
        );
    }

    /// The text `verbatim_json` hands on is the tree's compact JSON up to key order, and an
    /// answer or record written from it is the one written from the tree.
    #[test]
    fn verbatim_json_is_the_tree_as_text() {
        let redactor = Redactor::new(&["not-in-any-body".to_string()]);
        for b in [
            r#"{"order":{"number":"A-1001","status":"shipped","eta":"2026-11-24"}}"#,
            r#"[1, 2.5, -3e2, 18446744073709551615, "x\"y\\z<\/script>", null, true]"#,
            r#"{"é":"\u00e9\n\t\u0001","z":{},"a":[],"b":{"c":[{"d":0}]}}"#,
            r#""just a string""#,
            " 42 ",
            // An escaped surrogate pair is written as the character; a repeated key is passed on
            // as sent (a parser keeps the last, as the tree did).
            r#"{"smile":"\ud83d\ude00","k":1,"k":2}"#,
        ] {
            let sent = sent_with(b.as_bytes());
            let text = verbatim_json(&sent, &[], 10_000, 10_000, &redactor).expect(b);
            let tree: Value = serde_json::from_str(b).unwrap();
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), tree, "{b}");
            assert!(
                !text.contains(": ") && !text.starts_with(' '),
                "compact: {text}"
            );
            let result = |response| CallResult {
                call_id: "c".into(),
                ok: true,
                outcome: Outcome::Success,
                status: Some(200),
                duration_ms: 1,
                response,
                content: text.clone(),
                details: Vec::new(),
                response_is_content: true,
            };
            let (built, unbuilt) = (result(Some(tree.clone())), result(None));
            assert_eq!(*unbuilt.response_value(), tree);
            let written = |r: &CallResult| {
                let mut out = Vec::new();
                r.write_json(&mut out).unwrap();
                serde_json::from_slice::<Value>(&out).unwrap()
            };
            assert_eq!(written(&built), written(&unbuilt));
            assert_eq!(
                serde_json::to_value(&built).unwrap(),
                serde_json::to_value(&unbuilt).unwrap()
            );
        }
    }

    /// A hostile upstream's deepest nesting: what serde_json parses (127 levels) is handed on,
    /// deeper is declined (the general path then keeps it as text), and neither overflows the
    /// stack.
    #[test]
    fn verbatim_json_survives_deep_nesting() {
        let plain = Redactor::default();
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let ok = nested(127);
        let text = verbatim_json(&sent_with(ok.as_bytes()), &[], 1000, 1000, &plain);
        assert_eq!(text.as_deref(), Some(ok.as_str()));
        let deep = nested(100_000);
        assert!(
            verbatim_json(&sent_with(deep.as_bytes()), &[], 1 << 20, 1 << 20, &plain).is_none()
        );
    }

    /// Anything that needs the general path gets `None`: not whole, too large, reduced, not
    /// JSON, cut, failed, or holding a secret in any form, or a secret whose escaped forms the
    /// text scan could miss.
    #[test]
    fn verbatim_json_declines_what_needs_a_tree_or_a_cut() {
        let plain = Redactor::default();
        let ok = br#"{"a":"b"}"#;
        assert!(verbatim_json(&sent_with(ok), &[], 100, 100, &plain).is_some());
        // Text of exactly `max` bytes still fits; one byte fewer and it would be cut.
        assert!(verbatim_json(&sent_with(ok), &[], 100, ok.len(), &plain).is_some());
        assert!(verbatim_json(&sent_with(ok), &[], 100, ok.len() - 1, &plain).is_none());
        let mut truncated = sent_with(ok);
        truncated.body_truncated = true;
        let mut failed = sent_with(ok);
        failed.outcome = Outcome::HttpError;
        for (sent, limit, max, fields) in [
            (truncated, 100, 100, vec![]),
            (failed, 100, 100, vec![]),
            (sent_with(ok), 5, 100, vec![]),
            (sent_with(ok), 100, 5, vec![]),
            (sent_with(ok), 100, 100, vec!["a".to_string()]),
            (sent_with(b"{\"a\":1} trailing"), 100, 100, vec![]),
            (sent_with(b"not json"), 100, 100, vec![]),
            (sent_with(br#"{"x":"\ud800"}"#), 100, 100, vec![]),
            (sent_with(b""), 100, 100, vec![]),
        ] {
            assert!(verbatim_json(&sent, &fields, limit, max, &plain).is_none());
        }
        let secret = "s3cr3t-value";
        let r = Redactor::new(&[secret.to_string()]);
        for body in [
            format!(r#"{{"x":"{secret}"}}"#),
            format!(r#"{{"{secret}":1}}"#),
            r#"{"x":"\u0073\u0033cr3t-value"}"#.to_string(),
            r#"{"x":"czNjcjN0LXZhbHVl"}"#.to_string(),
            r#"{"x":"s3cr3t%2Dvalue"}"#.to_string(),
        ] {
            let sent = sent_with(body.as_bytes());
            assert!(
                verbatim_json(&sent, &[], 1000, 1000, &r).is_none(),
                "{body}"
            );
            // And the general path does redact it.
            let tree = body_value(body.as_bytes(), false, 1000, &r);
            let (content, _) = success_content(tree.whole(), &sent, &[], 1000, &r);
            assert!(!content.contains("cr3t"), "{content}");
        }
        // Secrets that JSON escapes, found however deeply escaped the body holds them (the scan
        // looks for each form escaped once more), and a clean body still takes the text path.
        for secret in ["pa\"ss", "pass/word", "pässword", "pass\tword"] {
            let r = Redactor::new(&[secret.to_string()]);
            assert!(
                verbatim_json(&sent_with(ok), &[], 100, 100, &r).is_some(),
                "{secret}"
            );
            let mut held = secret.to_string();
            for _ in 0..=5 {
                let body = serde_json::to_vec(&json!({"x": format!("<{held}>")})).unwrap();
                assert!(
                    verbatim_json(&sent_with(&body), &[], 1000, 1000, &r).is_none(),
                    "{secret}: {}",
                    String::from_utf8_lossy(&body)
                );
                held = serde_json::to_string(&held).unwrap();
                held = held[1..held.len() - 1].to_string();
            }
        }
        let token = Redactor::new(&["tok_3n-9.Zq".to_string()]);
        assert!(verbatim_json(&sent_with(ok), &[], 100, 100, &token).is_some());
    }
}
