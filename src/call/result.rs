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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
    /// Parsed JSON body, else text (cut at the configured size).
    pub response: Value,
    /// Text for the model.
    pub content: String,
    /// Refusal details (invalid arguments).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
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

fn with_limit(text: String, max: usize, already_cut: bool, redactor: &Redactor) -> String {
    let total = text.len();
    match redactor.cut_text(text, max, already_cut) {
        (t, false) => t,
        (t, true) => format!(
            "{t}\n[truncated: the response was {total} bytes; only the first {} are shown. Ask for something narrower if more is needed.]",
            t.len()
        ),
    }
}

/// The model's text for a successful call; `full` is the redacted parsed body, if it parsed.
pub fn success_content(
    full: Option<&Value>,
    sent: &Sent,
    response_fields: &[String],
    max: usize,
    redactor: &Redactor,
) -> String {
    let text = match full {
        Some(v) if !response_fields.is_empty() => reduce(v, response_fields).to_string(),
        Some(v) => v.to_string(),
        None => String::from_utf8_lossy(&sent.body).to_string(),
    };
    if text.is_empty() {
        return "The call succeeded (the response was empty).".into();
    }
    with_limit(text, max, sent.body_truncated, redactor)
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
        let c = success_content(Some(&big), &sent, &[], 100, &Redactor::default());
        assert!(c.len() < 300 && c.contains("[truncated"), "{c}");
        assert_eq!(
            Redactor::default().cut("héllo", 2, false),
            ("h".into(), true)
        );
    }
}
