//! Call history: batched inserts, exact retention, filtered pages. Records are keyed by the call
//! id's 16 bytes (see `history_codec`); the record count lives in the same tree under a key that
//! sorts before every record, and changes in the same atomic batch as the records, so it is
//! exact across restarts and a kill -9 at any point.

use super::history_codec as codec;
use super::*;

/// The record count's key: sorts before every record key (UUIDv7 keys start at 0x01 for any date
/// after 2004).
const COUNT_KEY: &[u8] = b"\x00count";

/// Where record keys start.
const RECORDS: &[u8] = &[0x01];

/// Records converted per batch when a history written in the JSON format is converted at open.
const MIGRATE_BATCH: usize = 1000;

fn count_bytes(n: usize) -> [u8; 8] {
    (n as u64).to_be_bytes()
}

impl SledStore {
    /// Load the exact record count; a history from before the compact format is converted
    /// first (once), and counted as it is.
    pub(super) fn open_history(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.migrate_json_history()?;
        let count = match self.calls.get(COUNT_KEY)? {
            Some(v) => v
                .as_ref()
                .try_into()
                .map(|b: [u8; 8]| u64::from_be_bytes(b) as usize)
                .map_err(|_| StoreError::Corrupt("call count".into()))?,
            None => {
                let n = self.calls.range(RECORDS..).keys().count();
                self.calls.insert(COUNT_KEY, &count_bytes(n))?;
                n
            }
        };
        self.call_count.store(count, Relaxed);
        Ok(())
    }

    /// Convert records stored as JSON under their string ids (toolgate before the compact
    /// format) into the compact form, a batch at a time; each batch also moves the count.
    fn migrate_json_history(&self) -> Result<(), StoreError> {
        let mut converted = 0usize;
        loop {
            let old: Vec<(sled::IVec, sled::IVec)> = self
                .calls
                .scan_prefix(b"call_")
                .take(MIGRATE_BATCH)
                .collect::<Result<_, _>>()?;
            if old.is_empty() {
                break;
            }
            let mut batch = sled::Batch::default();
            for (k, v) in &old {
                let record = codec::decode(&String::from_utf8_lossy(k), v)?;
                batch.remove(k.clone());
                batch.insert(&codec::key(&record.id)?, codec::encode(&record)?);
            }
            self.calls.apply_batch(batch)?;
            converted += old.len();
        }
        if converted > 0 {
            // The count is taken afresh after a conversion.
            self.calls.remove(COUNT_KEY)?;
            tracing::info!(
                records = converted,
                "call history converted to the compact format"
            );
        }
        Ok(())
    }

    /// The keys retention removes now: the oldest beyond `max_records`, and those older than
    /// `max_age_secs`. Walks from the last pruned key, so a history at its cap costs the same
    /// to prune whatever was pruned before.
    fn keys_to_prune(
        &self,
        count: usize,
        max_records: usize,
        max_age_secs: u64,
    ) -> Result<Vec<sled::IVec>, StoreError> {
        let excess = if max_records > 0 {
            count.saturating_sub(max_records)
        } else {
            0
        };
        let cutoff_ms = if max_age_secs > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            Some(now.saturating_sub(max_age_secs.saturating_mul(1000)))
        } else {
            None
        };
        if excess == 0 && cutoff_ms.is_none() {
            return Ok(Vec::new());
        }
        let start = self
            .prune_cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| RECORDS.into());
        let mut out = Vec::new();
        for k in self.calls.range(start..).keys() {
            let k = k?;
            let too_old = cutoff_ms.is_some_and(|c| codec::started_ms(&k).is_some_and(|t| t < c));
            if out.len() >= excess && !too_old {
                break;
            }
            out.push(k);
        }
        Ok(out)
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
            use std::sync::atomic::Ordering::Relaxed;
            let mut encoded = Vec::with_capacity(records.len());
            let mut added = 0;
            for r in records {
                let key = codec::key(&r.id)?;
                if !self.calls.contains_key(key)? {
                    added += 1;
                }
                encoded.push((r, key, codec::encode(r)?));
            }
            let guard = self.history_write.lock().unwrap_or_else(|p| p.into_inner());
            let count = self.call_count.load(Relaxed) + added;
            let prune = self.keys_to_prune(count, max_records, max_age_secs)?;
            // A batch larger than the room left: its own oldest records are dropped as well
            // (they would be pruned by the very batch that writes them).
            let over = if max_records > 0 {
                (count - prune.len()).saturating_sub(max_records)
            } else {
                0
            };
            encoded.sort_by_key(|e| e.1);
            let encoded: Vec<_> = encoded.into_iter().skip(over.min(added)).collect();
            let after = count - prune.len() - over.min(added);
            if self.events_on() {
                // The call events go to the outbox in the same transaction as the records.
                (&self.calls, &self.outbox)
                    .transaction(|(calls, ob)| {
                        for (r, key, bytes) in &encoded {
                            calls.insert(key, bytes.clone())?;
                            self.emit(ob, crate::events::payload::call_event(r))?;
                        }
                        for k in &prune {
                            calls.remove(k)?;
                        }
                        calls.insert(COUNT_KEY, &count_bytes(after))?;
                        Ok(())
                    })
                    .map_err(tx_err)?;
            } else {
                // Nobody listens: an atomic batch on one tree, without the global transaction lock.
                let mut batch = sled::Batch::default();
                for (_, key, bytes) in encoded {
                    batch.insert(&key, bytes);
                }
                for k in &prune {
                    batch.remove(k.clone());
                }
                batch.insert(COUNT_KEY, &count_bytes(after));
                self.calls.apply_batch(batch)?;
            }
            self.call_count.store(after, Relaxed);
            if let Some(last) = prune.last() {
                *self.prune_cursor.lock().unwrap_or_else(|p| p.into_inner()) = Some(last.to_vec());
            }
            drop(guard);
            self.durable().await
        })
    }

    fn get_call(&self, id: &str) -> Result<CallRecord, StoreError> {
        let Ok(key) = codec::key(id) else {
            return Err(StoreError::NotFound("call"));
        };
        codec::decode(
            id,
            &self.calls.get(key)?.ok_or(StoreError::NotFound("call"))?,
        )
    }

    fn list_calls(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let end = match &filter.before {
            // An id that is not a call id names no record: nothing is before it.
            Some(b) => match codec::key(b) {
                Ok(k) => k.to_vec(),
                Err(_) => return Ok(Vec::new()),
            },
            None => vec![0xff; 17],
        };
        let mut out = Vec::new();
        for item in self.calls.range(RECORDS.to_vec()..end).rev() {
            let (k, v) = item?;
            let id = codec::id_of(&k).ok_or_else(|| StoreError::Corrupt("call key".into()))?;
            let rec = codec::decode(&id, &v)?;
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
