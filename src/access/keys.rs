//! API keys: `tg_` and 256 random bits, shown once; only a SHA-256 hash is stored. Verification
//! hashes the presented key and compares hashes in constant time against an in-memory table that
//! every key write (here, or on another node) reloads, so a revoked or expired key is refused on
//! its very next request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::Role;
use crate::store::{Store, StoreError};

/// What a key looks like to the API: everything but the key itself and its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKey {
    /// Opaque id (`key_…`).
    pub id: String,
    /// Unique name; tools list key names as their authorized callers.
    pub name: String,
    /// What the key may do.
    pub role: Role,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    /// Context merged over every call's context made with this key (a tenant id, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
    /// Requests per minute (token bucket); none means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<u32>,
    /// When the key stops working (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Last request made with the key (kept to the minute).
    #[serde(default)]
    pub last_used_at: Option<String>,
}

/// A key as stored: the public record and the hash of the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    /// The public record.
    #[serde(flatten)]
    pub key: ApiKey,
    /// SHA-256 of the key, hex.
    pub hash: String,
}

/// `POST /v1/keys` and `PUT /v1/keys/{id}`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Unique name.
    pub name: String,
    /// `admin`, `editor`, `invoker` or `viewer`.
    pub role: Role,
    /// When the key stops working (RFC 3339); none means never.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Context merged over every call's context made with this key; the request cannot override it.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Requests per minute; none means unlimited.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
}

/// A fresh key value: `tg_` and 32 random bytes, URL-safe base64.
pub fn generate() -> String {
    use chacha20poly1305::aead::{KeyInit, OsRng};
    let raw = chacha20poly1305::ChaCha20Poly1305::generate_key(&mut OsRng);
    format!("tg_{}", B64URL.encode(raw))
}

/// The stored form of a key value.
pub fn hash(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a key shows of itself in lists.
pub fn prefix(key: &str) -> String {
    key.chars().take(10).collect()
}

/// Seconds since the epoch of an RFC 3339 time.
pub fn parse_time(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A key known to this node.
#[derive(Debug)]
pub struct KeyEntry {
    /// The public record.
    pub key: ApiKey,
    hash: String,
    expires: Option<i64>,
    /// Last use persisted, in seconds.
    persisted_use: AtomicI64,
}

impl KeyEntry {
    fn new(stored: StoredKey) -> KeyEntry {
        let expires = stored.key.expires_at.as_deref().and_then(parse_time);
        let last = stored
            .key
            .last_used_at
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(0);
        KeyEntry {
            key: stored.key,
            hash: stored.hash,
            expires,
            persisted_use: AtomicI64::new(last),
        }
    }

    /// Whether the key has run out.
    pub fn expired(&self) -> bool {
        self.expires.is_some_and(|e| e <= now_secs())
    }

    /// An entry for a stored record (to explain a key's rights).
    pub fn from_record(key: ApiKey) -> KeyEntry {
        KeyEntry::new(StoredKey {
            key,
            hash: String::new(),
        })
    }

    /// An entry for unit tests.
    #[doc(hidden)]
    pub fn for_test(name: &str, role: Role, context: Option<Value>) -> KeyEntry {
        KeyEntry::new(StoredKey {
            key: ApiKey {
                id: format!("key_{name}"),
                name: name.into(),
                role,
                prefix: "tg_test".into(),
                context: context.and_then(|c| c.as_object().cloned()),
                rate_limit_per_minute: None,
                expires_at: None,
                created_at: String::new(),
                updated_at: String::new(),
                last_used_at: None,
            },
            hash: String::new(),
        })
    }
}

/// Why a presented key was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No key has this value (never issued, or revoked).
    Unknown,
    /// The key has expired.
    Expired,
}

/// Every key of the store, by hash.
#[derive(Default)]
pub struct Keys {
    by_hash: ArcSwap<HashMap<String, Arc<KeyEntry>>>,
}

impl Keys {
    /// Read every key from the store (start, after a key write, after another node's change).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let all = store.list_keys().await?;
        let map = all
            .into_iter()
            .map(|k| (k.hash.clone(), Arc::new(KeyEntry::new(k))))
            .collect();
        self.by_hash.store(Arc::new(map));
        Ok(())
    }

    /// Whether any key exists.
    pub fn is_empty(&self) -> bool {
        self.by_hash.load().is_empty()
    }

    /// The entry of a presented key value.
    pub fn verify(&self, presented: &str) -> Result<Arc<KeyEntry>, Refusal> {
        use subtle::ConstantTimeEq;
        let h = hash(presented);
        let map = self.by_hash.load();
        let entry = map.get(&h).ok_or(Refusal::Unknown)?;
        // The table is keyed by hash, so a match is already certain; comparing the full hashes
        // in constant time keeps the check itself free of early exits.
        if !bool::from(entry.hash.as_bytes().ct_eq(h.as_bytes())) {
            return Err(Refusal::Unknown);
        }
        if entry.expired() {
            return Err(Refusal::Expired);
        }
        Ok(entry.clone())
    }

    /// Note a use of `entry`; returns the time to persist when the stored value is a minute or
    /// more old (persisting every request would be a write per call).
    pub fn touch(&self, entry: &KeyEntry) -> Option<String> {
        let now = now_secs();
        let last = entry.persisted_use.load(Ordering::Relaxed);
        if now - last < 60 {
            return None;
        }
        entry
            .persisted_use
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(crate::model::now_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hashed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("tg_") && a.len() >= 3 + 43, "{a}");
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a[3..]));
        assert_eq!(prefix(&a).len(), 10);
    }
}
