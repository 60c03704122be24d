//! Config as code: `tools/*.toml`, one tool per file (a `[tool]` and a `[webhook]` table mirroring
//! the API JSON), and agent files (an `[agent]` table, usually in `prompts/` beside their prompt).
//! Loaded at start as an idempotent upsert keyed by name; `validate` runs the same checks offline.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::validate::{validate_agent, validate_tool, validate_webhook};
use crate::model::{AgentSpec, ToolSpec, WebhookSpec};
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

/// One agent file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// The agent.
    pub agent: AgentSpec,
}

/// Everything found in config directories.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Tool files.
    pub tools: Vec<(PathBuf, ToolFile)>,
    /// Agent files.
    pub agents: Vec<(PathBuf, AgentSpec)>,
}

/// Load several directories (e.g. `tools/` and `prompts/`) and check agents against the tools found
/// there or already known (`known_tool`). An agent's `prompt` must exist beside its file.
pub fn load_dirs(dirs: &[&Path], known_tool: &dyn Fn(&str) -> bool) -> Result<Loaded, Vec<String>> {
    let mut loaded = Loaded::default();
    let mut errors = Vec::new();
    for d in dirs {
        match load_dir(d) {
            Ok(tools) => loaded.tools.extend(tools),
            Err(e) => errors.extend(e),
        }
        match load_agents(d) {
            Ok(a) => loaded.agents.extend(a),
            Err(e) => errors.extend(e),
        }
    }
    for (path, spec) in &loaded.agents {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tool_known =
            |t: &str| known_tool(t) || loaded.tools.iter().any(|(_, f)| f.tool.name == t);
        for e in validate_agent(spec, &tool_known, &|p| dir.join(p).is_file()) {
            errors.push(format!(
                "{}: agent.{}: {}",
                path.display(),
                e.field,
                e.message
            ));
        }
        if let Some((other, _)) = loaded
            .agents
            .iter()
            .find(|(p, a)| a.name == spec.name && p != path)
        {
            errors.push(format!(
                "{}: agent.name: '{}' is also defined in {}",
                path.display(),
                spec.name,
                other.display()
            ));
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, Vec<String>> {
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
    Ok(paths)
}

fn read_json(p: &Path) -> Result<serde_json::Value, Vec<String>> {
    let text = std::fs::read_to_string(p).map_err(|e| vec![format!("file: {e}")])?;
    let value: toml::Value =
        toml::from_str(&text).map_err(|e| vec![format!("toml: {}", e.message().trim())])?;
    serde_json::to_value(value).map_err(|e| vec![format!("toml: {e}")])
}

fn is_agent_file(p: &Path) -> bool {
    read_json(p).is_ok_and(|v| v.get("agent").is_some())
}

fn load_agents(dir: &Path) -> Result<Vec<(PathBuf, AgentSpec)>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in toml_files(dir)?.into_iter().filter(|p| is_agent_file(p)) {
        let parsed = read_json(&p).and_then(|json| {
            serde_path_to_error::deserialize::<_, AgentFile>(json)
                .map_err(|e| vec![format!("{}: {}", e.path(), e.inner())])
        });
        match parsed {
            Ok(f) => out.push((p, f.agent)),
            Err(lines) => errors.extend(lines.into_iter().map(|l| format!("{}: {l}", p.display()))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Parse and check every tool `*.toml` in `dir` (sorted by name; agent files are skipped). Errors are
/// `file: field: message` lines. A missing directory holds no tools. Secret references are checked
/// by name only: values may be provided after the files.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, ToolFile)>, Vec<String>> {
    let mut errors = Vec::new();
    let mut files: Vec<(PathBuf, ToolFile)> = Vec::new();
    for p in toml_files(dir)?.into_iter().filter(|p| !is_agent_file(p)) {
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
