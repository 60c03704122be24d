//! Paths of the definition routes: system, secrets, webhooks and tools.

use serde_json::json;

use super::builder::Doc;
use crate::api::types::{ExportQuery, Health, Items, SchemaQuery, Search, WebhookSummary};
use crate::call::CallResult;
use crate::model::{SecretMeta, Tool, ToolSpec, Webhook, WebhookSpec};

/// Health, metrics and this document.
pub(super) fn system(d: &mut Doc) {
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
}

/// Secrets and their per-subject values.
pub(super) fn secrets(d: &mut Doc) {
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
}

/// Webhooks, their test sends and dry runs.
pub(super) fn webhooks(d: &mut Doc) {
    let q = d.query::<Search>();
    let spec = d.schema::<WebhookSpec>();
    let hook = d.schema::<Webhook>();
    let summaries = d.schema::<Items<WebhookSummary>>();
    let test_body = d.schema::<crate::api::webhooks::TestBody>();
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
}

/// Tools, their schemas and invokes.
pub(super) fn tools(d: &mut Doc) {
    let call_body = d.schema::<crate::api::webhooks::CallBody>();
    let result = d.schema::<CallResult>();
    let q = d.query::<Search>();
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
}
