//! Secret metadata. The value itself only ever exists sealed in the store or briefly in memory.

use serde::{Deserialize, Serialize};

/// What the API shows of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretMeta {
    /// Opaque id.
    pub id: super::SecretId,
    /// Name used in webhook definitions.
    pub name: super::SecretName,
    /// Creation time.
    pub created_at: String,
    /// Last value change.
    pub updated_at: String,
}

impl SecretMeta {
    /// The metadata of a new secret: a fresh id, created and updated now.
    pub fn new(name: super::SecretName) -> SecretMeta {
        let now = super::now_rfc3339();
        SecretMeta {
            id: super::SecretId::new(),
            name,
            created_at: now.clone(),
            updated_at: now,
        }
    }
}
