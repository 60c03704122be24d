//! Call history: batched inserts, exact retention, filtered pages. Records are stored in chunks
//! (one per write batch, see `history_codec`) keyed by their first record's 16-byte id, so a
//! chunk's key and header say which ids and times it holds without decompressing it. A chunk's
//! body is in a segment file beside the database (`segments`); sled holds its header and where
//! it is. The record count lives in the same tree under a key that sorts before every chunk, and
//! changes in the same atomic batch as the records, so it is exact across restarts and a kill -9
//! at any point.

use super::segments::{self, ChunkRef, Summary};
use super::*;
use crate::store::history_codec::{self as codec, CHUNK_MAX};
use std::borrow::Cow;

/// The record count's key: sorts before every chunk key (UUIDv7 keys start at 0x01 for any date
/// after 2004).
const COUNT_KEY: &[u8] = b"\x00count";

/// The history head's key (see [`Head`]): sorts before every chunk key too.
const HEAD_KEY: &[u8] = b"\x00head";

/// Where chunk keys start.
const RECORDS: &[u8] = &[0x01];

/// Where the history starts. Every chunk keyed below `key` is gone, and the first `hidden`
/// records of the chunk at `key`, if it is there, are past retention: no read returns them and
/// the count leaves them out. The cap hides a batch's worth of the oldest chunk instead of
/// rewriting it: decompressing and compressing up to 512 records on every batch made the
/// history writer's CPU double once the cap was reached (BENCHMARKS.md, issue 18). The chunk
/// goes whole once every record in it is hidden.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Head {
    key: Vec<u8>,
    hidden: usize,
}

impl Head {
    fn encode(&self) -> Vec<u8> {
        let mut v = (self.hidden as u64).to_be_bytes().to_vec();
        v.extend_from_slice(&self.key);
        v
    }

    fn decode(v: &[u8]) -> Result<Self, StoreError> {
        let (n, key) = v
            .split_first_chunk::<8>()
            .ok_or_else(|| StoreError::Corrupt("call history head".into()))?;
        Ok(Head {
            key: key.to_vec(),
            hidden: u64::from_be_bytes(*n) as usize,
        })
    }

    /// How many of the first records of the chunk at `key` are hidden.
    fn hidden_in(&self, key: &[u8]) -> usize {
        if key == self.key.as_slice() {
            self.hidden
        } else {
            0
        }
    }
}

/// One write to the calls tree.
type Op = (Vec<u8>, Option<Vec<u8>>);

fn count_bytes(n: usize) -> [u8; 8] {
    (n as u64).to_be_bytes()
}

impl SledStore {
    /// Load the exact record count; a history from before chunks (JSON records under their
    /// string ids) is converted first, once.
    pub(super) fn open_history(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.migrate_json_history()?;
        let head = match self.calls.get(HEAD_KEY)? {
            Some(v) => Head::decode(&v)?,
            None => Head::default(),
        };
        let count = match self.calls.get(COUNT_KEY)? {
            Some(v) => v
                .as_ref()
                .try_into()
                .map(|b: [u8; 8]| u64::from_be_bytes(b) as usize)
                .map_err(|_| StoreError::Corrupt("call count".into()))?,
            None => {
                let mut n = 0;
                for item in self.calls.range(RECORDS..) {
                    let (k, v) = item?;
                    n += segments::header(&v)?
                        .count
                        .saturating_sub(head.hidden_in(&k));
                }
                self.calls.insert(COUNT_KEY, &count_bytes(n))?;
                n
            }
        };
        self.call_count.store(count, Relaxed);
        *self.history_head.lock().unwrap_or_else(|p| p.into_inner()) = head;
        // Which segments the chunks refer to; those a crash left after their last chunk was
        // removed go (the state sled opened with is durable).
        let mut referenced = Vec::new();
        for item in self.calls.range(RECORDS..) {
            let (_, v) = item?;
            if let Some(at) = ChunkRef::decode(&v)? {
                referenced.push(at.segment);
            }
        }
        self.segments.referenced(referenced);
        self.segments.delete(&self.segments.unused())
    }

