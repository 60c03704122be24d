//! Call records packed for the history: encoded by the thread that made the call, into one
//! batch's shared buffers, and read by the history writer in place.
//!
//! A record used to be its own `Vec` and two `String`s, made on a serving thread and freed by
//! the writer. Those frees came from another thread than the one whose heap the blocks belonged
//! to, so mimalloc kept their pages committed until the owning thread collected them: with the
//! PostgreSQL store, whose writer keeps its queue full, the gateway's RSS stepped up by 15–25 MB
//! at a random minute of half the soaks while its live heap did not move. A batch is now two
//! growable buffers that the recorder and the writer swap and reuse, so no record allocates past
//! its call and nothing crosses threads to be freed; the step then came in a third of the soaks
//! and by 5–8.5 MB (BENCHMARKS.md, issue 18, eleventh session).

use super::{Stored, from_stored, key, to_stored};
use crate::model::{CallId, CallRecord, Outcome, Source};
use crate::store::StoreError;

/// One packed record, read in place from its batch.
#[derive(Debug, Clone, Copy)]
pub struct PackedCall<'a> {
    /// The call id's 16 bytes: the record's key.
    pub key: [u8; 16],
    /// The record without its id (`Stored`), MessagePack by position.
    pub(super) stored: &'a [u8],
    /// Tool name, for the PostgreSQL store's row beside the chunk.
    pub tool: Option<&'a str>,
    /// Webhook id, likewise.
    pub webhook_id: &'a str,
    /// How the call ended, likewise.
    pub outcome: Outcome,
    /// Who started it, likewise.
    pub source: Source,
}

impl PackedCall<'_> {
    /// The record's call id.
    pub fn id(&self) -> CallId {
        CallId::from_bits(u128::from_be_bytes(self.key))
    }

    /// The record again (for an event about the call).
    pub fn unpack(&self) -> Result<CallRecord, StoreError> {
        let s: Stored = rmp_serde::from_slice(self.stored)
            .map_err(|e| StoreError::Corrupt(format!("call history record: {e}")))?;
        Ok(from_stored(self.id(), s))
    }
}

/// Where one record's parts are in its batch's buffers.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: [u8; 16],
    /// `stored` is `bytes[start..stored_end]`.
    start: usize,
    stored_end: usize,
    /// The tool name and the webhook id follow each other in `text`.
    text_start: usize,
    tool_end: Option<usize>,
    text_end: usize,
    outcome: Outcome,
    source: Source,
}

/// Records packed into shared buffers: what the recorder's queue holds and the writer stores.
/// Cleared, it keeps its buffers' capacity for the next batch.
#[derive(Debug, Default)]
pub struct PackedBatch {
    bytes: Vec<u8>,
    text: String,
    entries: Vec<Entry>,
}

/// A record encoded but not yet in a batch (nor keyed): what a caller prepares outside the
/// recorder's lock, so that only copying it in is done under the lock.
pub struct Encoded<'r> {
    record: &'r CallRecord,
    stored: &'r [u8],
}

impl<'r> Encoded<'r> {
    /// Put its bytes aside in `keep`, for a caller that must wait for room and so cannot hold on
    /// to its thread's scratch buffer meanwhile; `Encoded::kept` gives the record back from them
    /// without encoding it again.
    pub fn keep(&self, keep: &mut Vec<u8>) {
        keep.clear();
        keep.extend_from_slice(self.stored);
    }

    /// `record` with the bytes `keep` put aside for it (the caller pairs them: they are not
    /// checked against the record).
    pub fn kept(record: &'r CallRecord, kept: &'r [u8]) -> Encoded<'r> {
        Encoded {
            record,
            stored: kept,
        }
    }
}

impl PackedBatch {
    /// A batch of `records`, each keyed by its own id.
    pub fn of(records: &[&CallRecord]) -> Result<PackedBatch, StoreError> {
        let mut batch = PackedBatch::default();
        let mut scratch = Vec::new();
        for r in records {
            let bits = u128::from_be_bytes(key(&r.id)?);
            batch.push(&PackedBatch::encode(r, None, &mut scratch)?, bits);
        }
        Ok(batch)
    }

