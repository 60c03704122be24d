//! Agent definitions.

use super::{FieldError, check_unmanaged};
use crate::model::agent::AgentSpec;

/// A prompt file name: a plain name inside the prompts directory, never a path.
pub fn is_prompt_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
}

/// Every problem with an agent. `tool_exists` and `prompt_exists` answer for names it refers to.
pub fn validate_agent(
    spec: &AgentSpec,
    tool_exists: &dyn Fn(&str) -> bool,
    prompt_exists: &dyn Fn(&str) -> bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(check_unmanaged(spec.managed_by, &spec.managed_file));
    if spec.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        errs.push(FieldError::new("model", "model must not be empty"));
    }
    match (&spec.system_prompt, &spec.prompt) {
        (Some(_), Some(_)) => errs.push(FieldError::new(
            "prompt",
            "give either system_prompt or prompt, not both",
        )),
        (None, Some(p)) if !is_prompt_file_name(p) => errs.push(FieldError::new(
            "prompt",
            "prompt is a file name in the prompts directory, e.g. \"support.md\"",
        )),
        (None, Some(p)) if !prompt_exists(p) => errs.push(FieldError::new(
            "prompt",
            format!("no prompt file '{p}' in the prompts directory"),
        )),
        _ => {}
    }
    for (i, t) in spec.tools.iter().enumerate() {
        if !tool_exists(t) {
            errs.push(FieldError::new(
                format!("tools[{i}]"),
                format!("unknown tool '{t}'"),
            ));
        } else if spec.tools[..i].contains(t) {
            errs.push(FieldError::new(
                format!("tools[{i}]"),
                format!("tool '{t}' is listed twice"),
            ));
        }
    }
    if !(1..=64).contains(&spec.max_steps) {
        errs.push(FieldError::new(
            "max_steps",
            "max_steps must be between 1 and 64",
        ));
    }
    errs
}
