//! Applying config files to the store: an idempotent upsert keyed by name, marking each
//! definition `managed_by: file` with its file, and removing file-managed definitions whose file
//! is gone. At start every problem is fatal; on a live reload a broken file is refused with a log
//! line and the definitions it made stay as they were.

use std::collections::HashSet;
use std::path::Path;

use super::{ToolFile, agent_errors, scan};
use crate::definitions::{Author, DefinitionError, Definitions};
use crate::model::{AgentSpec, ManagedBy, Tool};
use crate::store::StoreError;

/// What a sync did.
#[derive(Debug, Default)]
pub struct Synced {
    /// Whether any definition was created, changed or removed.
    pub changed: bool,
    /// `file: field: message` lines of files refused (fatal at start).
    pub errors: Vec<String>,
}

/// How `dirs` are shown in definitions' `managed_file` and in messages.
fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Apply every config file of `dirs` through the definitions service (agent prompts are looked
/// up in its prompts directory). Definitions made by a file that is refused now are left as they
/// are.
pub async fn sync(defs: &Definitions<'_>, dirs: &[&Path]) -> Synced {
    let store = defs.store;
    let prompts_dir = defs.prompts_dir;
    let scan = scan(dirs);
    let mut out = Synced {
        errors: scan.error_lines(),
        ..Synced::default()
    };
    // Nodes sharing a store apply their files one at a time, so two starting together see each
    // other's definitions instead of both creating them.
    let _lock = match store.config_lock().await {
        Ok(l) => l,
        Err(e) => {
            out.errors.push(format!("config files not applied: {e}"));
            return out;
        }
    };
    // Definitions from these files stay: the file exists but is broken right now.
    let mut kept: HashSet<String> = scan.broken.iter().map(|(p, _)| shown(p)).collect();
    let mut tools_defined: HashSet<String> = HashSet::new();
    for (path, f) in &scan.tools {
        let file = shown(path);
        match apply_tool(defs, &file, f).await {
            Ok(changed) => {
                out.changed |= changed;
                tools_defined.insert(f.tool.name.to_string());
            }
            Err(e) => {
                out.errors.push(format!("{file}: {e}"));
                kept.insert(file);
            }
        }
    }
    let mut agents_defined: HashSet<String> = HashSet::new();
    for (path, spec) in &scan.agents {
        let file = shown(path);
        let stored = match defs
            .existing_tools(spec.tools.iter().map(crate::model::ToolName::as_str))
            .await
        {
            Ok(t) => t,
            Err(e) => {
                out.errors.push(format!("{file}: {e}"));
                continue;
            }
        };
        let known = |t: &str| tools_defined.contains(t) || stored.contains(t);
        let errs = agent_errors(spec, &known, prompts_dir);
        let applied = if errs.is_empty() {
            apply_agent(defs, &file, spec).await
        } else {
            Err(errs.join(&format!("\n{file}: ")))
        };
        match applied {
            Ok(changed) => {
                out.changed |= changed;
                agents_defined.insert(spec.name.to_string());
            }
            Err(e) => {
                out.errors.push(format!("{file}: {e}"));
                kept.insert(file);
            }
        }
    }
    match remove_orphans(defs, &kept, &tools_defined, &agents_defined).await {
        Ok(changed) => out.changed |= changed,
        Err(e) => out
            .errors
            .push(format!("removing definitions of deleted files: {e}")),
    }
    out
}

fn is_file_managed(by: Option<ManagedBy>) -> bool {
    by == Some(ManagedBy::File)
}

/// A same-named definition made through the API: a refusal naming both, unless it is exactly
/// what the file says (a data dir from before files were marked), which the file then adopts.
fn api_conflict(kind: &str, name: &str, id: &str, identical: bool) -> Result<(), String> {
    if identical {
        Ok(())
    } else {
        Err(format!(
            "{kind}.name: '{name}' is also defined through the API ({kind} id {id}); delete one of the two, or rename the {kind} in this file"
        ))
    }
}

/// Upsert one tool file; whether anything changed.
async fn apply_tool(defs: &Definitions<'_>, file: &str, f: &ToolFile) -> Result<bool, String> {
    let store = defs.store;
    let fail = |e: DefinitionError| e.to_string();
    let existing = match store.get_tool_by_name(&f.tool.name).await {
        Ok(t) => Some(t),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.to_string()),
    };
    let linked = match existing.as_ref().and_then(|t| t.spec.webhook_id.clone()) {
        Some(w) => store.get_webhook(&w).await.ok(),
        None => None,
    };
    if let Some(t) = &existing
        && !is_file_managed(t.spec.managed_by)
    {
        let same_tool = t.spec == f.tool_spec(t.spec.webhook_id.clone());
        let same_hook = linked.as_ref().is_some_and(|w| w.spec == f.webhook);
        api_conflict("tool", &f.tool.name, &t.id, same_tool && same_hook)?;
    }
    let mut hook = f.webhook.clone();
    hook.managed_by = Some(ManagedBy::File);
    hook.managed_file = Some(file.to_string());
    let mut changed = false;
    let webhook_id = match linked {
        Some(w) if w.spec == hook => w.id,
        Some(w) => {
            changed = true;
            defs.update_webhook(&w.id, hook, Author::File)
                .await
                .map_err(fail)?
                .id
        }
        None => {
            changed = true;
            defs.create_webhook(hook, Author::File)
                .await
                .map_err(fail)?
                .id
        }
    };
    let mut spec = f.tool_spec(Some(webhook_id));
    spec.managed_by = Some(ManagedBy::File);
    spec.managed_file = Some(file.to_string());
    match existing {
        Some(t) if t.spec == spec => {}
        Some(t) => {
            changed = true;
            defs.update_tool(&t.id, spec, Author::File)
                .await
                .map_err(fail)?;
        }
        None => {
            changed = true;
            defs.create_tool(spec, Author::File).await.map_err(fail)?;
        }
    }
    for name in f.webhook.secret_names() {
        if !store.secret_exists(&name).await.unwrap_or(true) {
            tracing::warn!(tool = %f.tool.name, secret = %name, "secret is not set yet; calls will fail until it is (POST /v1/secrets or TOOLGATE_SECRET_<NAME>)");
        }
    }
    Ok(changed)
}

