//! Subscriptions, the outbox and deliveries. With several nodes, the outbox is drained with
//! `FOR UPDATE SKIP LOCKED` (each event fanned out once) and due deliveries are claimed with a
//! lease (each sent by one node; a dead node's claim runs out and another node continues).

use sqlx::Row;

use super::{PgStore, db, decode, encode};
use crate::model::validate::FieldError;
use crate::model::{Delivery, Event, Subscription, SubscriptionId, SubscriptionSpec, now_rfc3339};
use crate::store::{DeliveryFilter, EventStore, StoreChange, StoreError, StoreFuture};

/// Milliseconds as stored (PostgreSQL has no unsigned integers; ours stay far below i64::MAX).
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PgStore {
    async fn put_subscription(
        &self,
        id: Option<&str>,
        spec: SubscriptionSpec,
        disabled_reason: Option<Option<String>>,
        signing_sealed: Option<(SubscriptionId, String)>,
    ) -> Result<Subscription, StoreError> {
        let now = now_rfc3339();
        let mut tx = self.begin().await?;
        let secret = spec.auth.secret_name().map(str::to_string);
        if let Some(n) = &secret {
            let found: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM secrets WHERE name = $1 FOR KEY SHARE")
                    .bind(n)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if found.is_none() {
                return Err(StoreError::Invalid(vec![FieldError::new(
                    "auth.secret",
                    format!("unknown secret '{n}'"),
                )]));
            }
        }
        let sub = match (id, signing_sealed) {
            (None, Some((id, sealed))) => {
                let sub = Subscription {
                    id,
                    spec,
                    disabled_reason: disabled_reason.flatten(),
                    created_at: now.clone(),
                    updated_at: now,
                };
                sqlx::query(
                    "INSERT INTO subscriptions (id, doc, signing_sealed) VALUES ($1, $2, $3)",
                )
                .bind(&sub.id)
                .bind(encode(&sub)?)
                .bind(&sealed)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                sub
            }
            (Some(id), _) => {
                let doc: String =
                    sqlx::query_scalar("SELECT doc FROM subscriptions WHERE id = $1 FOR UPDATE")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db)?
                        .ok_or(StoreError::NotFound("subscription"))?;
                let old: Subscription = decode(&doc)?;
                let reason = match disabled_reason {
                    Some(r) => r,
                    // Re-enabling clears the reason; staying disabled keeps it.
                    None if spec.enabled => None,
                    None => old.disabled_reason,
                };
                let sub = Subscription {
                    id: old.id,
                    spec,
                    disabled_reason: reason,
                    created_at: old.created_at,
                    updated_at: now,
                };
                sqlx::query("UPDATE subscriptions SET doc = $2 WHERE id = $1")
                    .bind(&sub.id)
                    .bind(encode(&sub)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                sub
            }
            (None, None) => {
                return Err(StoreError::Corrupt(
                    "a new subscription needs its signing secret".into(),
                ));
            }
        };
        self.set_refs(&mut tx, &sub.id, secret.as_slice()).await?;
        self.announce(&mut tx, StoreChange::Definitions).await?;
        Self::commit(tx).await?;
        Ok(sub)
    }
}

