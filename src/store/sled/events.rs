//! Subscriptions, the outbox and deliveries with their due index.

use super::*;
use crate::model::SubscriptionId;

impl SledStore {
    pub(super) fn put_subscription(
        &self,
        id: Option<&str>,
        spec: SubscriptionSpec,
        disabled_reason: Option<String>,
        sealed_key: Option<(SubscriptionId, String)>,
    ) -> Result<Subscription, StoreError> {
        let now = now_rfc3339();
        let new_secret = spec.auth.secret_name().map(str::to_string);
        let res = (
            &self.subscriptions,
            &self.secret_names,
            &self.secret_users,
            &self.sub_keys,
        )
            .transaction(|(st, sn, su, sk)| {
                if let Some(n) = &new_secret
                    && sn.get(n.as_bytes())?.is_none()
                {
                    return abort(StoreError::Invalid(vec![FieldError::new(
                        "auth.secret",
                        format!("unknown secret '{n}'"),
                    )]));
                }
                let sub = match id {
                    None => Subscription {
                        id: sealed_key
                            .as_ref()
                            .map(|k| k.0.clone())
                            .unwrap_or_else(SubscriptionId::new),
                        spec: spec.clone(),
                        disabled_reason: disabled_reason.clone(),
                        created_at: now.clone(),
                        updated_at: now.clone(),
                    },
                    Some(id) => {
                        let Some(raw) = st.get(id.as_bytes())? else {
                            return abort(StoreError::NotFound("subscription"));
                        };
                        let old: Subscription = tx_decode(&raw)?;
                        if let Some(n) = old.spec.auth.secret_name() {
                            list_remove(su, n, id)?;
                        }
                        Subscription {
                            id: old.id,
                            spec: spec.clone(),
                            disabled_reason: disabled_reason.clone(),
                            created_at: old.created_at,
                            updated_at: now.clone(),
                        }
                    }
                };
                if let Some(n) = &new_secret {
                    list_add(su, n, &sub.id)?;
                }
                if let Some((_, sealed)) = &sealed_key {
                    sk.insert(sub.id.as_bytes(), sealed.as_bytes())?;
                }
                st.insert(
                    sub.id.as_bytes(),
                    encode(&sub).map_err(ConflictableTransactionError::Abort)?,
                )?;
                Ok(sub)
            });
        res.map_err(tx_err)
    }
}