    /// A chunk's whole encoding from its sled value: the value itself when stored inline, its
    /// segment's bytes for a reference; `None` when retention deleted the segment after the
    /// value was read.
    fn chunk_bytes<'v>(&self, v: &'v [u8]) -> Result<Option<Cow<'v, [u8]>>, StoreError> {
        match ChunkRef::decode(v)? {
            None => Ok(Some(Cow::Borrowed(v))),
            Some(at) => Ok(self.segments.read(at)?.map(Cow::Owned)),
        }
    }

    /// The history head as the last write left it (an empty key before retention first ran:
    /// it hides nothing).
    fn head(&self) -> Head {
        self.history_head
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Convert JSON records under their string ids into chunks, a chunk at a time.
    fn migrate_json_history(&self) -> Result<(), StoreError> {
        let mut converted = 0usize;
        loop {
            let old: Vec<(sled::IVec, sled::IVec)> = self
                .calls
                .scan_prefix(b"call_")
                .take(CHUNK_MAX)
                .collect::<Result<_, _>>()?;
            if old.is_empty() {
                break;
            }
            let records: Vec<CallRecord> = old
                .iter()
                .map(|(_, v)| codec::decode_json(v))
                .collect::<Result<_, _>>()?;
            let (k, v) = codec::encode_chunk(&records.iter().collect::<Vec<_>>())?;
            let mut batch = sled::Batch::default();
            for (k, _) in &old {
                batch.remove(k.clone());
            }
            batch.insert(k, v);
            self.calls.apply_batch(batch)?;
            converted += old.len();
        }
        if converted > 0 {
            // The count is taken afresh after a conversion.
            self.calls.remove(COUNT_KEY)?;
            tracing::info!(records = converted, "call history converted to chunks");
        }
        Ok(())
    }

    /// The writes retention needs and how many records it removes: whole chunks while a chunk
    /// is all excess or all too old, then it hides the oldest records of one more chunk (the
    /// new [`Head`], `None` when it is unchanged). `fresh` are the batch's own chunks (not yet
    /// in the tree), trimmed in place when the excess reaches them. Walks from the head, so a
    /// history at its cap costs the same to prune whatever was pruned before.
    fn retention(
        &self,
        count: usize,
        max_records: usize,
        max_age_secs: u64,
        fresh: &mut Vec<Vec<&codec::PackedCall<'_>>>,
    ) -> Result<Retention, StoreError> {
        let mut excess = if max_records > 0 {
            count.saturating_sub(max_records)
        } else {
            0
        };
        let cutoff_ms = (max_age_secs > 0)
            .then(|| crate::model::now_ms().saturating_sub(max_age_secs.saturating_mul(1000)));
        let too_old =
            |k: &[u8]| cutoff_ms.is_some_and(|c| codec::recorded_ms(k).is_some_and(|t| t < c));
        let head = self.head();
        let mut ops = Vec::new();
        let mut freed = Vec::new();
        let mut removed = 0;
        let start = if head.key.is_empty() {
            RECORDS.to_vec()
        } else {
            head.key.clone()
        };
        for item in self.calls.range(start..) {
            let (k, v) = item?;
            let h = segments::header(&v)?;
            let hidden = head.hidden_in(&k);
            let live = h.count.saturating_sub(hidden);
            if excess >= live || too_old(&h.last) {
                if let Some(at) = ChunkRef::decode(&v)? {
                    freed.push(at.segment);
                }
                ops.push((k.to_vec(), None));
                excess = excess.saturating_sub(live);
                removed += live;
                continue;
            }
            let mut now_hidden = hidden + excess;
            removed += excess;
            if too_old(&k) {
                // Its oldest records are past the age: count them (a chunk is in id order).
                let Some(bytes) = self.chunk_bytes(&v)? else {
                    return Err(StoreError::Corrupt(
                        "a call history segment is missing".into(),
                    ));
                };
                let old = codec::decode_chunk(&bytes)?
                    .iter()
                    .take_while(|r| codec::key(&r.id).is_ok_and(|k| too_old(&k)))
                    .count();
                if old > now_hidden {
                    removed += old - now_hidden;
                    now_hidden = old;
                }
            }
            let moved = Head {
                key: k.to_vec(),
                hidden: now_hidden,
            };
            return Ok(Retention {
                ops,
                removed,
                head: (moved != head).then_some(moved),
                freed,
            });
        }
        // Every stored record is gone and the excess goes on into this batch's own chunks.
        for chunk in fresh.iter_mut() {
            if excess == 0 {
                break;
            }
            let drop = excess.min(chunk.len());
            chunk.drain(..drop);
            excess -= drop;
            removed += drop;
        }
        fresh.retain(|c| !c.is_empty());
        // Nothing stored is left: the head is past the last chunk removed.
        let moved = ops.last().map(|(k, _)| Head {
            key: k.clone(),
            hidden: 0,
        });
        Ok(Retention {
            ops,
            removed,
            head: moved,
            freed,
        })
    }
}

