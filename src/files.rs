//! Config as code: `tools/*.toml`, one tool per file (a `[tool]` and a `[webhook]` table mirroring
//! the API JSON). Loaded at start as an idempotent upsert keyed by tool name; `validate` checks offline.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::validate::{validate_tool, validate_webhook};
use crate::model::{ToolSpec, WebhookSpec};
use crate::store::{Store, StoreError};

/// The `[tool]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSection {
    /// Tool name.
    pub name: String,
    /// Description (defaults to the webhook's).
    #[serde(default)]
    pub description: Option<String>,
}

/// One `tools/*.toml` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolFile {
    /// The tool.
    pub tool: ToolSection,
    /// The webhook it calls.
    pub webhook: WebhookSpec,
}

/// Parse and check every `*.toml` in `dir` (sorted by name). Errors are `file: field: message` lines.
/// A missing directory holds no tools. Secret references are checked by name only: values may be
/// provided after the files.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, ToolFile)>, Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(vec![format!("{}: {e}", dir.display())]),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut errors = Vec::new();
    let mut files: Vec<(PathBuf, ToolFile)> = Vec::new();
    for p in paths {
        let shown = p.display().to_string();
        match parse_file(&p) {
            Err(lines) => errors.extend(lines.into_iter().map(|l| format!("{shown}: {l}"))),
            Ok(f) => {
                if let Some((other, _)) = files.iter().find(|(_, g)| g.tool.name == f.tool.name) {
                    errors.push(format!(
                        "{shown}: tool.name: '{}' is already defined in {}",
                        f.tool.name,
                        other.display()
                    ));
                }
                files.push((p, f));
            }
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn parse_file(p: &Path) -> Result<ToolFile, Vec<String>> {
    let text = std::fs::read_to_string(p).map_err(|e| vec![format!("file: {e}")])?;
    let value: toml::Value =
        toml::from_str(&text).map_err(|e| vec![format!("toml: {}", e.message())])?;
    let json = serde_json::to_value(value).map_err(|e| vec![format!("toml: {e}")])?;
    let file: ToolFile = serde_path_to_error::deserialize(json)
        .map_err(|e| vec![format!("{}: {}", e.path(), e.inner())])?;
    let mut errs: Vec<String> = validate_webhook(&file.webhook, &|_| true)
        .into_iter()
        .map(|e| format!("webhook.{}: {}", e.field, e.message))
        .collect();
    let tool_spec = ToolSpec {
        name: file.tool.name.clone(),
        description: file.tool.description.clone(),
        webhook_id: None,
    };
    errs.extend(
        validate_tool(&tool_spec)
            .into_iter()
            .map(|e| format!("tool.{}: {}", e.field, e.message)),
    );
    if errs.is_empty() { Ok(file) } else { Err(errs) }
}

/// Upsert loaded files into the store: a linked tool's webhook is updated in place, otherwise created.
pub async fn apply(store: &dyn Store, files: &[(PathBuf, ToolFile)]) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    for (path, f) in files {
        if let Err(e) = apply_one(store, f).await {
            errors.push(format!("{}: {e}", path.display()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

async fn apply_one(store: &dyn Store, f: &ToolFile) -> Result<(), StoreError> {
    let existing = match store.get_tool_by_name(&f.tool.name) {
        Ok(t) => Some(t),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let linked = existing
        .as_ref()
        .and_then(|t| t.spec.webhook_id.clone())
        .and_then(|w| store.get_webhook(&w).ok());
    let webhook_id = match linked {
        Some(w) if w.spec == f.webhook => w.id,
        Some(w) => {
            store
                .update_webhook(&w.id, f.webhook.clone(), false)
                .await?
                .id
        }
        None => store.create_webhook(f.webhook.clone(), false).await?.id,
    };
    let spec = ToolSpec {
        name: f.tool.name.clone(),
        description: f.tool.description.clone(),
        webhook_id: Some(webhook_id),
    };
    match existing {
        Some(t) if t.spec == spec => {}
        Some(t) => {
            store.update_tool(&t.id, spec).await?;
        }
        None => {
            store.create_tool(spec).await?;
        }
    }
    for name in f.webhook.secret_names() {
        if !store.secret_exists(&name) {
            tracing::warn!(tool = %f.tool.name, secret = %name, "secret is not set yet; calls will fail until it is (POST /v1/secrets or TOOLGATE_SECRET_<NAME>)");
        }
    }
    Ok(())
}
