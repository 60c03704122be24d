//! Config as code from an OpenAPI document: one `tools/*.toml` per operation, which
//! `toolgate validate` accepts and `serve` loads like any hand-written file.

use super::{Plan, Skipped};
use crate::files::{ToolFile, ToolSection};

/// File name and TOML text for each planned tool; operations that cannot be written as TOML (a
/// `null` in a schema, which TOML has no word for) are added to `skipped`.
pub fn tool_files(plan: &Plan, skipped: &mut Vec<Skipped>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in &plan.tools {
        let file = ToolFile {
            tool: ToolSection {
                authorized: Default::default(),
                name: p.name.clone(),
                description: (!p.description.is_empty()).then(|| p.description.clone()),
            },
            webhook: p.webhook.clone(),
        };
        let header = format!(
            "# Imported from \"{}\", operation {} ({} {}). Re-run toolgate import-openapi to update.\n",
            plan.document, p.operation_id, p.method, p.path
        );
        match toml::to_string(&file) {
            Ok(text) => out.push((format!("{}.toml", p.name), header + &text)),
            Err(e) => skipped.push(Skipped {
                operation_id: p.operation_id.clone(),
                method: p.method.clone(),
                path: p.path.clone(),
                reason: format!("cannot be written as TOML: {e}"),
            }),
        }
    }
    out
}
