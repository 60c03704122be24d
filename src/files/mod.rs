//! Config as code: `tools/*.toml`, one tool per file (a `[tool]` and a `[webhook]` table mirroring
//! the API JSON), and agent files (an `[agent]` table, usually in `prompts/` beside their prompt).
//! This module parses them; `sync` applies them to the store (at start and on every change seen
//! by `watch`), and `validate` runs the same checks offline.

pub mod sync;
pub mod watch;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::submitted::{deserialize_reporting_all, read_with_stand_ins, without_follow_ons};
use crate::model::validate::{FieldError, validate_agent, validate_tool, validate_webhook};
use crate::model::{AgentSpec, ToolSpec, WebhookSpec};

/// The `[tool]` table.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSection {
    /// Tool name.
    pub name: crate::model::ToolName,
    /// Description (defaults to the webhook's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who may use it: `"all"` (default) or the names of the API keys that may.
    #[serde(default, skip_serializing_if = "crate::access::Authorized::is_all")]
    pub authorized: crate::access::Authorized,
}

/// One `tools/*.toml` file.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolFile {
    /// The tool.
    pub tool: ToolSection,
    /// The webhook it calls.
    pub webhook: WebhookSpec,
}

impl ToolFile {
    /// The tool as the store keeps it, linked to `webhook_id`.
    pub fn tool_spec(&self, webhook_id: Option<crate::model::WebhookId>) -> ToolSpec {
        ToolSpec {
            name: self.tool.name.clone(),
            description: self.tool.description.clone(),
            webhook_id,
            managed_by: None,
            managed_file: None,
            authorized: self.tool.authorized.clone(),
        }
    }
}

/// One agent file.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// The agent.
    pub agent: AgentSpec,
}

/// The JSON Schema of a config file kind (`tool-file` or `agent-file`), from the same types
/// `validate` and `serve` read the files with.
pub fn file_schema(kind: &str) -> String {
    let schema = match kind {
        "agent-file" => schemars::schema_for!(AgentFile),
        _ => schemars::schema_for!(ToolFile),
    };
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// Every config file found, parsed and checked one by one.
#[derive(Debug, Default)]
pub struct Scan {
    /// Tool files that parsed and validated.
    pub tools: Vec<(PathBuf, ToolFile)>,
    /// Agent files that parsed (their tools and prompt are checked by the caller, who knows
    /// which tools exist).
    pub agents: Vec<(PathBuf, AgentSpec)>,
    /// Files refused, with `field: message` lines.
    pub broken: Vec<(PathBuf, Vec<String>)>,
}

impl Scan {
    /// Every problem as a `file: field: message` line.
    pub fn error_lines(&self) -> Vec<String> {
        self.broken
            .iter()
            .flat_map(|(p, lines)| lines.iter().map(move |l| format!("{}: {l}", p.display())))
            .collect()
    }
}

/// Directories in the order given, each once (`tools/` and `prompts/` may be the same).
fn distinct_dirs<'a>(dirs: &[&'a Path]) -> Vec<&'a Path> {
    let mut out: Vec<&Path> = Vec::new();
    for d in dirs {
        let same = |o: &&Path| {
            *o == *d || matches!((o.canonicalize(), d.canonicalize()), (Ok(a), Ok(b)) if a == b)
        };
        if !out.iter().any(same) {
            out.push(d);
        }
    }
    out
}

