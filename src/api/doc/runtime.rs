//! Paths of the runtime and administration routes: history, agents and chat, subscriptions,
//! OpenAPI import, MCP, API keys and the audit log.

use serde_json::json;

use super::builder::Doc;
use crate::api::types::{
    ChatReply, DeliveryQuery, Items, ListQuery, Page, PingSent, RotatedSecret, Search,
    SubscriptionCreated,
};
use crate::model::{Agent, AgentSpec, CallRecord, Delivery, Subscription, SubscriptionSpec};
use crate::openapi::apply::Report;

/// The call history.
pub(super) fn history(d: &mut Doc) {
    let page = d.schema::<Page<CallRecord>>();
    let record = d.schema::<CallRecord>();
    let list_q = d.query::<ListQuery>();
    let op = d
        .op("get", "/v1/calls", "Call history, newest first", "history")
        .params(list_q)
        .ok(200, "A page", Some(page));
    d.add(op);
    let op = d
        .op("get", "/v1/calls/{id}", "One call record", "history")
        .ok(200, "The record", Some(record));
    d.add(op);
}

/// Agents, chat and OpenAI-compatible chat completions.
pub(super) fn agents(d: &mut Doc) {
    let q = d.query::<Search>();
    let aspec = d.schema::<AgentSpec>();
    let agent = d.schema::<Agent>();
    let agents = d.schema::<Items<Agent>>();
    let chat_body = d.schema::<crate::api::agents::ChatBody>();
    let reply = d.schema::<ChatReply>();
    let op = d
        .op("post", "/v1/agents", "Create an agent", "agents")
        .json_body(aspec.clone())
        .ok(201, "Created", Some(agent.clone()));
    d.add(op);
    let op = d
        .op("get", "/v1/agents", "List agents", "agents")
        .params(q.clone())
        .ok(200, "Agents", Some(agents));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/agents/{id}",
            "Read an agent (by id or name)",
            "agents",
        )
        .ok(200, "The agent", Some(agent.clone()));
    d.add(op);
    let op = d
        .op("put", "/v1/agents/{id}", "Replace an agent", "agents")
        .json_body(aspec)
        .ok(200, "The agent", Some(agent));
    d.add(op);
    let op = d
        .op("delete", "/v1/agents/{id}", "Delete an agent", "agents")
        .ok(204, "Deleted", None);
    d.add(op);
    let op = d
        .op(
            "post",
            "/v1/agents/{id}/chat",
            "One conversation turn with server-side tools",
            "agents",
        )
        .json_body(chat_body)
        .ok(200, "The reply", Some(reply));
    d.add(op);
    let op = d
        .op("post", "/v1/chat/completions", "OpenAI-compatible chat completions with server-side tools", "agents")
        .json_body(json!({"type": "object", "required": ["model", "messages"],
            "properties": {"model": {"type": "string"}, "messages": {"type": "array", "items": {"type": "object"}},
                           "stream": {"type": "boolean"}, "tools": {"type": "array"}}}))
        .content(200, "A chat.completion, or SSE chunks with `stream: true`",
            json!({"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}}));
    d.add(op);
}

/// Event subscriptions and deliveries.
pub(super) fn subscriptions(d: &mut Doc) {
    let q = d.query::<Search>();
    let sspec = d.schema::<SubscriptionSpec>();
    let sub = d.schema::<Subscription>();
    let created = d.schema::<SubscriptionCreated>();
    let subs = d.schema::<Items<Subscription>>();
    let rotated = d.schema::<RotatedSecret>();
    let ping = d.schema::<PingSent>();
    let deliveries = d.schema::<Page<Delivery>>();
    let delivery = d.schema::<Delivery>();
    let dq = d.query::<DeliveryQuery>();
    let op = d
        .op(
            "post",
            "/v1/subscriptions",
            "Subscribe to events (the signing secret is shown once)",
            "events",
        )
        .json_body(sspec.clone())
        .ok(201, "Created", Some(created));
    d.add(op);
    let op = d
        .op("get", "/v1/subscriptions", "List subscriptions", "events")
        .params(q)
        .ok(200, "Subscriptions", Some(subs));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/subscriptions/{id}",
            "Read a subscription",
            "events",
        )
        .ok(200, "The subscription", Some(sub.clone()));
    d.add(op);
    let op = d
        .op(
            "put",
            "/v1/subscriptions/{id}",
            "Replace a subscription",
            "events",
        )
        .json_body(sspec)
        .ok(200, "The subscription", Some(sub));
    d.add(op);
    let op = d
        .op(
            "delete",
            "/v1/subscriptions/{id}",
            "Delete a subscription",
            "events",
        )
        .ok(204, "Deleted", None);
    d.add(op);
    let op = d
        .op(
            "post",
            "/v1/subscriptions/{id}/rotate-secret",
            "Replace the signing secret",
            "events",
        )
        .ok(200, "The new secret, shown once", Some(rotated));
    d.add(op);
    let op = d
        .op(
            "post",
            "/v1/subscriptions/{id}/test",
            "Send a ping event",
            "events",
        )
        .ok(202, "Queued", Some(ping));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/deliveries",
            "The delivery log, newest first",
            "events",
        )
        .params(dq)
        .ok(200, "A page", Some(deliveries));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/deliveries/{id}",
            "One delivery with its attempts",
            "events",
        )
        .ok(200, "The delivery", Some(delivery.clone()));
    d.add(op);
    let op = d
        .op(
            "post",
            "/v1/deliveries/{id}/retry",
            "Retry a failed delivery",
            "events",
        )
        .ok(202, "Queued again", Some(delivery));
    d.add(op);
}

