//! Putting an import plan into the store: operations imported before from the same document
//! (and prefix) are updated in place, new ones created, and ones gone from the document reported
//! as removed (deleted only when asked to prune). A dry run says all of that and writes nothing.

use std::collections::HashMap;

use serde::Serialize;

use super::{Plan, Planned, Skipped};
use crate::definitions::{Author, DefinitionError, Definitions};
use crate::model::{Tool, ToolSpec, Webhook, WebhookId};
use crate::store::StoreError;

/// What happened (or, in a dry run, would happen) to one operation's tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// New webhook and tool.
    Created,
    /// An earlier import, changed in place.
    Updated,
    /// An earlier import, already as the document says.
    Unchanged,
    /// Imported before, gone from the document.
    Removed,
}

/// One tool of the report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ImportedTool {
    /// Tool name.
    pub name: String,
    /// The operationId (or `METHOD /path`).
    pub operation_id: String,
    /// HTTP method.
    pub method: String,
    /// The path in the document.
    pub path: String,
    /// The webhook (absent for a creation in a dry run).
    pub webhook_id: Option<WebhookId>,
    /// What happened.
    pub status: Change,
}

/// The answer to an import.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// Every imported (or removed) operation's tool.
    pub tools: Vec<ImportedTool>,
    /// Operations left out, and why.
    pub skipped: Vec<Skipped>,
    /// Notes: security schemes not filled in, and the like.
    pub warnings: Vec<String>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// Apply `plan`; with `dry_run` write nothing, with `prune` delete what the document dropped.
pub async fn apply(
    defs: &Definitions<'_>,
    plan: Plan,
    dry_run: bool,
    prune: bool,
) -> Result<Report, DefinitionError> {
    let store = defs.store;
    let earlier: HashMap<String, Webhook> = store
        .list_webhooks()
        .await?
        .into_iter()
        .filter_map(|w| {
            let mark = w.spec.openapi.clone()?;
            (mark.document == plan.document && mark.prefix == plan.prefix)
                .then_some((mark.operation_id, w))
        })
        .collect();
    let tools = store.list_tools().await?;
    let linked = |webhook_id: &str| -> Option<Tool> {
        tools
            .iter()
            .find(|t| t.spec.webhook_id.as_deref() == Some(webhook_id))
            .cloned()
    };
    let mut report = Report {
        tools: Vec::new(),
        skipped: plan.skipped,
        warnings: plan.warnings,
        dry_run,
    };
    for p in plan.tools {
        let before = earlier.get(&p.operation_id);
        let outcome = match before {
            Some(w) => update(defs, &p, w, linked(&w.id), dry_run).await,
            None => create(defs, &p, dry_run).await,
        };
        match outcome {
            Ok((webhook_id, status)) => report.tools.push(entry(&p, webhook_id, status)),
            Err(reason) => report.skipped.push(Skipped {
                operation_id: p.operation_id.clone(),
                method: p.method.clone(),
                path: p.path.clone(),
                reason,
            }),
        }
    }
    for (op_id, w) in &earlier {
        if plan.all_operations.contains(op_id) {
            continue;
        }
        let tool = linked(&w.id);
        if prune && !dry_run {
            if let Some(t) = &tool {
                defs.delete_tool(&t.id, Author::Api).await?;
            }
            match defs.delete_webhook(&w.id, Author::Api).await {
                // Another tool links it now: the delete guard keeps it.
                Ok(()) | Err(DefinitionError::Store(StoreError::InUse { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        report.tools.push(ImportedTool {
            name: tool.map(|t| t.spec.name.into()).unwrap_or_default(),
            operation_id: op_id.clone(),
            method: w.spec.method.as_str().to_string(),
            path: w.spec.url.clone(),
            webhook_id: Some(w.id.clone()),
            status: Change::Removed,
        });
    }
    Ok(report)
}

fn entry(p: &Planned, webhook_id: Option<WebhookId>, status: Change) -> ImportedTool {
    ImportedTool {
        name: p.name.to_string(),
        operation_id: p.operation_id.clone(),
        method: p.method.clone(),
        path: p.path.clone(),
        webhook_id,
        status,
    }
}

fn tool_spec(p: &Planned, webhook_id: &WebhookId) -> ToolSpec {
    ToolSpec {
        name: p.name.clone(),
        description: (!p.description.is_empty()).then(|| p.description.clone()),
        webhook_id: Some(webhook_id.clone()),
        managed_by: None,
        managed_file: None,
        authorized: Default::default(),
    }
}

async fn create(
    defs: &Definitions<'_>,
    p: &Planned,
    dry_run: bool,
) -> Result<(Option<WebhookId>, Change), String> {
    if let Ok(t) = defs.store.get_tool_by_name(&p.name).await {
        return Err(format!(
            "a tool named '{}' already exists (id {}) and was not imported from this document; rename it or use tool_prefix",
            p.name, t.id
        ));
    }
    if dry_run {
        return Ok((None, Change::Created));
    }
    let w = defs
        .create_webhook(p.webhook.clone(), Author::Api)
        .await
        .map_err(|e| describe(&e))?;
    if let Err(e) = defs.create_tool(tool_spec(p, &w.id), Author::Api).await {
        // Never half an import: the webhook goes again.
        let _ = defs.delete_webhook(&w.id, Author::Api).await;
        return Err(describe(&e));
    }
    Ok((Some(w.id), Change::Created))
}

async fn update(
    defs: &Definitions<'_>,
    p: &Planned,
    before: &Webhook,
    tool: Option<Tool>,
    dry_run: bool,
) -> Result<(Option<WebhookId>, Change), String> {
    let wanted_tool = tool_spec(p, &before.id);
    let hook_same = before.spec == p.webhook;
    let tool_same = tool.as_ref().is_some_and(|t| t.spec == wanted_tool);
    if hook_same && tool_same {
        return Ok((Some(before.id.clone()), Change::Unchanged));
    }
    if dry_run {
        return Ok((Some(before.id.clone()), Change::Updated));
    }
    if !hook_same {
        defs.update_webhook(&before.id, p.webhook.clone(), Author::Api)
            .await
            .map_err(|e| describe(&e))?;
    }
    match tool {
        Some(t) if t.spec == wanted_tool => {}
        Some(t) => {
            defs.update_tool(&t.id, wanted_tool, Author::Api)
                .await
                .map_err(|e| describe(&e))?;
        }
        None => {
            defs.create_tool(wanted_tool, Author::Api)
                .await
                .map_err(|e| describe(&e))?;
        }
    }
    Ok((Some(before.id.clone()), Change::Updated))
}

fn describe(e: &DefinitionError) -> String {
    match e {
        DefinitionError::Invalid(details) => details
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}
