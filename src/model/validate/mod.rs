//! Definition checks: every problem in a webhook, tool, agent, secret or subscription, each with
//! its field path, at once. Runs at the edge (API and config files) so the call path can trust
//! what it is given. One file per kind of definition.

mod agent;
mod field_rules;
mod subscription;
mod webhook;

use serde::Serialize;

use super::names::SecretName;
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

/// A new secret's name, or every problem with the name and the value (reported together).
pub fn parse_new_secret(name: String, value: &str) -> Result<SecretName, Vec<FieldError>> {
    let name = SecretName::parse(name);
    let mut errs: Vec<FieldError> = name
        .as_ref()
        .err()
        .map(|rule| FieldError::new("name", rule.as_str()))
        .into_iter()
        .collect();
    errs.extend(validate_secret_value(value));
    match name {
        Ok(name) if errs.is_empty() => Ok(name),
        _ => Err(errs),
    }
}

/// Every problem with a secret's value.
pub fn validate_secret_value(value: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
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
    fn a_new_secret_reports_name_and_value_together() {
        let errs = parse_new_secret("1bad".into(), "").unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "value"]);
        assert_eq!(errs[0].message, SecretName::RULE);
        assert_eq!(
            parse_new_secret("crm_token".into(), "v").unwrap(),
            "crm_token"
        );
        let errs = parse_new_secret("ok".into(), &"x".repeat(65_537)).unwrap_err();
        assert_eq!(errs[0].field, "value");
    }

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
