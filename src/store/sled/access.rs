//! API keys (by id, with a name index) and the audit log (by time-ordered id).

use super::*;
use crate::access::keys::{ApiKey, StoredKey};
use crate::model::AuditEntry;
use crate::store::{AccessStore, AuditFilter};

impl AccessStore for SledStore {
    fn create_key<'a>(&'a self, key: &'a StoredKey) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let bytes = encode(key)?;
            let id = key.key.id.as_bytes();
            (&self.keys, &self.key_names)
                .transaction(|(k, kn)| {
                    if kn.get(key.key.name.as_bytes())?.is_some() {
                        return abort(StoreError::NameTaken(key.key.name.clone()));
                    }
                    kn.insert(key.key.name.as_bytes(), id)?;
                    k.insert(id, bytes.clone())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await
        })
    }

    fn list_keys<'a>(&'a self) -> StoreFuture<'a, Vec<StoredKey>> {
        Box::pin(async move { Self::all(&self.keys) })
    }

    fn update_key<'a>(&'a self, key: &'a ApiKey) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            (&self.keys, &self.key_names)
                .transaction(|(k, kn)| {
                    let Some(raw) = k.get(key.id.as_bytes())? else {
                        return abort(StoreError::NotFound("key"));
                    };
                    let old: StoredKey = tx_decode(&raw)?;
                    if let Some(owner) = kn.get(key.name.as_bytes())?
                        && owner.as_ref() != key.id.as_bytes()
                    {
                        return abort(StoreError::NameTaken(key.name.clone()));
                    }
                    if old.key.name != key.name {
                        kn.remove(old.key.name.as_bytes())?;
                    }
                    kn.insert(key.name.as_bytes(), key.id.as_bytes())?;
                    let new = StoredKey {
                        key: key.clone(),
                        hash: old.hash,
                    };
                    k.insert(
                        key.id.as_bytes(),
                        encode(&new).map_err(ConflictableTransactionError::Abort)?,
                    )?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await
        })
    }

    fn delete_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            (&self.keys, &self.key_names)
                .transaction(|(k, kn)| {
                    let Some(raw) = k.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("key"));
                    };
                    let old: StoredKey = tx_decode(&raw)?;
                    kn.remove(old.key.name.as_bytes())?;
                    k.remove(id.as_bytes())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await
        })
    }

    fn touch_key<'a>(&'a self, id: &'a str, at: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.keys
                .transaction(|k| {
                    let Some(raw) = k.get(id.as_bytes())? else {
                        return Ok(());
                    };
                    let mut key: StoredKey = tx_decode(&raw)?;
                    key.key.last_used_at = Some(at.to_string());
                    k.insert(
                        id.as_bytes(),
                        encode(&key).map_err(ConflictableTransactionError::Abort)?,
                    )?;
                    Ok(())
                })
                .map_err(tx_err)?;
            Ok(())
        })
    }

    fn append_audit<'a>(&'a self, entry: &'a AuditEntry) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.audit.insert(entry.id.as_bytes(), encode(entry)?)?;
            self.durable().await
        })
    }

    fn list_audit<'a>(&'a self, filter: &'a AuditFilter) -> StoreFuture<'a, Vec<AuditEntry>> {
        Box::pin(async move {
            let iter = match &filter.before {
                Some(b) => self.audit.range(..b.as_bytes().to_vec()),
                None => self.audit.iter(),
            };
            let mut out = Vec::new();
            for item in iter.rev() {
                let (_, v) = item?;
                let e: AuditEntry = decode(&v)?;
                if filter.actor.as_ref().is_some_and(|a| *a != e.actor)
                    || filter
                        .resource
                        .as_ref()
                        .is_some_and(|r| Some(r) != e.resource.as_ref())
                {
                    continue;
                }
                out.push(e);
                if out.len() >= filter.limit {
                    break;
                }
            }
            Ok(out)
        })
    }
}