/// Parse every `*.toml` in `dirs` (sorted by name within a directory). A missing directory holds
/// nothing. A name defined in two files breaks the second file.
pub fn scan(dirs: &[&Path]) -> Scan {
    let mut scan = Scan::default();
    for dir in distinct_dirs(dirs) {
        let paths = match toml_files(dir) {
            Ok(p) => p,
            Err(e) => {
                scan.broken.push((dir.to_path_buf(), vec![e]));
                continue;
            }
        };
        for p in paths {
            let parsed = read_json(&p).and_then(|json| {
                if json.get("agent").is_some() {
                    parse_agent(json).map(|a| (None, Some(a)))
                } else {
                    parse_tool(json).map(|t| (Some(t), None))
                }
            });
            match parsed {
                Err(lines) => scan.broken.push((p, lines)),
                Ok((Some(t), _)) => {
                    if let Some((other, _)) =
                        scan.tools.iter().find(|(_, g)| g.tool.name == t.tool.name)
                    {
                        let line = format!(
                            "tool.name: '{}' is already defined in {}",
                            t.tool.name,
                            other.display()
                        );
                        scan.broken.push((p, vec![line]));
                    } else {
                        scan.tools.push((p, t));
                    }
                }
                Ok((None, Some(a))) => {
                    if let Some((other, _)) = scan.agents.iter().find(|(_, b)| b.name == a.name) {
                        let line = format!(
                            "agent.name: '{}' is also defined in {}",
                            a.name,
                            other.display()
                        );
                        scan.broken.push((p, vec![line]));
                    } else {
                        scan.agents.push((p, a));
                    }
                }
                Ok((None, None)) => {}
            }
        }
    }
    scan
}

/// Check an agent file's tools (`tool_known`) and prompt (a file in `prompts_dir`).
pub fn agent_errors(
    spec: &AgentSpec,
    tool_known: &dyn Fn(&str) -> bool,
    prompts_dir: &Path,
) -> Vec<String> {
    validate_agent(spec, tool_known, &|p| prompts_dir.join(p).is_file())
        .into_iter()
        .map(|e| format!("agent.{}: {}", e.field, e.message))
        .collect()
}

/// Everything found in config directories.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Tool files.
    pub tools: Vec<(PathBuf, ToolFile)>,
    /// Agent files.
    pub agents: Vec<(PathBuf, AgentSpec)>,
}

/// The offline check of `toolgate validate`: every file of `dirs`, agents checked against the
/// tools found there or already known (`known_tool`); an agent's `prompt` must exist beside its file.
pub fn load_dirs(dirs: &[&Path], known_tool: &dyn Fn(&str) -> bool) -> Result<Loaded, Vec<String>> {
    let scan = scan(dirs);
    let mut errors = scan.error_lines();
    for (path, spec) in &scan.agents {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tool_known =
            |t: &str| known_tool(t) || scan.tools.iter().any(|(_, f)| f.tool.name == t);
        for e in agent_errors(spec, &tool_known, dir) {
            errors.push(format!("{}: {e}", path.display()));
        }
    }
    if errors.is_empty() {
        Ok(Loaded {
            tools: scan.tools,
            agents: scan.agents,
        })
    } else {
        Err(errors)
    }
}

fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("directory: {e}")),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
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

/// Serde's errors as `path: message` lines.
fn lines(errs: Vec<FieldError>) -> Vec<String> {
    errs.into_iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect()
}

/// Tools and the prompt are checked later, against everything the directories define.
fn parse_agent(json: serde_json::Value) -> Result<AgentSpec, Vec<String>> {
    let file: AgentFile = deserialize_reporting_all(json, &str::to_string).map_err(lines)?;
    Ok(file.agent)
}

/// Secret references are checked by name only: values may be provided after the files.
fn parse_tool(json: serde_json::Value) -> Result<ToolFile, Vec<String>> {
    let (file, read_errs) = read_with_stand_ins::<ToolFile>(json, &str::to_string);
    let Some(file) = file else {
        return Err(lines(read_errs));
    };
    let prefixed = |section: &str, errs: Vec<FieldError>| {
        errs.into_iter()
            .map(|e| FieldError::new(format!("{section}.{}", e.field), e.message))
            .collect::<Vec<_>>()
    };
    let mut errs = prefixed("webhook", validate_webhook(&file.webhook, &|_| true));
    errs.extend(prefixed("tool", validate_tool(&file.tool_spec(None))));
    let errs = without_follow_ons(read_errs, errs);
    if errs.is_empty() {
        Ok(file)
    } else {
        Err(lines(errs))
    }
}
