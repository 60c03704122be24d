//! Secrets: sealed values with a unique name; the delete guard locks the secret's row, so a
//! webhook linking it on another node either commits first (and is listed) or waits and then
//! finds the secret gone.

use serde_json::json;
use sqlx::Row;

use super::{PgStore, Tx, db, is_unique_violation};
use crate::model::{SecretMeta, SecretName, now_rfc3339};
use crate::store::{
    SecretStore, StoreChange, StoreError, StoreFuture, SubjectValueMeta, subject_aad,
};

fn meta(row: &sqlx::postgres::PgRow) -> SecretMeta {
    SecretMeta {
        id: row.get("id"),
        name: row.get("name"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

impl PgStore {
    /// Who uses the named secret (webhooks and subscriptions), as the delete guard lists them.
    pub(super) async fn secret_users(
        &self,
        tx: &mut Tx,
        name: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.owner_id, w.doc FROM secret_refs r LEFT JOIN webhooks w ON w.id = r.owner_id
             WHERE r.secret_name = $1 ORDER BY r.owner_id",
        )
        .bind(name)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        let mut out = Vec::new();
        for r in rows {
            let owner: String = r.get(0);
            if owner.starts_with("sub_") {
                out.push(json!({"subscription_id": owner}));
                continue;
            }
            let doc: Option<String> = r.get(1);
            let name = doc
                .and_then(|d| super::decode::<crate::model::Webhook>(&d).ok())
                .map(|w| w.spec.name)
                .unwrap_or_default();
            out.push(json!({"webhook_id": owner, "webhook_name": name}));
        }
        Ok(out)
    }

    /// The value sealed in a `(secret id, sealed)` row, opened with the associated data `aad`
    /// derives from the secret id (the shared value's or a subject's); no row, no value.
    fn open_row(
        &self,
        row: Option<sqlx::postgres::PgRow>,
        aad: impl FnOnce(&str) -> String,
    ) -> Result<Option<String>, StoreError> {
        let Some(r) = row else { return Ok(None) };
        let id: String = r.get(0);
        let sealed: String = r.get(1);
        Ok(Some(self.sealer.open(&sealed, &aad(&id))?))
    }
}

impl SecretStore for PgStore {
    fn create_secret<'a>(
        &'a self,
        name: &'a SecretName,
        value: &'a str,
    ) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            let m = SecretMeta::new(name.clone());
            let sealed = self.sealer.seal(value, &m.id)?;
            let mut tx = self.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO secrets (id, name, sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&m.id)
            .bind(&m.name)
            .bind(&sealed)
            .bind(&m.created_at)
            .bind(&m.updated_at)
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::NameTaken(name.to_string()));
                }
                other => other.map_err(db)?,
            };
            self.announce(&mut tx, StoreChange::Secrets).await?;
            Self::commit(tx).await?;
            Ok(m)
        })
    }

    fn upsert_secret<'a>(
        &'a self,
        name: &'a SecretName,
        value: &'a str,
    ) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            // Two nodes starting with the same TOOLGATE_SECRET_* race here: whoever loses the
            // insert updates instead.
            for _ in 0..3 {
                let id: Option<String> =
                    sqlx::query_scalar("SELECT id FROM secrets WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?;
                let done = match id {
                    Some(id) => self.update_secret(&id, value).await,
                    None => self.create_secret(name, value).await,
                };
                match done {
                    Err(StoreError::NameTaken(_) | StoreError::NotFound(_)) => continue,
                    other => return other,
                }
            }
            Err(StoreError::Database(format!(
                "secret '{name}' kept changing while it was being set"
            )))
        })
    }

    fn list_secrets<'a>(&'a self) -> StoreFuture<'a, Vec<SecretMeta>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT id, name, created_at, updated_at FROM secrets ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
            Ok(rows.iter().map(meta).collect())
        })
    }

    fn get_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            let row =
                sqlx::query("SELECT id, name, created_at, updated_at FROM secrets WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .ok_or(StoreError::NotFound("secret"))?;
            Ok(meta(&row))
        })
    }

    fn update_secret<'a>(&'a self, id: &'a str, value: &'a str) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            let sealed = self.sealer.seal(value, id)?;
            let mut tx = self.begin().await?;
            let row = sqlx::query(
                "UPDATE secrets SET sealed = $2, updated_at = $3 WHERE id = $1
                 RETURNING id, name, created_at, updated_at",
            )
            .bind(id)
            .bind(&sealed)
            .bind(now_rfc3339())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound("secret"))?;
            self.announce(&mut tx, StoreChange::Secrets).await?;
            Self::commit(tx).await?;
            Ok(meta(&row))
        })
    }

    fn delete_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let name: String =
                sqlx::query_scalar("SELECT name FROM secrets WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?
                    .ok_or(StoreError::NotFound("secret"))?;
            let users = self.secret_users(&mut tx, &name).await?;
            if !users.is_empty() {
                return Err(StoreError::InUse {
                    message: format!(
                        "This secret is currently in use by {} webhook(s) or subscription(s); remove the references first.",
                        users.len()
                    ),
                    details: users,
                });
            }
            sqlx::query("DELETE FROM secrets WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            self.announce(&mut tx, StoreChange::Secrets).await?;
            Self::commit(tx).await
        })
    }

    fn secret_value<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT id, sealed FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            self.open_row(row, |id| id.to_string())
        })
    }

    fn secret_exists<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            Ok(found.is_some())
        })
    }

    fn set_subject_value<'a>(
        &'a self,
        id: &'a str,
        subject: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, SubjectValueMeta> {
        Box::pin(async move {
            let sealed = self.sealer.seal(value, &subject_aad(id, subject))?;
            let now = now_rfc3339();
            let mut tx = self.begin().await?;
            let found: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM secrets WHERE id = $1 FOR KEY SHARE")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if found.is_none() {
                return Err(StoreError::NotFound("secret"));
            }
            sqlx::query(
                "INSERT INTO secret_values (secret_id, subject, sealed, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (secret_id, subject) DO UPDATE SET sealed = $3, updated_at = $4",
            )
            .bind(id)
            .bind(subject)
            .bind(&sealed)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            self.announce(&mut tx, StoreChange::Secrets).await?;
            Self::commit(tx).await?;
            Ok(SubjectValueMeta {
                secret_id: id.to_string(),
                subject: subject.to_string(),
                updated_at: now,
            })
        })
    }

    fn delete_subject_value<'a>(&'a self, id: &'a str, subject: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let done =
                sqlx::query("DELETE FROM secret_values WHERE secret_id = $1 AND subject = $2")
                    .bind(id)
                    .bind(subject)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("subject value"));
            }
            self.announce(&mut tx, StoreChange::Secrets).await?;
            Self::commit(tx).await
        })
    }

    fn list_subject_values<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<SubjectValueMeta>> {
        Box::pin(async move {
            self.get_secret(id).await?;
            let rows = sqlx::query(
                "SELECT subject, updated_at FROM secret_values WHERE secret_id = $1 ORDER BY subject",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| SubjectValueMeta {
                    secret_id: id.to_string(),
                    subject: r.get(0),
                    updated_at: r.get(1),
                })
                .collect())
        })
    }

    fn subject_value<'a>(
        &'a self,
        name: &'a str,
        subject: &'a str,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT s.id, v.sealed FROM secrets s JOIN secret_values v ON v.secret_id = s.id
                 WHERE s.name = $1 AND v.subject = $2",
            )
            .bind(name)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            self.open_row(row, |id| subject_aad(id, subject))
        })
    }
}