    /// Encode `r` into `scratch` (cleared first; a caller keeps one and reuses it). With
    /// `json_body` (the response body as JSON text, when the call built no tree of it, and `r`'s
    /// response body left `Null`), the text is stored beside the record and read back as the
    /// response's body.
    pub fn encode<'r>(
        r: &'r CallRecord,
        json_body: Option<&str>,
        scratch: &'r mut Vec<u8>,
    ) -> Result<Encoded<'r>, StoreError> {
        scratch.clear();
        super::msgpack::write_stored(scratch, &to_stored(r, json_body))?;
        Ok(Encoded {
            record: r,
            stored: scratch,
        })
    }

    /// Add an encoded record under the call id whose 128 bits are `bits`.
    pub fn push(&mut self, e: &Encoded<'_>, bits: u128) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(e.stored);
        let text_start = self.text.len();
        let tool_end = e.record.tool.as_deref().map(|t| {
            self.text.push_str(t);
            self.text.len()
        });
        self.text.push_str(&e.record.webhook_id);
        self.entries.push(Entry {
            key: bits.to_be_bytes(),
            start,
            stored_end: self.bytes.len(),
            text_start,
            tool_end,
            text_end: self.text.len(),
            outcome: e.record.outcome,
            source: e.record.source,
        });
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forget its records, keeping its buffers for the next batch.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.text.clear();
        self.entries.clear();
    }

    /// `clear`, and let go of the buffers too if they hold more than `max_bytes`.
    pub fn clear_keeping(&mut self, max_bytes: usize) {
        let held = self.bytes.capacity()
            + self.text.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>();
        if held > max_bytes {
            *self = PackedBatch::default();
        } else {
            self.clear();
        }
    }

    /// Its records, in the order they were pushed.
    pub fn records(&self) -> Vec<PackedCall<'_>> {
        self.entries
            .iter()
            .map(|e| {
                // Every range was recorded as the buffers grew, at `str` boundaries: `get`
                // cannot miss, and an empty part would only be a wrong name, never a panic.
                let text = |a: usize, b: usize| self.text.get(a..b).unwrap_or_default();
                let hook_start = e.tool_end.unwrap_or(e.text_start);
                PackedCall {
                    key: e.key,
                    stored: self.bytes.get(e.start..e.stored_end).unwrap_or_default(),
                    tool: e.tool_end.map(|end| text(e.text_start, end)),
                    webhook_id: text(hook_start, e.text_end),
                    outcome: e.outcome,
                    source: e.source,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tool: Option<&str>, hook: &str, error: Option<&str>) -> CallRecord {
        serde_json::from_value(serde_json::json!({
            "id": crate::model::ids::new_id("call"), "tool": tool, "webhook_id": hook,
            "source": "invoke", "started_at": "2026-01-01T00:00:00Z", "duration_ms": 7,
            "outcome": if error.is_some() { "http_error" } else { "success" }, "error": error,
            "arguments": {"q": "ü"}, "request": null,
            "response": {"status": 200, "headers": [["content-type", "application/json"]],
                "body": {"n": 1}}
        }))
        .expect("record")
    }

    #[test]
    fn a_batch_gives_back_each_record_and_reuses_its_buffers() {
        let records = [
            record(Some("lookup_order"), "wh_1", None),
            record(None, "wh_ä2", Some("upstream said no")),
            record(Some(""), "", None),
        ];
        let mut batch = PackedBatch::of(&records.iter().collect::<Vec<_>>()).expect("batch");
        assert_eq!(batch.len(), 3);
        let packed = batch.records();
        for (p, r) in packed.iter().zip(&records) {
            assert_eq!(p.unpack().expect("unpack"), *r);
            assert_eq!(p.id(), r.id);
            assert_eq!(p.tool, r.tool.as_deref());
            assert_eq!(p.webhook_id, r.webhook_id);
            assert_eq!(p.outcome, r.outcome);
            assert_eq!(p.source, r.source);
        }
        let capacity = (batch.bytes.capacity(), batch.text.capacity());
        batch.clear();
        assert!(batch.is_empty() && batch.records().is_empty());
        let mut scratch = Vec::new();
        let mut kept = Vec::new();
        PackedBatch::encode(&records[1], None, &mut scratch)
            .expect("encode")
            .keep(&mut kept);
        scratch.clear();
        let e = Encoded::kept(&records[1], &kept);
        batch.push(&e, 42);
        assert_eq!(batch.records()[0].id(), CallId::from_bits(42));
        let mut again = records[1].clone();
        again.id = CallId::from_bits(42);
        assert_eq!(batch.records()[0].unpack().expect("unpack"), again);
        assert_eq!(batch.records()[0].tool, None);
        assert_eq!(batch.records()[0].webhook_id, "wh_ä2");
        assert_eq!((batch.bytes.capacity(), batch.text.capacity()), capacity);
        batch.clear_keeping(1 << 20);
        assert_eq!((batch.bytes.capacity(), batch.text.capacity()), capacity);
        batch.push(&e, 43);
        batch.clear_keeping(16);
        assert_eq!((batch.len(), batch.bytes.capacity()), (0, 0));
    }
}
