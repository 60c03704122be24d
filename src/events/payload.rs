//! The events a change or a call produces: their type, the context subscribers filter on, and
//! the data they carry (ids and names, never a value of a secret or an argument).

use serde_json::json;

use crate::model::{CallRecord, Event, Outcome, Tool, Webhook};

/// `webhook.created` / `.updated` / `.deleted`.
pub fn webhook_event(kind: &str, w: &Webhook) -> Event {
    Event::new(
        kind,
        json!({}),
        json!({"webhook_id": w.id, "name": w.spec.name, "method": w.spec.method, "url": w.spec.url}),
    )
}

/// The event of a tool change or a call.
pub fn tool_event(kind: &str, t: &Tool, webhook_id: &str) -> Event {
    Event::new(
        kind,
        json!({"tool": t.spec.name}),
        json!({"tool_id": t.id, "tool_name": t.spec.name, "webhook_id": webhook_id}),
    )
}

/// The event of a tool change or a call.
pub fn call_event(r: &CallRecord) -> Event {
    let kind = if r.outcome == Outcome::Success {
        "call.succeeded"
    } else {
        "call.failed"
    };
    Event::new(
        kind,
        json!({"tool": r.tool, "agent": r.agent, "conversation_id": r.conversation_id, "source": r.source}),
        json!({"call_id": r.id, "tool": r.tool, "webhook_id": r.webhook_id, "outcome": r.outcome,
               "status": r.response.as_ref().map(|p| p.status), "duration_ms": r.duration_ms, "error": r.error}),
    )
}
