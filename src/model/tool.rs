//! A tool: the name and description a model sees, linked to one webhook.

use serde::{Deserialize, Serialize};

use super::ManagedBy;

/// A tool as submitted by a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// Function name shown to the model, `^[A-Za-z0-9_-]{1,64}$`, unique.
    pub name: super::ToolName,
    /// Description for the model; the webhook's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The linked webhook; `None` means unlinked (offered to no model).
    #[serde(default)]
    pub webhook_id: Option<super::WebhookId>,
    /// Set by toolgate on a definition loaded from a config file: the API refuses to edit or
    /// delete it (409 `managed_by_file`); the file is the place to change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<ManagedBy>,
    /// The file that defines it, when `managed_by` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_file: Option<String>,
    /// Who may use it: `"all"` (default) or the names of the API keys that may.
    #[serde(default, skip_serializing_if = "crate::access::Authorized::is_all")]
    pub authorized: crate::access::Authorized,
}

/// A stored tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Tool {
    /// Opaque id.
    pub id: super::ToolId,
    /// The definition.
    #[serde(flatten)]
    pub spec: ToolSpec,
    /// Creation time.
    pub created_at: String,
    /// Last edit time.
    pub updated_at: String,
}

stamped!(Tool, ToolSpec, ToolId);
