//! Secrets: sealed values, name index, the webhooks that use each, and per-subject values.

use super::*;
use crate::model::SecretName;
use crate::store::{SubjectValueMeta, subject_aad};

#[derive(Serialize, Deserialize)]
struct SubjectRecord {
    sealed: String,
    updated_at: String,
}

fn subject_key(id: &str, subject: &str) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(subject.as_bytes());
    k
}

fn subject_prefix(id: &str) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.push(0);
    k
}

impl SledStore {
    pub(super) fn secret_record_by_id(&self, id: &str) -> Result<SecretRecord, StoreError> {
        let raw = self
            .secrets
            .get(id)?
            .ok_or(StoreError::NotFound("secret"))?;
        decode(&raw)
    }
}

impl SecretStore for SledStore {
    fn create_secret<'a>(
        &'a self,
        name: &'a SecretName,
        value: &'a str,
    ) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            let meta = SecretMeta::new(name.clone());
            let rec = SecretRecord {
                sealed: self.sealer.seal(value, &meta.id)?,
                meta: meta.clone(),
            };
            let bytes = encode(&rec)?;
            (&self.secrets, &self.secret_names)
                .transaction(|(s, sn)| {
                    if sn.get(name.as_bytes())?.is_some() {
                        return abort(StoreError::NameTaken(name.to_string()));
                    }
                    sn.insert(name.as_bytes(), meta.id.as_bytes())?;
                    s.insert(meta.id.as_bytes(), bytes.clone())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await?;
            Ok(meta)
        })
    }

    fn upsert_secret<'a>(
        &'a self,
        name: &'a SecretName,
        value: &'a str,
    ) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            match self.secret_names.get(name.as_bytes())? {
                Some(id) => {
                    let id = String::from_utf8_lossy(&id).to_string();
                    self.update_secret(&id, value).await
                }
                None => self.create_secret(name, value).await,
            }
        })
    }

    fn list_secrets<'a>(&'a self) -> StoreFuture<'a, Vec<SecretMeta>> {
        Box::pin(async move {
            let recs: Vec<SecretRecord> = Self::all(&self.secrets)?;
            Ok(recs.into_iter().map(|r| r.meta).collect())
        })
    }

    fn get_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move { Ok(self.secret_record_by_id(id)?.meta) })
    }

    fn update_secret<'a>(&'a self, id: &'a str, value: &'a str) -> StoreFuture<'a, SecretMeta> {
        Box::pin(async move {
            let sealed = self.sealer.seal(value, id)?;
            let now = now_rfc3339();
            let meta = self
                .secrets
                .transaction(|s| {
                    let Some(raw) = s.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("secret"));
                    };
                    let mut rec: SecretRecord = tx_decode(&raw)?;
                    rec.sealed = sealed.clone();
                    rec.meta.updated_at = now.clone();
                    s.insert(
                        id.as_bytes(),
                        encode(&rec).map_err(ConflictableTransactionError::Abort)?,
                    )?;
                    Ok(rec.meta)
                })
                .map_err(tx_err)?;
            self.durable().await?;
            Ok(meta)
        })
    }

    fn delete_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            (&self.secrets, &self.secret_names, &self.secret_users, &self.webhooks)
                .transaction(|(s, sn, su, wh)| {
                    let Some(raw) = s.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("secret"));
                    };
                    let rec: SecretRecord = tx_decode(&raw)?;
                    let users = decode_list(su.get(rec.meta.name.as_bytes())?);
                    if !users.is_empty() {
                        let mut details = Vec::new();
                        for w in &users {
                            if w.starts_with("sub_") {
                                details.push(json!({"subscription_id": w}));
                                continue;
                            }
                            let name = match wh.get(w.as_bytes())? {
                                Some(raw) => tx_decode::<Webhook>(&raw)?.spec.name,
                                None => String::new(),
                            };
                            details.push(json!({"webhook_id": w, "webhook_name": name}));
                        }
                        return abort(StoreError::InUse {
                            message: format!(
                                "This secret is currently in use by {} webhook(s) or subscription(s); remove the references first.",
                                users.len()
                            ),
                            details,
                        });
                    }
                    s.remove(id.as_bytes())?;
                    sn.remove(rec.meta.name.as_bytes())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            // The secret is gone: its per-subject values go with it.
            for k in self.secret_values.scan_prefix(subject_prefix(id)).keys() {
                self.secret_values.remove(k?)?;
            }
            self.durable().await
        })
    }

    fn secret_value<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let Some(id) = self.secret_names.get(name.as_bytes())? else {
                return Ok(None);
            };
            let id = String::from_utf8_lossy(&id).to_string();
            match self.secret_record_by_id(&id) {
                Ok(rec) => Ok(Some(self.sealer.open(&rec.sealed, &id)?)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn secret_exists<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            Ok(matches!(
                self.secret_names.get(name.as_bytes()),
                Ok(Some(_))
            ))
        })
    }

    fn set_subject_value<'a>(
        &'a self,
        id: &'a str,
        subject: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, SubjectValueMeta> {
        Box::pin(async move {
            self.secret_record_by_id(id)?;
            let rec = SubjectRecord {
                sealed: self.sealer.seal(value, &subject_aad(id, subject))?,
                updated_at: now_rfc3339(),
            };
            self.secret_values
                .insert(subject_key(id, subject), encode(&rec)?)?;
            self.durable().await?;
            Ok(SubjectValueMeta {
                secret_id: id.to_string(),
                subject: subject.to_string(),
                updated_at: rec.updated_at,
            })
        })
    }

    fn delete_subject_value<'a>(&'a self, id: &'a str, subject: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if self
                .secret_values
                .remove(subject_key(id, subject))?
                .is_none()
            {
                return Err(StoreError::NotFound("subject value"));
            }
            self.durable().await
        })
    }

    fn list_subject_values<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<SubjectValueMeta>> {
        Box::pin(async move {
            self.secret_record_by_id(id)?;
            let prefix = subject_prefix(id);
            let mut out = Vec::new();
            for item in self.secret_values.scan_prefix(&prefix) {
                let (k, v) = item?;
                let rec: SubjectRecord = decode(&v)?;
                out.push(SubjectValueMeta {
                    secret_id: id.to_string(),
                    subject: String::from_utf8_lossy(&k[prefix.len()..]).to_string(),
                    updated_at: rec.updated_at,
                });
            }
            Ok(out)
        })
    }

    fn subject_value<'a>(
        &'a self,
        name: &'a str,
        subject: &'a str,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let Some(id) = self.secret_names.get(name.as_bytes())? else {
                return Ok(None);
            };
            let id = String::from_utf8_lossy(&id).to_string();
            match self.secret_values.get(subject_key(&id, subject))? {
                None => Ok(None),
                Some(raw) => {
                    let rec: SubjectRecord = decode(&raw)?;
                    Ok(Some(
                        self.sealer.open(&rec.sealed, &subject_aad(&id, subject))?,
                    ))
                }
            }
        })
    }
}
