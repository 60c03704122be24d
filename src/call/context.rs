//! The per-call context supplied by the calling application (never the model): its header for
//! clients that cannot put it in a body (OpenAI SDKs, MCP), and its one rule: a JSON object.

use serde_json::Value;

/// Header carrying the context (a JSON object) on `/v1/chat/completions` and MCP over HTTP.
pub const CONTEXT_HEADER: &str = "x-toolgate-context";

/// The context in a `X-Toolgate-Context` header value.
pub fn parse_context_header(raw: &[u8]) -> Result<Value, String> {
    match std::str::from_utf8(raw)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
    {
        Some(v @ Value::Object(_)) => Ok(v),
        _ => Err("the X-Toolgate-Context header must be a JSON object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects() {
        assert!(parse_context_header(br#"{"tenant": "a"}"#).is_ok());
        for bad in [&b"[1]"[..], b"\"a\"", b"{", b"\xff"] {
            assert!(parse_context_header(bad).is_err());
        }
    }
}