impl EventStore for PgStore {
    fn create_subscription<'a>(
        &'a self,
        spec: SubscriptionSpec,
        signing_secret: &'a str,
    ) -> StoreFuture<'a, Subscription> {
        Box::pin(async move {
            let id = SubscriptionId::new();
            let sealed = self.sealer.seal(signing_secret, &id)?;
            self.put_subscription(None, spec, None, Some((id, sealed)))
                .await
        })
    }

    fn list_subscriptions<'a>(&'a self) -> StoreFuture<'a, Vec<Subscription>> {
        Box::pin(async move {
            let docs: Vec<String> = sqlx::query_scalar("SELECT doc FROM subscriptions ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            docs.iter().map(|d| decode(d)).collect()
        })
    }

    fn get_subscription<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Subscription> {
        Box::pin(async move {
            let doc: String = sqlx::query_scalar("SELECT doc FROM subscriptions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
                .ok_or(StoreError::NotFound("subscription"))?;
            decode(&doc)
        })
    }

    fn update_subscription<'a>(
        &'a self,
        id: &'a str,
        spec: SubscriptionSpec,
    ) -> StoreFuture<'a, Subscription> {
        Box::pin(self.put_subscription(Some(id), spec, None, None))
    }

    fn disable_subscription<'a>(&'a self, id: &'a str, reason: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut spec = self.get_subscription(id).await?.spec;
            spec.enabled = false;
            self.put_subscription(Some(id), spec, Some(Some(reason.to_string())), None)
                .await?;
            Ok(())
        })
    }

    fn delete_subscription<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let done = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("subscription"));
            }
            self.set_refs(&mut tx, id, &[]).await?;
            self.announce(&mut tx, StoreChange::Definitions).await?;
            Self::commit(tx).await
        })
    }

    fn set_signing_secret<'a>(&'a self, id: &'a str, secret: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let sealed = self.sealer.seal(secret, id)?;
            let done = sqlx::query("UPDATE subscriptions SET signing_sealed = $2 WHERE id = $1")
                .bind(id)
                .bind(&sealed)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("subscription"));
            }
            Ok(())
        })
    }

    fn signing_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, String> {
        Box::pin(async move {
            let sealed: String =
                sqlx::query_scalar("SELECT signing_sealed FROM subscriptions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .ok_or(StoreError::NotFound("subscription"))?;
            self.sealer.open(&sealed, id)
        })
    }

    fn append_event<'a>(&'a self, event: &'a Event) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            self.emit(&mut tx, event).await?;
            Self::commit(tx).await
        })
    }

    fn dispatch_outbox(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let rows = sqlx::query(
                "SELECT seq, doc FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
            )
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            if rows.is_empty() {
                return Ok(0);
            }
            let docs: Vec<String> = sqlx::query_scalar("SELECT doc FROM subscriptions ORDER BY id")
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            let subs: Vec<Subscription> =
                docs.iter().map(|d| decode(d)).collect::<Result<_, _>>()?;
            let mut created = 0;
            let mut seqs = Vec::with_capacity(rows.len());
            for row in &rows {
                seqs.push(row.get::<i64, _>(0));
                let event: Event = decode(row.get::<&str, _>(1))?;
                let deliveries = crate::events::fan_out(&event, &subs, now_ms)
                    .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?;
                for d in &deliveries {
                    insert_delivery(&mut tx, d).await?;
                }
                created += deliveries.len();
            }
            sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)")
                .bind(&seqs)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            Self::commit(tx).await?;
            Ok(created)
        })
    }

    fn due_deliveries<'a>(&'a self, now_ms: u64, limit: usize) -> StoreFuture<'a, Vec<Delivery>> {
        Box::pin(async move {
            let lease = ms(now_ms.saturating_add(self.lease.as_millis() as u64));
            let docs: Vec<String> = sqlx::query_scalar(
                "UPDATE deliveries SET lease_until = $3 WHERE id IN (
                     SELECT id FROM deliveries
                     WHERE status = 'pending' AND next_attempt_at <= $1 AND lease_until <= $1
                     ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING doc",
            )
            .bind(ms(now_ms))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(lease)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            let mut out: Vec<Delivery> =
                docs.iter().map(|d| decode(d)).collect::<Result<_, _>>()?;
            out.sort_by_key(|d| d.next_attempt_at);
            Ok(out)
        })
    }

    fn next_due<'a>(&'a self) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let at: Option<i64> = sqlx::query_scalar(
                "SELECT min(greatest(next_attempt_at, lease_until)) FROM deliveries WHERE status = 'pending'",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
            Ok(at.map(|v| u64::try_from(v).unwrap_or(0)))
        })
    }

    fn save_delivery<'a>(&'a self, delivery: &'a Delivery) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            sqlx::query(
                "INSERT INTO deliveries (id, subscription_id, status, next_attempt_at, lease_until, doc)
                 VALUES ($1, $2, $3, $4, 0, $5)
                 ON CONFLICT (id) DO UPDATE SET status = $3, next_attempt_at = $4, lease_until = 0, doc = $5",
            )
            .bind(&delivery.id)
            .bind(&delivery.subscription_id)
            .bind(delivery.status.as_str())
            .bind(delivery.next_attempt_at.map(ms))
            .bind(encode(delivery)?)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn get_delivery<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Delivery> {
        Box::pin(async move {
            let doc: String = sqlx::query_scalar("SELECT doc FROM deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
                .ok_or(StoreError::NotFound("delivery"))?;
            decode(&doc)
        })
    }

    fn list_deliveries<'a>(&'a self, filter: &'a DeliveryFilter) -> StoreFuture<'a, Vec<Delivery>> {
        Box::pin(async move {
            let mut q =
                sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT doc FROM deliveries WHERE true");
            if let Some(s) = &filter.subscription_id {
                q.push(" AND subscription_id = ").push_bind(s.clone());
            }
            if let Some(s) = &filter.status {
                q.push(" AND status = ").push_bind(s.clone());
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

async fn insert_delivery(tx: &mut super::Tx, d: &Delivery) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO deliveries (id, subscription_id, status, next_attempt_at, doc)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&d.id)
    .bind(&d.subscription_id)
    .bind(d.status.as_str())
    .bind(d.next_attempt_at.map(ms))
    .bind(encode(d)?)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}
