//! Opened secret values kept in memory, so a call neither decrypts nor reaches the store for a
//! secret it used before, and calls to cached tools keep working while a network store is
//! unreachable. Every secret write (on this node, or on another one through the store's change
//! feed) clears it.

// foldhash: these maps are looked up on every call, and SipHash cost more than the lookups.
use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::{Store, StoreError};

/// Where a subject's value is kept among the opened values: a name cannot hold the separator,
/// so it never collides with a shared value.
pub fn subject_key(name: &str, subject: &str) -> String {
    format!("{name}\u{1f}{subject}")
}

/// Name → opened value, cleared on every secret write.
pub struct SecretCache {
    store: Arc<dyn Store>,
    values: RwLock<HashMap<String, Arc<str>>>,
    /// Bumped by every clear: a read that started before a clear must not store what it read.
    generation: AtomicU64,
}

impl SecretCache {
    /// A cache in front of `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        SecretCache {
            store,
            values: RwLock::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The opened value of the named secret, `None` if it is not stored.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<str>>, StoreError> {
        self.cached(name, || self.store.secret_value(name)).await
    }

    /// The opened value of the named secret for one subject, `None` if that subject has none
    /// (never another subject's value, nor the shared one).
    pub async fn get_for(&self, name: &str, subject: &str) -> Result<Option<Arc<str>>, StoreError> {
        self.cached(&subject_key(name, subject), || {
            self.store.subject_value(name, subject)
        })
        .await
    }

    /// The value kept under `key`, or what `fetch` reads (kept unless a clear came meanwhile).
    /// A hit allocates nothing: the store is only asked on a miss.
    async fn cached<'a>(
        &'a self,
        key: &str,
        fetch: impl FnOnce() -> crate::store::StoreFuture<'a, Option<String>>,
    ) -> Result<Option<Arc<str>>, StoreError> {
        if let Some(v) = self
            .values
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(Some(v.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(value) = fetch().await? else {
            return Ok(None);
        };
        let value: Arc<str> = value.into();
        let mut map = self.values.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            map.insert(key.to_string(), value.clone());
        }
        Ok(Some(value))
    }

    /// The opened values of `names` that are stored (a missing one is simply absent).
    pub async fn get_all(&self, names: &[String]) -> Result<HashMap<String, Arc<str>>, StoreError> {
        let mut out = HashMap::with_capacity(names.len());
        for n in names {
            if let Some(v) = self.get(n).await? {
                out.insert(n.clone(), v);
            }
        }
        Ok(out)
    }

    /// Forget every value (a secret was written or deleted).
    pub fn clear(&self) {
        let mut map = self.values.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }
}
