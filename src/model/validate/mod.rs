//! Definition checks: every problem in a webhook, tool, agent, secret or subscription, each with
//! its field path, at once. Runs at the edge (API and config files) so the call path can trust
//! what it is given. One file per kind of definition.

mod agent;
mod field_rules;
mod subscription;
mod webhook;

use serde::Serialize;

use super::tool::ToolSpec;

pub use super::names::{
    check_display_name, is_dotted_path, is_identifier, is_tool_name, url_credentials_error,
};
pub use agent::{is_prompt_file_name, validate_agent};
pub use subscription::validate_subscription;
pub use webhook::validate_webhook;

/// One problem with a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FieldError {
    /// Path of the offending field, e.g. `path_params[0].name`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    /// A problem at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `managed_by` and `managed_file` are toolgate's marks of file-loaded definitions: never given.
pub(super) fn check_unmanaged(
    by: Option<super::ManagedBy>,
    file: &Option<String>,
) -> Option<FieldError> {
    (by.is_some() || file.is_some()).then(|| {
        FieldError::new(
            "managed_by",
            "managed_by and managed_file are set by toolgate on definitions loaded from config files",
        )
    })
}

/// Every problem with a tool definition (the webhook link is checked by the store; the name
/// is a `ToolName`, valid since it was parsed).
pub fn validate_tool(spec: &ToolSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(check_unmanaged(spec.managed_by, &spec.managed_file));
    if let Some(d) = &spec.description
        && d.len() > 4096
    {
        errs.push(FieldError::new(
            "description",
            "description is longer than 4096 characters",
        ));
    }
    errs
}

/// Every problem with a secret's name and value.
pub fn validate_secret(name: Option<&str>, value: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(n) = name
        && !is_identifier(n)
    {
        errs.push(FieldError::new(
            "name",
            "secret names match ^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        ));
    }
    if value.is_empty() {
        errs.push(FieldError::new("value", "value must not be empty"));
    } else if value.len() > 65_536 {
        errs.push(FieldError::new("value", "value is longer than 64 KiB"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for (s, ok) in [
            ("a", true),
            ("_x1", true),
            ("1a", false),
            ("a-b", false),
            ("", false),
        ] {
            assert_eq!(is_identifier(s), ok, "{s}");
        }
        assert!(!is_identifier(&"a".repeat(65)));
    }
}