/// Importing an OpenAPI document.
pub(super) fn openapi_import(d: &mut Doc) {
    let report = d.schema::<Report>();
    let op = d
        .op("post", "/v1/openapi/import", "Import an OpenAPI document: a webhook and a tool per operation", "import")
        .json_body(json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"description": "YAML or JSON text, or the document"},
            "base_url": {"type": "string"}, "tool_prefix": {"type": "string"},
            "include": {"type": "array", "items": {"type": "string"}},
            "auth": {"type": "object", "additionalProperties": {"type": "object", "required": ["secret"],
                     "properties": {"secret": {"type": "string"}}}},
            "dry_run": {"type": "boolean"}, "prune": {"type": "boolean"}}}))
        .ok(200, "What was (or, in a dry run, would be) created, updated, unchanged, removed", Some(report));
    d.add(op);
}

/// MCP over HTTP.
pub(super) fn mcp(d: &mut Doc) {
    let any = json!({});
    for (path, summary) in [
        ("/mcp", "MCP over streamable HTTP: every linked tool"),
        (
            "/mcp/agents/{name}",
            "MCP over streamable HTTP: one agent's tools",
        ),
    ] {
        for method in ["get", "post", "delete"] {
            let mut op = d.op(method, path, summary, "mcp");
            if method == "post" {
                op = op.json_body(json!({"description": "A JSON-RPC message"}));
            }
            let op = op.content(200, "JSON-RPC answer or an SSE stream",
                json!({"application/json": {"schema": any.clone()}, "text/event-stream": {"schema": {"type": "string"}}}));
            d.add(op);
        }
    }
}

/// API keys and the audit log.
pub(super) fn keys(d: &mut Doc) {
    let key_spec = d.schema::<crate::access::keys::KeySpec>();
    let key = d.schema::<crate::access::keys::ApiKey>();
    let created = d.schema::<crate::api::keys::KeyCreated>();
    let keys = d.schema::<Items<crate::access::keys::ApiKey>>();
    let explanation = d.schema::<crate::api::keys::Explanation>();
    let explain_q = d.query::<crate::api::keys::ExplainQuery>();
    let audit_q = d.query::<crate::api::keys::AuditQuery>();
    let audit = d.schema::<Items<crate::model::AuditEntry>>();
    let op = d
        .op(
            "post",
            "/v1/keys",
            "Create an API key (its value is shown once)",
            "keys",
        )
        .json_body(key_spec.clone())
        .ok(201, "Created, with the key", Some(created));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/keys",
            "List API keys (never their values)",
            "keys",
        )
        .ok(200, "Keys", Some(keys));
    d.add(op);
    let op = d
        .op("get", "/v1/keys/{id}", "Read an API key's record", "keys")
        .ok(200, "The key's record", Some(key.clone()));
    d.add(op);
    let op = d
        .op(
            "put",
            "/v1/keys/{id}",
            "Change an API key's name, role, expiry, context or rate limit",
            "keys",
        )
        .json_body(key_spec)
        .ok(200, "The key's record", Some(key));
    d.add(op);
    let op = d
        .op("delete", "/v1/keys/{id}", "Revoke an API key", "keys")
        .ok(204, "Revoked", None);
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/keys/{id}/explain",
            "Whether a key may call a tool, and why",
            "keys",
        )
        .params(explain_q)
        .ok(200, "The answer", Some(explanation));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/audit",
            "The audit log of writes, newest first",
            "keys",
        )
        .params(audit_q)
        .ok(200, "Entries", Some(audit));
    d.add(op);
}