impl EventStore for SledStore {
    fn create_subscription<'a>(
        &'a self,
        spec: SubscriptionSpec,
        signing_secret: &'a str,
    ) -> StoreFuture<'a, Subscription> {
        Box::pin(async move {
            let id = SubscriptionId::new();
            let sealed = self.sealer.seal(signing_secret, &id)?;
            let sub = self.put_subscription(None, spec, None, Some((id, sealed)))?;
            self.sub_count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.durable().await?;
            Ok(sub)
        })
    }

    fn list_subscriptions<'a>(&'a self) -> StoreFuture<'a, Vec<Subscription>> {
        Box::pin(async move { Self::all(&self.subscriptions) })
    }

    fn get_subscription<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Subscription> {
        Box::pin(async move {
            decode(
                &self
                    .subscriptions
                    .get(id.as_bytes())?
                    .ok_or(StoreError::NotFound("subscription"))?,
            )
        })
    }

    fn update_subscription<'a>(
        &'a self,
        id: &'a str,
        spec: SubscriptionSpec,
    ) -> StoreFuture<'a, Subscription> {
        Box::pin(async move {
            let old = self.get_subscription(id).await?;
            let reason = if spec.enabled {
                None
            } else {
                old.disabled_reason
            };
            let sub = self.put_subscription(Some(id), spec, reason, None)?;
            self.durable().await?;
            Ok(sub)
        })
    }

    fn disable_subscription<'a>(&'a self, id: &'a str, reason: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut sub = self.get_subscription(id).await?;
            sub.spec.enabled = false;
            self.put_subscription(Some(id), sub.spec, Some(reason.to_string()), None)?;
            self.durable().await
        })
    }

    fn delete_subscription<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            (&self.subscriptions, &self.sub_keys, &self.secret_users)
                .transaction(|(st, sk, su)| {
                    let Some(raw) = st.get(id.as_bytes())? else {
                        return abort(StoreError::NotFound("subscription"));
                    };
                    let sub: Subscription = tx_decode(&raw)?;
                    if let Some(n) = sub.spec.auth.secret_name() {
                        list_remove(su, n, id)?;
                    }
                    st.remove(id.as_bytes())?;
                    sk.remove(id.as_bytes())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.sub_count
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            self.durable().await
        })
    }

    fn set_signing_secret<'a>(&'a self, id: &'a str, secret: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.get_subscription(id).await?;
            let sealed = self.sealer.seal(secret, id)?;
            self.sub_keys.insert(id.as_bytes(), sealed.as_bytes())?;
            self.durable().await
        })
    }

    fn signing_secret<'a>(&'a self, id: &'a str) -> StoreFuture<'a, String> {
        Box::pin(async move {
            let raw = self
                .sub_keys
                .get(id.as_bytes())?
                .ok_or(StoreError::NotFound("subscription"))?;
            self.sealer.open(&String::from_utf8_lossy(&raw), id)
        })
    }

    fn append_event<'a>(&'a self, event: &'a Event) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if self.events_on() {
                self.outbox
                    .insert(event.event_id.as_bytes(), encode(event)?)?;
                self.durable().await?;
            }
            Ok(())
        })
    }

    fn dispatch_outbox(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let mut created = 0;
            let pending: Vec<(sled::IVec, sled::IVec)> =
                self.outbox.iter().take(limit).collect::<Result<_, _>>()?;
            if pending.is_empty() {
                return Ok(0);
            }
            let subs: Vec<Subscription> = self.list_subscriptions().await?;
            for (key, raw) in pending {
                let event: Event = decode(&raw)?;
                let deliveries = crate::events::fan_out(&event, &subs, now_ms)
                    .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?;
                let encoded: Vec<(String, Vec<u8>)> = deliveries
                    .iter()
                    .map(|d| Ok((d.id.clone(), encode(d)?)))
                    .collect::<Result<_, StoreError>>()?;
                (&self.outbox, &self.deliveries, &self.due)
                    .transaction(|(ob, dl, due)| {
                        ob.remove(&key)?;
                        for (id, bytes) in &encoded {
                            dl.insert(id.as_bytes(), bytes.clone())?;
                            due.insert(due_key(now_ms, id), &[] as &[u8])?;
                        }
                        Ok(())
                    })
                    .map_err(tx_err)?;
                created += encoded.len();
            }
            self.durable().await?;
            Ok(created)
        })
    }

    fn due_deliveries<'a>(&'a self, now_ms: u64, limit: usize) -> StoreFuture<'a, Vec<Delivery>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for item in self
                .due
                .range(..due_key(now_ms.saturating_add(1), ""))
                .take(limit)
            {
                let (k, _) = item?;
                let id = String::from_utf8_lossy(&k[8..]).to_string();
                match self.get_delivery(&id).await {
                    Ok(d) => out.push(d),
                    Err(StoreError::NotFound(_)) => {
                        self.due.remove(&k)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    fn next_due<'a>(&'a self) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            Ok(self.due.first()?.and_then(|(k, _)| {
                k.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
            }))
        })
    }

    fn save_delivery<'a>(&'a self, delivery: &'a Delivery) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let bytes = encode(delivery)?;
            (&self.deliveries, &self.due)
                .transaction(|(dl, due)| {
                    if let Some(raw) = dl.get(delivery.id.as_bytes())? {
                        let old: Delivery = tx_decode(&raw)?;
                        if let Some(at) = old.next_attempt_at {
                            due.remove(due_key(at, &old.id))?;
                        }
                    }
                    if delivery.status == DeliveryStatus::Pending
                        && let Some(at) = delivery.next_attempt_at
                    {
                        due.insert(due_key(at, &delivery.id), &[] as &[u8])?;
                    }
                    dl.insert(delivery.id.as_bytes(), bytes.clone())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.durable().await
        })
    }

    fn get_delivery<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Delivery> {
        Box::pin(async move {
            decode(
                &self
                    .deliveries
                    .get(id.as_bytes())?
                    .ok_or(StoreError::NotFound("delivery"))?,
            )
        })
    }

    fn list_deliveries<'a>(&'a self, filter: &'a DeliveryFilter) -> StoreFuture<'a, Vec<Delivery>> {
        Box::pin(async move {
            let iter = match &filter.before {
                Some(b) => self.deliveries.range(..b.as_bytes().to_vec()),
                None => self.deliveries.iter(),
            };
            let mut out = Vec::new();
            for item in iter.rev() {
                let (_, v) = item?;
                let d: Delivery = decode(&v)?;
                if filter
                    .subscription_id
                    .as_ref()
                    .is_some_and(|s| *s != d.subscription_id)
                    || filter
                        .status
                        .as_ref()
                        .is_some_and(|s| s != d.status.as_str())
                {
                    continue;
                }
                out.push(d);
                if out.len() >= filter.limit {
                    break;
                }
            }
            Ok(out)
        })
    }
}
