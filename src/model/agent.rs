//! An agent: a model, a system prompt (inline or a file in `prompts/`), its tools and a step limit.

use serde::{Deserialize, Serialize};

use super::ManagedBy;

/// Most model calls per conversation turn when an agent (or an OpenAI client) names none.
pub const DEFAULT_MAX_STEPS: u32 = 8;

fn default_max_steps() -> u32 {
    DEFAULT_MAX_STEPS
}

/// An agent as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Unique name, `^[A-Za-z0-9_-]{1,64}$` (used in `model: "agent:<name>"`).
    pub name: super::AgentName,
    /// Model id; the gateway's `--llm-model` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Inline system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// File name in the prompts directory, re-read on every conversation turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Tool names offered to the model.
    #[serde(default)]
    pub tools: Vec<super::ToolName>,
    /// Most model calls per conversation turn.
    #[serde(default = "default_max_steps")]
    pub max_steps: u32,
    /// Set by toolgate on a definition loaded from a config file: the API refuses to edit or
    /// delete it (409 `managed_by_file`); the file is the place to change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<ManagedBy>,
    /// The file that defines it, when `managed_by` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_file: Option<String>,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Agent {
    /// Opaque id.
    pub id: super::AgentId,
    /// The definition.
    #[serde(flatten)]
    pub spec: AgentSpec,
    /// Creation time.
    pub created_at: String,
    /// Last edit time.
    pub updated_at: String,
}

stamped!(Agent, AgentSpec, AgentId);
