//! Secret metadata. The value itself only ever exists sealed in the store or briefly in memory.

use serde::{Deserialize, Serialize};

/// What the API shows of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretMeta {
    /// Opaque id.
    pub id: String,
    /// Name used in webhook definitions.
    pub name: String,
    /// Creation time.
    pub created_at: String,
    /// Last value change.
    pub updated_at: String,
}
