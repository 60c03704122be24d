//! API keys and the audit log. A key change is announced like a definition change, so every
//! node reloads its key table: a key revoked through one node is refused by all of them.

use super::{PgStore, db, decode, encode, is_unique_violation};
use crate::access::keys::{ApiKey, StoredKey};
use crate::model::AuditEntry;
use crate::store::{AccessStore, AuditFilter, StoreChange, StoreError, StoreFuture};

impl AccessStore for PgStore {
    fn create_key<'a>(&'a self, key: &'a StoredKey) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let done = sqlx::query("INSERT INTO api_keys (id, name, doc) VALUES ($1, $2, $3)")
                .bind(&key.key.id)
                .bind(&key.key.name)
                .bind(encode(key)?)
                .execute(&mut *tx)
                .await;
            match done {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::NameTaken(key.key.name.clone()));
                }
                other => other.map_err(db)?,
            };
            self.announce(&mut tx, StoreChange::Definitions).await?;
            Self::commit(tx).await
        })
    }

    fn list_keys<'a>(&'a self) -> StoreFuture<'a, Vec<StoredKey>> {
        Box::pin(async move {
            let docs: Vec<String> = sqlx::query_scalar("SELECT doc FROM api_keys ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            docs.iter().map(|d| decode(d)).collect()
        })
    }

    fn update_key<'a>(&'a self, key: &'a ApiKey) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let doc: String =
                sqlx::query_scalar("SELECT doc FROM api_keys WHERE id = $1 FOR UPDATE")
                    .bind(&key.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?
                    .ok_or(StoreError::NotFound("key"))?;
            let old: StoredKey = decode(&doc)?;
            let new = StoredKey {
                key: key.clone(),
                hash: old.hash,
            };
            let done = sqlx::query("UPDATE api_keys SET name = $2, doc = $3 WHERE id = $1")
                .bind(&key.id)
                .bind(&key.name)
                .bind(encode(&new)?)
                .execute(&mut *tx)
                .await;
            match done {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::NameTaken(key.name.clone()));
                }
                other => other.map_err(db)?,
            };
            self.announce(&mut tx, StoreChange::Definitions).await?;
            Self::commit(tx).await
        })
    }

    fn delete_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("key"));
            }
            self.announce(&mut tx, StoreChange::Definitions).await?;
            Self::commit(tx).await
        })
    }

    fn touch_key<'a>(&'a self, id: &'a str, at: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let doc: Option<String> =
                sqlx::query_scalar("SELECT doc FROM api_keys WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if let Some(doc) = doc {
                let mut key: StoredKey = decode(&doc)?;
                key.key.last_used_at = Some(at.to_string());
                sqlx::query("UPDATE api_keys SET doc = $2 WHERE id = $1")
                    .bind(id)
                    .bind(encode(&key)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            Self::commit(tx).await
        })
    }

    fn append_audit<'a>(&'a self, entry: &'a AuditEntry) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query("INSERT INTO audit (id, actor, resource, doc) VALUES ($1, $2, $3, $4)")
                .bind(&entry.id)
                .bind(&entry.actor)
                .bind(&entry.resource)
                .bind(encode(entry)?)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn list_audit<'a>(&'a self, filter: &'a AuditFilter) -> StoreFuture<'a, Vec<AuditEntry>> {
        Box::pin(async move {
            let mut q =
                sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT doc FROM audit WHERE true");
            if let Some(a) = &filter.actor {
                q.push(" AND actor = ").push_bind(a.clone());
            }
            if let Some(r) = &filter.resource {
                q.push(" AND resource = ").push_bind(r.clone());
            }
            super::newest_first(&mut q, filter.before.as_deref(), filter.limit);
            let docs: Vec<String> = q
                .build_query_scalar()
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            docs.iter().map(|d| decode(d)).collect()
        })
    }
}