/// Upsert one agent file; whether anything changed.
async fn apply_agent(defs: &Definitions<'_>, file: &str, spec: &AgentSpec) -> Result<bool, String> {
    let store = defs.store;
    let existing = match store.get_agent_by_name(&spec.name).await {
        Ok(a) => Some(a),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.to_string()),
    };
    if let Some(a) = &existing
        && !is_file_managed(a.spec.managed_by)
    {
        api_conflict("agent", &spec.name, &a.id, a.spec == *spec)?;
    }
    let mut marked = spec.clone();
    marked.managed_by = Some(ManagedBy::File);
    marked.managed_file = Some(file.to_string());
    let done = match existing {
        Some(a) if a.spec == marked => return Ok(false),
        Some(a) => defs
            .update_agent(&a.id, marked, Author::File)
            .await
            .map(|_| ()),
        None => defs.create_agent(marked, Author::File).await.map(|_| ()),
    };
    done.map(|()| true).map_err(|e| e.to_string())
}

/// Delete file-managed tools, their webhooks and agents that no file defines any more (files
/// in `kept` are broken right now, so what they made stays).
async fn remove_orphans(
    defs: &Definitions<'_>,
    kept: &HashSet<String>,
    tools: &HashSet<String>,
    agents: &HashSet<String>,
) -> Result<bool, DefinitionError> {
    let store = defs.store;
    let orphan =
        |by: Option<ManagedBy>, file: &Option<String>, name: &str, live: &HashSet<String>| {
            is_file_managed(by)
                && !live.contains(name)
                && !file.as_ref().is_some_and(|f| kept.contains(f))
        };
    let mut changed = false;
    let gone: Vec<Tool> = store
        .list_tools()
        .await?
        .into_iter()
        .filter(|t| orphan(t.spec.managed_by, &t.spec.managed_file, &t.spec.name, tools))
        .collect();
    for t in gone {
        defs.delete_tool(&t.id, Author::File).await?;
        tracing::info!(tool = %t.spec.name, file = t.spec.managed_file.as_deref().unwrap_or(""), "tool removed with its file");
        changed = true;
    }
    // Webhooks made by files and no longer linked by any tool (an API tool may still link one:
    // then it stays, as the delete guard says).
    let linked: HashSet<crate::model::WebhookId> = store
        .list_tools()
        .await?
        .into_iter()
        .filter_map(|t| t.spec.webhook_id)
        .collect();
    for w in store.list_webhooks().await? {
        let file_gone = !w
            .spec
            .managed_file
            .as_ref()
            .is_some_and(|f| kept.contains(f));
        if is_file_managed(w.spec.managed_by) && !linked.contains(&w.id) && file_gone {
            match defs.delete_webhook(&w.id, Author::File).await {
                Ok(()) => changed = true,
                // Linked by an API tool meanwhile: the delete guard keeps it, as it should.
                Err(DefinitionError::Store(StoreError::InUse { .. })) => {}
                Err(e) => return Err(e),
            }
        }
    }
    for a in store.list_agents().await? {
        if orphan(
            a.spec.managed_by,
            &a.spec.managed_file,
            &a.spec.name,
            agents,
        ) {
            defs.delete_agent(&a.id, Author::File).await?;
            tracing::info!(agent = %a.spec.name, "agent removed with its file");
            changed = true;
        }
    }
    Ok(changed)
}
