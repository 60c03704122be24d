//! `GET /openapi.json`: the OpenAPI 3.1 description of toolgate's own API. Request, response
//! and query schemas come from the same Rust types the handlers use (schemars, with their doc
//! comments as descriptions), so the document cannot drift from the code; a test compares its
//! paths with the router's.

mod builder;

use serde_json::{Value, json};

use builder::Doc;

use super::types::{
    ChatReply, DeliveryQuery, ExportQuery, Health, Items, ListQuery, Page, PingSent, RotatedSecret,
    SchemaQuery, Search, SubscriptionCreated, WebhookSummary,
};
use crate::call::CallResult;
use crate::model::{
    Agent, AgentSpec, CallRecord, Delivery, SecretMeta, Subscription, SubscriptionSpec, Tool,
    ToolSpec, Webhook, WebhookSpec,
};
use crate::openapi::apply::Report;

/// The whole document.
pub fn document() -> Value {
    let mut d = Doc::new();
    let any = json!({});

    let op = d
        .op("get", "/healthz", "Liveness and store health", "system")
        .public();
    let health = d.schema::<Health>();
    let op = op.ok(
        200,
        "The gateway is up and its store answers (503 `store_unavailable` with the reason when it does not)",
        Some(health),
    );
    d.add(op);
    let op = d
        .op("get", "/metrics", "Prometheus metrics", "system")
        .public()
        .content(
            200,
            "Counters and histograms",
            json!({"text/plain": {"schema": {"type": "string"}}}),
        );
    d.add(op);
    let op = d
        .op("get", "/openapi.json", "This document", "system")
        .public()
        .ok(
            200,
            "The OpenAPI 3.1 document",
            Some(json!({"type": "object"})),
        );
    d.add(op);

    // Secrets.
    let body = json!({"type": "object", "additionalProperties": false, "required": ["name", "value"],
        "properties": {"name": {"type": "string"}, "value": {"type": "string", "writeOnly": true}}});
    let meta = d.schema::<SecretMeta>();
    let list = d.schema::<Items<SecretMeta>>();
    let q = d.query::<Search>();
    let op = d
        .op(
            "post",
            "/v1/secrets",
            "Store a secret (write-only)",
            "secrets",
        )
        .json_body(body)
        .ok(201, "Created", Some(meta.clone()));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/secrets",
            "List secrets (names and dates, never values)",
            "secrets",
        )
        .params(q.clone())
        .ok(200, "Secrets", Some(list));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/secrets/{id}",
            "Read a secret's metadata",
            "secrets",
        )
        .ok(200, "Metadata", Some(meta.clone()));
    d.add(op);
    let value_only = json!({"type": "object", "additionalProperties": false, "required": ["value"],
        "properties": {"value": {"type": "string", "writeOnly": true}}});
    let op = d
        .op(
            "put",
            "/v1/secrets/{id}",
            "Replace a secret's value",
            "secrets",
        )
        .json_body(value_only)
        .ok(200, "Metadata", Some(meta));
    d.add(op);
    let op = d
        .op(
            "delete",
            "/v1/secrets/{id}",
            "Delete a secret no webhook uses",
            "secrets",
        )
        .ok(204, "Deleted", None);
    d.add(op);

    let subject_meta = d.schema::<crate::store::SubjectValueMeta>();
    let subjects = d.schema::<Items<crate::store::SubjectValueMeta>>();
    let value_only = json!({"type": "object", "additionalProperties": false, "required": ["value"],
        "properties": {"value": {"type": "string", "writeOnly": true}}});
    let op = d
        .op(
            "put",
            "/v1/secrets/{id}/values/{subject}",
            "Set the secret's value for one subject (an end user)",
            "secrets",
        )
        .json_body(value_only)
        .ok(
            200,
            "The subject's entry (never the value)",
            Some(subject_meta),
        );
    d.add(op);
    let op = d
        .op(
            "delete",
            "/v1/secrets/{id}/values/{subject}",
            "Remove the secret's value for one subject",
            "secrets",
        )
        .ok(204, "Removed", None);
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/secrets/{id}/values",
            "List the subjects that have a value of the secret",
            "secrets",
        )
        .ok(200, "Subjects", Some(subjects));
    d.add(op);

    // Webhooks.
    let spec = d.schema::<WebhookSpec>();
    let hook = d.schema::<Webhook>();
    let summaries = d.schema::<Items<WebhookSummary>>();
    let call_body = d.schema::<super::webhooks::CallBody>();
    let test_body = d.schema::<super::webhooks::TestBody>();
    let dry_run = d.schema::<crate::call::DryRun>();
    let result = d.schema::<CallResult>();
    let op = d
        .op("post", "/v1/webhooks", "Register a webhook", "webhooks")
        .json_body(spec.clone())
        .ok(201, "Created", Some(hook.clone()));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/webhooks",
            "List webhooks (`q` searches name, URL, description)",
            "webhooks",
        )
        .params(q.clone())
        .ok(200, "Webhooks", Some(summaries));
    d.add(op);
    let op = d
        .op("get", "/v1/webhooks/{id}", "Read a webhook", "webhooks")
        .ok(200, "The webhook", Some(hook.clone()));
    d.add(op);
    let op = d
        .op(
            "put",
            "/v1/webhooks/{id}",
            "Replace a webhook in place",
            "webhooks",
        )
        .json_body(spec)
        .ok(200, "The webhook", Some(hook));
    d.add(op);
    let op = d
        .op(
            "delete",
            "/v1/webhooks/{id}",
            "Delete a webhook no tool links",
            "webhooks",
        )
        .ok(204, "Deleted", None);
    d.add(op);
    let op = d
        .op(
            "post",
            "/v1/webhooks/{id}/test",
            "Send a test call",
            "webhooks",
        )
        .json_body(test_body)
        .ok(
            200,
            "The call result, or with `dry_run` the request that would be sent",
            Some(json!({"oneOf": [result.clone(), dry_run]})),
        );
    d.add(op);

    // Tools.
    let tspec = d.schema::<ToolSpec>();
    let tool = d.schema::<Tool>();
    let tools = d.schema::<Items<Tool>>();
    let schema_q = d.query::<SchemaQuery>();
    let export_q = d.query::<ExportQuery>();
    let op = d
        .op("post", "/v1/tools", "Create a tool", "tools")
        .json_body(tspec.clone())
        .ok(201, "Created", Some(tool.clone()));
    d.add(op);
    let op = d
        .op("get", "/v1/tools", "List tools", "tools")
        .params(q.clone())
        .ok(200, "Tools", Some(tools));
    d.add(op);
    let op = d.op("get", "/v1/tools/openai", "Every linked tool's definition for a model", "tools").params(export_q)
        .ok(200, "`{\"tools\": [...]}`", Some(json!({"type": "object", "required": ["tools"], "properties": {"tools": {"type": "array"}}})));
    d.add(op);
    let op = d.op("get", "/v1/tools/{id}", "Read a tool", "tools").ok(
        200,
        "The tool",
        Some(tool.clone()),
    );
    d.add(op);
    let op = d
        .op("put", "/v1/tools/{id}", "Replace a tool", "tools")
        .json_body(tspec)
        .ok(200, "The tool", Some(tool.clone()));
    d.add(op);
    let op = d
        .op("delete", "/v1/tools/{id}", "Delete a tool", "tools")
        .ok(204, "Deleted", None);
    d.add(op);
    let op = d
        .op(
            "post",
            "/v1/tools/{id}/unlink",
            "Unlink a tool from its webhook",
            "tools",
        )
        .ok(200, "The tool", Some(tool));
    d.add(op);
    let op = d
        .op(
            "get",
            "/v1/tools/{id}/schema",
            "The tool's compiled definition",
            "tools",
        )
        .params(schema_q)
        .ok(
            200,
            "An OpenAI tool definition",
            Some(json!({"type": "object"})),
        );
    d.add(op);
    let op = d
        .op(
            "post",
            "/v1/tools/{id}/invoke",
            "Call a tool (by name or id)",
            "tools",
        )
        .json_body(call_body)
        .ok(200, "The call result", Some(result));
    d.add(op);

    // History.
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

    // Agents and chat.
    let aspec = d.schema::<AgentSpec>();
    let agent = d.schema::<Agent>();
    let agents = d.schema::<Items<Agent>>();
    let chat_body = d.schema::<super::agents::ChatBody>();
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

    // Subscriptions and deliveries.
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

    // OpenAPI import.
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

    // MCP.
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

    // API keys and the audit log (admin only).
    let key_spec = d.schema::<crate::access::keys::KeySpec>();
    let key = d.schema::<crate::access::keys::ApiKey>();
    let created = d.schema::<super::keys::KeyCreated>();
    let keys = d.schema::<Items<crate::access::keys::ApiKey>>();
    let explanation = d.schema::<super::keys::Explanation>();
    let explain_q = d.query::<super::keys::ExplainQuery>();
    let audit_q = d.query::<super::keys::AuditQuery>();
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

    let schemas = d.generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "toolgate", "version": env!("CARGO_PKG_VERSION"),
            "description": "AI-agent tool-calling gateway: register HTTP APIs once as webhooks, link them to tools, and let models call them through one validated, audited pipeline. Without an admin token the API answers loopback requests only; with one, send it as a bearer token."},
        "security": [{"bearer": []}, {}],
        "paths": d.paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "The admin token (--admin-token / TOOLGATE_ADMIN_TOKEN) or an API key (tg_…)"}},
            "schemas": schemas,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_31_with_valid_schemas() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("WebhookSpec"), "{:?}", schemas.keys());
        for (name, s) in schemas {
            assert!(jsonschema::meta::is_valid(s), "{name}: {s}");
        }
        // Every $ref resolves inside the document.
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"").skip(1) {
            let r = &part[..part.find('"').unwrap()];
            assert!(doc.pointer(r.trim_start_matches('#')).is_some(), "{r}");
        }
    }
}