/// What retention does to one batch.
struct Retention {
    /// The writes: whole chunks removed.
    ops: Vec<Op>,
    /// How many records it removes (whole chunks, hidden ones, trimmed fresh ones).
    removed: usize,
    /// The new head, when it moved.
    head: Option<Head>,
    /// The segment each removed chunk referred to (one entry per chunk).
    freed: Vec<u64>,
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
    fn insert_packed<'a>(
        &'a self,
        records: &'a [codec::PackedCall<'a>],
        max_records: usize,
        max_age_secs: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            use std::sync::atomic::Ordering::Relaxed;
            if records.is_empty() {
                return Ok(());
            }
            let mut sorted: Vec<&codec::PackedCall<'_>> = records.iter().collect();
            sorted.sort_by_key(|r| r.key);
            let mut fresh: Vec<Vec<&codec::PackedCall<'_>>> =
                sorted.chunks(CHUNK_MAX).map(<[_]>::to_vec).collect();
            let guard = self.history_write.lock().unwrap_or_else(|p| p.into_inner());
            let count = self.call_count.load(Relaxed) + records.len();
            let Retention {
                mut ops,
                removed,
                head,
                freed,
            } = self.retention(count, max_records, max_age_secs, &mut fresh)?;
            // The bodies go to the active segment, synced before sled refers to them.
            let (keys, bodies): (Vec<_>, Vec<_>) = fresh
                .iter()
                .map(|chunk| codec::encode_packed_chunk(chunk))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .unzip();
            let refs = self.segments.append(&bodies)?;
            for (((k, body), at), records) in keys.into_iter().zip(&bodies).zip(&refs).zip(&fresh) {
                ops.push((k, Some(at.encode(body, Summary::of(records))?)));
            }
            drop(bodies);
            let after = count - removed;
            ops.push((COUNT_KEY.to_vec(), Some(count_bytes(after).to_vec())));
            if let Some(h) = &head {
                ops.push((HEAD_KEY.to_vec(), Some(h.encode())));
            }
            if self.events_on() {
                let events = records
                    .iter()
                    .map(|r| r.unpack().map(|c| crate::events::payload::call_event(&c)))
                    .collect::<Result<Vec<_>, _>>()?;
                // The call events go to the outbox in the same transaction as the records (every
                // call's, also one retention drops at once: the call still happened).
                (&self.calls, &self.outbox)
                    .transaction(|(calls, ob)| {
                        for (k, v) in &ops {
                            match v {
                                Some(v) => calls.insert(k.as_slice(), v.as_slice())?,
                                None => calls.remove(k.as_slice())?,
                            };
                        }
                        for e in &events {
                            self.emit(ob, e.clone())?;
                        }
                        Ok(())
                    })
                    .map_err(tx_err)?;
            } else {
                // Nobody listens: an atomic batch on one tree, without the global transaction lock.
                let mut batch = sled::Batch::default();
                for (k, v) in ops {
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                self.calls.apply_batch(batch)?;
            }
            self.call_count.store(after, Relaxed);
            if let Some(h) = head {
                *self.history_head.lock().unwrap_or_else(|p| p.into_inner()) = h;
            }
            self.segments.referenced(refs.iter().map(|at| at.segment));
            for s in freed {
                self.segments.released(s);
            }
            // Taken under the lock, after every batch applied so far: the flush below makes
            // their removals durable before any segment they emptied is deleted.
            let unused = self.segments.unused();
            drop(guard);
            self.durable().await?;
            self.segments.delete(&unused)
        })
    }

    fn get_call<'a>(&'a self, id: &'a str) -> StoreFuture<'a, CallRecord> {
        Box::pin(async move {
            let Ok(key) = codec::key(id) else {
                return Err(StoreError::NotFound("call"));
            };
            let Some((k, v)) = self
                .calls
                .range(RECORDS.to_vec()..=key.to_vec())
                .next_back()
                .transpose()?
            else {
                return Err(StoreError::NotFound("call"));
            };
            if segments::header(&v)?.last < key {
                return Err(StoreError::NotFound("call"));
            }
            let hidden = self.head().hidden_in(&k);
            let Some(bytes) = self.chunk_bytes(&v)? else {
                return Err(StoreError::NotFound("call"));
            };
            codec::decode_chunk(&bytes)?
                .into_iter()
                .skip(hidden)
                .find(|r| r.id == id)
                .ok_or(StoreError::NotFound("call"))
        })
    }

    fn list_calls<'a>(&'a self, filter: &'a CallFilter) -> StoreFuture<'a, Vec<CallRecord>> {
        Box::pin(async move {
            let before = match &filter.before {
                // An id that is not a call id names no record: nothing is before it.
                Some(b) => match codec::key(b) {
                    Ok(k) => Some(k),
                    Err(_) => return Ok(Vec::new()),
                },
                None => None,
            };
            let end = before.map(|k| k.to_vec()).unwrap_or_else(|| vec![0xff; 17]);
            let mut out = Vec::new();
            let head = self.head();
            // The chunk holding `before` starts at or before it: the range includes it.
            for item in self.calls.range(RECORDS.to_vec()..=end).rev() {
                let (k, v) = item?;
                if ChunkRef::summary(&v)?.is_some_and(|s| !s.may_match(filter)) {
                    continue;
                }
                // Gone since the range was read: past retention, like everything older.
                let Some(bytes) = self.chunk_bytes(&v)? else {
                    break;
                };
                let records = codec::decode_chunk(&bytes)?;
                for rec in records.into_iter().skip(head.hidden_in(&k)).rev() {
                    if before.is_some_and(|b| codec::key(&rec.id).is_ok_and(|k| k >= b)) {
                        continue;
                    }
                    if matches(&rec, filter) {
                        out.push(rec);
                        if out.len() >= filter.limit {
                            return Ok(out);
                        }
                    }
                }
            }
            Ok(out)
        })
    }
}
