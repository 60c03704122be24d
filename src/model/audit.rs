//! One entry of the audit log: who changed what, when, and how it ended.

use serde::{Deserialize, Serialize};

/// A write made through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// Opaque, time-ordered id (`aud_…`).
    pub id: String,
    /// When the answer was sent.
    pub at: String,
    /// Who: the key's name, `admin-token`, or `local` (no-token mode on loopback).
    pub actor: String,
    /// HTTP method.
    pub method: String,
    /// The route, as in the API reference (`/v1/webhooks/{id}`).
    pub route: String,
    /// The resource the write was about, when the path or the answer names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The answer's HTTP status.
    pub status: u16,
}
