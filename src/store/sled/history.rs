//! Call history: batched inserts, retention, filtered pages.

use super::*;

impl SledStore {
    pub(super) fn prune_calls(
        &self,
        max_records: usize,
        max_age_secs: u64,
    ) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let cutoff = time::OffsetDateTime::now_utc()
            - time::Duration::seconds(max_age_secs.min(i64::MAX as u64) as i64);
        let mut batch = sled::Batch::default();
        let mut removed = 0usize;
        let mut count = self.call_count.load(Relaxed);
        for item in self.calls.iter() {
            let (k, v) = item?;
            let too_many = max_records > 0 && count > max_records;
            let too_old = max_age_secs > 0
                && decode::<CallRecord>(&v)
                    .ok()
                    .and_then(|r| {
                        time::OffsetDateTime::parse(
                            &r.started_at,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    })
                    .is_some_and(|t| t < cutoff);
            if !too_many && !too_old {
                break;
            }
            batch.remove(k);
            count -= 1;
            removed += 1;
        }
        if removed > 0 {
            self.calls.apply_batch(batch)?;
            self.call_count.store(count, Relaxed);
        }
        Ok(())
    }
}

fn matches(r: &CallRecord, f: &CallFilter) -> bool {
    if f.webhook_id.as_ref().is_some_and(|w| *w != r.webhook_id) {
        return false;
    }
    if f.tool
        .as_ref()
        .is_some_and(|t| r.tool.as_deref() != Some(t.as_str()))
    {
        return false;
    }
    if f.source.is_some_and(|s| s != r.source) {
        return false;
    }
    f.outcome.is_none_or(|o| o.matches(r.outcome))
}

impl HistoryStore for SledStore {
    fn insert_calls<'a>(
        &'a self,
        records: &'a [CallRecord],
        max_records: usize,
        max_age_secs: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut added = 0;
            let mut encoded = Vec::with_capacity(records.len());
            for r in records {
                if !self.calls.contains_key(r.id.as_bytes())? {
                    added += 1;
                }
                encoded.push((r, encode(r)?));
            }
            if self.events_on() {
                // The call events go to the outbox in the same transaction as the records.
                (&self.calls, &self.outbox)
                    .transaction(|(calls, ob)| {
                        for (r, bytes) in &encoded {
                            calls.insert(r.id.as_bytes(), bytes.clone())?;
                            self.emit(ob, crate::events::payload::call_event(r))?;
                        }
                        Ok(())
                    })
                    .map_err(tx_err)?;
            } else {
                // Nobody listens: an atomic batch on one tree, without the global transaction lock.
                let mut batch = sled::Batch::default();
                for (r, bytes) in encoded {
                    batch.insert(r.id.as_bytes(), bytes);
                }
                self.calls.apply_batch(batch)?;
            }
            self.call_count
                .fetch_add(added, std::sync::atomic::Ordering::Relaxed);
            self.prune_calls(max_records, max_age_secs)?;
            self.durable().await
        })
    }

    fn get_call(&self, id: &str) -> Result<CallRecord, StoreError> {
        decode(
            &self
                .calls
                .get(id.as_bytes())?
                .ok_or(StoreError::NotFound("call"))?,
        )
    }

    fn list_calls(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let iter = match &filter.before {
            Some(b) => self.calls.range(..b.as_bytes().to_vec()),
            None => self.calls.iter(),
        };
        let mut out = Vec::new();
        for item in iter.rev() {
            let (_, v) = item?;
            let rec: CallRecord = decode(&v)?;
            if matches(&rec, filter) {
                out.push(rec);
                if out.len() >= filter.limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
