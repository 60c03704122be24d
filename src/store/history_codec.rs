//! The on-disk form of a history record, kept small, for both stores: a record's key is its call
//! id's 16 UUIDv7 bytes (time-ordered: when its record was queued), its value the record without
//! its id, MessagePack-encoded by position (every field present, so positions never shift). A
//! write batch's records are stored together as chunks, zstd-compressed against a dictionary of
//! the strings records repeat (header names, common values): sled keeps a chunk under its first
//! key, PostgreSQL in `call_chunks` beside a slim row per record.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::call::{RecordedRequest, RecordedResponse};
use crate::model::{CallId, CallRecord, Outcome, Source};
use crate::store::StoreError;

mod msgpack;
mod packed;
pub use packed::{Encoded, PackedBatch, PackedCall};

/// zstd level. 1 rather than zstd's default 3: on chunks of alike records it compresses as well
/// (what records repeat, every level finds) and 1.2–1.3 times as fast (BENCHMARKS.md, issue 16,
/// seventeenth session). Literals stay Huffman-coded: without that, chunks of records carrying
/// hex or base64 tokens came out about twice as large.
const LEVEL: i32 = 1;

/// Strings most records hold, given to zstd as a raw-content dictionary (the most frequent last,
/// where zstd finds them cheapest).
const DICTIONARY: &str = concat!(
    "conversation_idagentattemptsresponserequestargumentserroroutcomeduration_msstarted_at",
    "sourcewebhook_idtoolidstatusheadersbodyurlmethod",
    "invalid_argumentsnetwork_errorconfig_errorhttp_errortimeoutblocked",
    "x-request-iduser-agenttoolgate/accept-encodingtransfer-encodingchunked",
    "content-lengthcontent-typeapplication/jsonapplication/x-www-form-urlencoded",
    "text/plain; charset=utf-8text/html; charset=utf-8connectionkeep-alive",
    "serverdateMon, Tue, Wed, Thu, Fri, Sat, Sun, GMTJanFebMarAprMayJunJulAugSepOctNovDec",
    "AuthorizationBearer [REDACTED]x-api-key[REDACTED]",
    "{\"status\":\"error\":\"message\":\"data\":\"id\":\"name\":\"order\":\"items\":",
    "https://http://127.0.0.1:localhost:/v1/api/",
    "GETPOSTPUTPATCHDELETEinvoketestchatmcpsuccesswh_conv_call_",
);

fn dictionary() -> &'static [u8] {
    DICTIONARY.as_bytes()
}

/// The call id as its key: `call_` + 32 hex digits → the 16 bytes they spell.
pub fn key(id: &str) -> Result<[u8; 16], StoreError> {
    let hex = id
        .strip_prefix("call_")
        .filter(|h| h.len() == 32)
        .ok_or_else(|| StoreError::Corrupt(format!("'{id}' is not a call id")))?;
    let n = u128::from_str_radix(hex, 16)
        .map_err(|_| StoreError::Corrupt(format!("'{id}' is not a call id")))?;
    Ok(n.to_be_bytes())
}

/// Milliseconds since the epoch in a call id (UUIDv7's first 48 bits): when the call's record was
/// queued, at its end.
pub fn recorded_ms(key: &[u8]) -> Option<u64> {
    let b: [u8; 6] = key.get(..6)?.try_into().ok()?;
    Some(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

/// A record as stored: every field by position (none left out, so positions never shift),
/// no id (the key spells it), the start time as nanoseconds.
#[derive(Serialize, Deserialize)]
struct Stored {
    tool: Option<String>,
    webhook_id: String,
    source: Source,
    /// Nanoseconds since the epoch, or the text when it did not parse.
    started: Result<i64, String>,
    duration_ms: u64,
    outcome: Outcome,
    error: Option<String>,
    arguments: Value,
    request: Option<RecordedRequest>,
    response: Option<RecordedResponse>,
    attempts: u32,
    agent: Option<String>,
    conversation_id: Option<String>,
    /// Added after the first chunks were written: absent at the end of older ones.
    #[serde(default)]
    caller: Option<String>,
    #[serde(default)]
    context: Option<Value>,
    /// The response body as JSON text, when the call handed it on as text and built no tree of
    /// it: `response.body` is then `Null`, and this is parsed into it when the record is read
    /// (copying the text costs a write next to nothing; encoding its tree cost a few thousand
    /// instructions per call). Added after the first chunks were written, like `caller`.
    #[serde(default)]
    response_json: Option<String>,
}

/// `Stored`, borrowed from the record it encodes: the same fields in the same order, so it
/// encodes to the same bytes without copying the record first.
#[derive(Serialize)]
struct StoredRef<'a> {
    tool: &'a Option<String>,
    webhook_id: &'a str,
    source: Source,
    started: Result<i64, String>,
    duration_ms: u64,
    outcome: Outcome,
    error: &'a Option<String>,
    arguments: &'a Value,
    request: &'a Option<RecordedRequest>,
    response: &'a Option<RecordedResponse>,
    attempts: u32,
    agent: &'a Option<String>,
    conversation_id: &'a Option<String>,
    caller: &'a Option<String>,
    context: &'a Option<Value>,
    response_json: Option<&'a str>,
}

const RFC3339: &time::format_description::well_known::Rfc3339 =
    &time::format_description::well_known::Rfc3339;

/// The start time as nanoseconds, when formatting them back gives the same text.
fn started_nanos(text: &str) -> Result<i64, String> {
    // The form every call is stamped in, read without the general parser and the check below.
    if let Some(n) = crate::model::clock::canonical_nanos(text) {
        return Ok(n);
    }
    time::OffsetDateTime::parse(text, RFC3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
        .filter(|n| started_text(*n).as_deref() == Some(text))
        .ok_or_else(|| text.to_string())
}

fn started_text(nanos: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .ok()?
        .format(RFC3339)
        .ok()
}

/// `r` to encode; `json_body` stands for its response's body (see `PackedBatch::encode`).
fn to_stored<'a>(r: &'a CallRecord, json_body: Option<&'a str>) -> StoredRef<'a> {
    StoredRef {
        tool: &r.tool,
        webhook_id: &r.webhook_id,
        source: r.source,
        started: started_nanos(&r.started_at),
        duration_ms: r.duration_ms,
        outcome: r.outcome,
        error: &r.error,
        arguments: &r.arguments,
        request: &r.request,
        response: &r.response,
        attempts: r.attempts,
        agent: &r.agent,
        conversation_id: &r.conversation_id,
        caller: &r.caller,
        context: &r.context,
        response_json: json_body.filter(|_| r.response.is_some()),
    }
}

fn from_stored(id: CallId, s: Stored) -> CallRecord {
    CallRecord {
        id,
        tool: s.tool,
        webhook_id: s.webhook_id,
        source: s.source,
        started_at: match s.started {
            Ok(n) => started_text(n).unwrap_or_default(),
            Err(text) => text,
        },
        duration_ms: s.duration_ms,
        outcome: s.outcome,
        error: s.error,
        arguments: s.arguments,
        request: s.request,
        response: s.response.map(|mut p| {
            if let Some(text) = s.response_json {
                p.body = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    // Never written so (the text was serde_json's own); kept as text if it is.
                    Err(_) => Value::String(text),
                };
            }
            p
        }),
        attempts: s.attempts,
        agent: s.agent,
        conversation_id: s.conversation_id,
        caller: s.caller,
        context: s.context,
    }
}

/// Packed chunks from this size on are compressed without the dictionary. What the dictionary
/// holds, such a chunk repeats many times over on its own, and zstd's search through a separate
/// dictionary is slower: on a full chunk of the benchmark's records (213 KB) level 1 ran at
/// 3,140 MB/s with it and 3,730 MB/s without, at a ratio of 34.7 against 34.3; on 64 records
/// (27 KB) the dictionary still gained 8 % in size, on one record 22 % (`zstd -b`,
/// BENCHMARKS.md, issue 16, twenty-second session). The frame does not say which: the
/// decompressor always holds the dictionary, and a frame made without one never refers to it.
const PLAIN_FROM: usize = 64 << 10;

/// Compress `packed` into `frame` (its bytes replaced), with this thread's compressor.
fn compress_into(packed: &[u8], frame: &mut Vec<u8>) -> Result<(), StoreError> {
    frame.clear();
    frame.reserve(zstd::zstd_safe::compress_bound(packed.len()));
    let with_dictionary = packed.len() < PLAIN_FROM;
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let c = &mut c[usize::from(with_dictionary)];
        let c = match c.as_mut() {
            Some(c) => c,
            None => c.insert(compressor(with_dictionary)?),
        };
        c.compress_to_buffer(packed, frame)
            .map(|_| ())
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    })
}

/// Format byte of a chunk: up to a write batch of records, compressed together (records of one
/// batch are alike, so a chunk compresses far better than its records one by one, and sled
/// keeps one entry for all of them).
pub(crate) const FORMAT_CHUNK: u8 = 3;

/// Bytes before a chunk's frame: format, record count, last record key, packed size.
pub(crate) const HEADER: usize = 1 + 2 + 16 + 4;

/// Most records in one chunk.
pub const CHUNK_MAX: usize = 512;

/// What a chunk's header says without decompressing it.
#[derive(Debug, Clone, Copy)]
pub struct ChunkHeader {
    /// Records in the chunk.
    pub count: usize,
    /// The newest record's key.
    pub last: [u8; 16],
}

/// Read a chunk's header.
pub fn chunk_header(value: &[u8]) -> Result<ChunkHeader, StoreError> {
    if value.len() < HEADER || value[0] != FORMAT_CHUNK {
        return Err(StoreError::Corrupt("call history chunk header".into()));
    }
    let mut last = [0u8; 16];
    last.copy_from_slice(&value[3..19]);
    Ok(ChunkHeader {
        count: u16::from_be_bytes([value[1], value[2]]) as usize,
        last,
    })
}

/// A chunk of records, oldest first (at most `CHUNK_MAX`, at least one); its key is the first
/// record's.
pub fn encode_chunk(records: &[&CallRecord]) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let batch = PackedBatch::of(records)?;
    encode_packed_chunk(&batch.records().iter().collect::<Vec<_>>())
}

/// `encode_chunk` of packed records: the same bytes (an array of `(key, Stored)` pairs), put
/// together from each record's own.
pub fn encode_packed_chunk(records: &[&PackedCall<'_>]) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Err(StoreError::Corrupt("an empty history chunk".into()));
    };
    let too_many = || StoreError::Corrupt("too many records for one history chunk".into());
    let count = u16::try_from(records.len()).map_err(|_| too_many())?;
    let size: usize = records.iter().map(|r| r.stored.len() + 24).sum();
    // The packed records and their frame are put together in buffers this thread keeps.
    let (mut packed, mut frame) = CHUNK_SCRATCH.take();
    packed.clear();
    packed.reserve(size + 8);
    let encode = |e: String| StoreError::Corrupt(e);
    rmp::encode::write_array_len(&mut packed, u32::from(count))
        .map_err(|e| encode(e.to_string()))?;
    for r in records {
        rmp::encode::write_array_len(&mut packed, 2).map_err(|e| encode(e.to_string()))?;
        put_key(&mut packed, &r.key);
        packed.extend_from_slice(r.stored);
    }
    compress_into(&packed, &mut frame)?;
    let mut out = Vec::with_capacity(HEADER + frame.len());
    out.push(FORMAT_CHUNK);
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&last.key);
    out.extend_from_slice(&(packed.len() as u32).to_be_bytes());
    out.extend_from_slice(&frame);
    if packed.capacity().max(frame.capacity()) <= CHUNK_SCRATCH_KEPT {
        CHUNK_SCRATCH.set((packed, frame));
    }
    Ok((first.key.to_vec(), out))
}

/// A record's key as `rmp_serde` writes a `[u8; 16]`: an array of 16 integers, each a positive
/// fixint below 128 and `0xcc` and the byte from there. Written byte by byte here: through
/// `rmp_serde`, sixteen `write_uint` calls a record were an eighth of the history writer's time.
fn put_key(out: &mut Vec<u8>, key: &[u8; 16]) {
    out.extend_from_slice(&[0xdc, 0x00, 0x10]);
    for &b in key {
        if b >= 0x80 {
            out.push(0xcc);
        }
        out.push(b);
    }
}

/// A chunk's records, oldest first.
pub fn decode_chunk(value: &[u8]) -> Result<Vec<CallRecord>, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("call history chunk: {e}"));
    let packed = unpack_chunk(value)?;
    let entries: Vec<([u8; 16], Stored)> =
        rmp_serde::from_slice(&packed).map_err(|e| corrupt(e.to_string()))?;
    Ok(entries
        .into_iter()
        .map(|(k, s)| from_stored(CallId::from_bits(u128::from_be_bytes(k)), s))
        .collect())
}

/// The records of a chunk at the positions `wanted` marks (oldest first, from 0), `None`
/// elsewhere: the others are skipped without being built, so a page that needs a few records of
/// a full chunk does not pay for all of it.
pub fn decode_chunk_some(
    value: &[u8],
    wanted: &[bool],
) -> Result<Vec<Option<CallRecord>>, StoreError> {
    use serde::de::DeserializeSeed;
    let corrupt = |e: String| StoreError::Corrupt(format!("call history chunk: {e}"));
    let packed = unpack_chunk(value)?;
    let mut de = rmp_serde::Deserializer::new(&packed[..]);
    let entries = Picked(wanted)
        .deserialize(&mut de)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(entries
        .into_iter()
        .map(|e| e.map(|(k, s)| from_stored(CallId::from_bits(u128::from_be_bytes(k)), s)))
        .collect())
}

/// A chunk's MessagePack, decompressed.
fn unpack_chunk(value: &[u8]) -> Result<Vec<u8>, StoreError> {
    chunk_header(value)?;
    let size = u32::from_be_bytes([value[19], value[20], value[21], value[22]]) as usize;
    decompressor()?
        .decompress(&value[HEADER..], size)
        .map_err(|e| StoreError::Corrupt(format!("call history chunk: {e}")))
}

/// Reads a chunk's entries, building only those marked.
struct Picked<'w>(&'w [bool]);

impl<'de> serde::de::DeserializeSeed<'de> for Picked<'_> {
    type Value = Vec<Option<([u8; 16], Stored)>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Picked<'_> {
    type Value = Vec<Option<([u8; 16], Stored)>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a chunk's entries")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(self.0.len());
        loop {
            let entry = if self.0.get(out.len()).copied().unwrap_or(false) {
                match seq.next_element::<([u8; 16], Stored)>()? {
                    Some(e) => Some(e),
                    None => break,
                }
            } else {
                match seq.next_element::<serde::de::IgnoredAny>()? {
                    Some(_) => None,
                    None => break,
                }
            };
            out.push(entry);
        }
        Ok(out)
    }
}

/// A record stored as JSON by toolgate before chunks (converted at open).
pub fn decode_json(value: &[u8]) -> Result<CallRecord, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt(format!("call record: {e}")))
}

/// Bytes each of a thread's chunk buffers (`CHUNK_SCRATCH`) keeps between chunks: a full chunk
/// (`CHUNK_MAX` records of a few hundred bytes) fits; a chunk of large records lets its buffers go.
const CHUNK_SCRATCH_KEPT: usize = 1 << 20;

thread_local! {
    /// The packed records of the chunk being encoded and its compressed frame, kept by the
    /// thread (the history writer) between chunks. Allocated afresh for every batch, they were
    /// the writer's largest blocks: freed at the end of a batch, their pages went back to the OS
    /// (`allocator::PURGE_DELAY_MS`) just before the next batch faulted them in again, each
    /// return with a TLB shootdown that interrupts the serving threads' CPUs.
    static CHUNK_SCRATCH: std::cell::Cell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
    /// Compressors per writer thread, without and with the dictionary (`PLAIN_FROM`):
    /// preparing the dictionary costs more than compressing.
    static COMPRESSOR: std::cell::RefCell<[Option<zstd::bulk::Compressor<'static>>; 2]> =
        const { std::cell::RefCell::new([None, None]) };
}

fn compressor(with_dictionary: bool) -> Result<zstd::bulk::Compressor<'static>, StoreError> {
    let err = |e: std::io::Error| StoreError::Corrupt(e.to_string());
    let mut c = if with_dictionary {
        zstd::bulk::Compressor::with_dictionary(LEVEL, dictionary())
    } else {
        zstd::bulk::Compressor::new(LEVEL)
    }
    .map_err(err)?;
    // Every byte counts in a record this small: no checksum (sled checks its pages), no
    // dictionary id (there is one dictionary), no size (stored beside the frame).
    c.include_checksum(false).map_err(err)?;
    c.include_dictid(false).map_err(err)?;
    c.include_contentsize(false).map_err(err)?;
    Ok(c)
}

fn decompressor() -> Result<zstd::bulk::Decompressor<'static>, StoreError> {
    static DICT: OnceLock<zstd::dict::DecoderDictionary<'static>> = OnceLock::new();
    let dict = DICT.get_or_init(|| zstd::dict::DecoderDictionary::copy(dictionary()));
    zstd::bulk::Decompressor::with_prepared_dictionary(dict)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    /// `put_key` writes what `rmp_serde` writes for the same key, byte for byte.
    #[test]
    fn keys_are_written_as_rmp_serde_writes_them() {
        let keys: [[u8; 16]; 4] = [
            [0; 16],
            [0xff; 16],
            std::array::from_fn(|i| (i as u8).wrapping_mul(37)),
            std::array::from_fn(|i| 0x7e + i as u8),
        ];
        for key in keys {
            let mut ours = Vec::new();
            super::put_key(&mut ours, &key);
            assert_eq!(ours, rmp_serde::to_vec(&key).expect("rmp_serde"), "{key:?}");
        }
    }

    use super::*;
    use serde_json::json;

    fn sample() -> CallRecord {
        serde_json::from_value(json!({
            "id": crate::model::ids::new_id("call"), "tool": "bench_order", "webhook_id": "wh_01a2079ab4cd70a2bb310da3e6713007",
            "source": "invoke", "started_at": "2026-11-23T08:51:49.204144Z", "duration_ms": 1,
            "outcome": "success", "error": null, "arguments": {"order_number": "A-1001"},
            "request": {"method": "GET", "url": "http://127.0.0.1:18090/orders/A-1001?format=json",
                "headers": [["X-Api-Key", "[REDACTED]"]], "body": null},
            "response": {"status": 200, "headers": [["server", "nginx/1.22.1"], ["date", "Mon, 23 Nov 2026 08:51:49 GMT"],
                ["content-type", "application/json"], ["content-length", "35"], ["connection", "keep-alive"]],
                "body": {"order": {"status": "shipped"}}},
            "attempts": 1
        }))
        .unwrap()
    }

    #[test]
    fn a_chunk_put_together_from_packed_records_is_the_pairs_packed_at_once() {
        let mut records: Vec<CallRecord> = (0..300).map(|_| sample()).collect();
        for (i, r) in records.iter_mut().enumerate() {
            r.id = CallId::new();
            r.duration_ms = i as u64 * 1_000_003;
            r.error = (i % 3 == 0).then(|| format!("error {i}"));
        }
        let refs: Vec<&CallRecord> = records.iter().collect();
        let pairs: Vec<([u8; 16], StoredRef<'_>)> = refs
            .iter()
            .map(|r| (key(&r.id).unwrap(), to_stored(r, None)))
            .collect();
        let at_once = rmp_serde::to_vec(&pairs).unwrap();
        let (_, chunk) = encode_chunk(&refs).unwrap();
        assert_eq!(unpack_chunk(&chunk).unwrap(), at_once);
        assert_eq!(decode_chunk(&chunk).unwrap(), records);
        // A record encoded before its id is known, then keyed in a batch, is the same record.
        let mut scratch = Vec::new();
        let mut batch = PackedBatch::default();
        let e = PackedBatch::encode(&records[7], None, &mut scratch).unwrap();
        batch.push(&e, u128::from_be_bytes(key(&records[7].id).unwrap()));
        let p = batch.records()[0];
        assert_eq!(p.unpack().unwrap(), records[7]);
        assert_eq!(p.id(), records[7].id);
    }

    /// A record whose response body is given as JSON text (the call built no tree) reads back
    /// as the record with that text parsed, from a batch and from a chunk alike.
    #[test]
    fn a_body_given_as_json_text_is_read_back_as_its_value() {
        let mut record = sample();
        record.id = CallId::new();
        let bits = u128::from_be_bytes(key(&record.id).unwrap());
        let mut without_body = record.clone();
        if let Some(p) = without_body.response.as_mut() {
            p.body = Value::Null;
        }
        for (text, body) in [
            (r#"{"order":{"status":"shipped"}}"#, None),
            (
                r#"{"z":[1,-2.5,18446744073709551615,null],"a":"\u00e9\"","m":{}}"#,
                Some(json!({"z": [1, -2.5, 18446744073709551615u64, null], "a": "é\"", "m": {}})),
            ),
        ] {
            let mut expected = record.clone();
            if let (Some(p), Some(b)) = (expected.response.as_mut(), body) {
                p.body = b;
            }
            let mut scratch = Vec::new();
            let mut batch = PackedBatch::default();
            batch.push(
                &PackedBatch::encode(&without_body, Some(text), &mut scratch).unwrap(),
                bits,
            );
            let packed = batch.records();
            assert_eq!(packed[0].unpack().unwrap(), expected);
            let refs: Vec<&PackedCall<'_>> = packed.iter().collect();
            let (_, chunk) = encode_packed_chunk(&refs).unwrap();
            assert_eq!(decode_chunk(&chunk).unwrap(), vec![expected]);
        }
        // No response, no text stored, whatever is given.
        let mut no_response = record.clone();
        no_response.response = None;
        let stored = |json| {
            let mut scratch = Vec::new();
            PackedBatch::encode(&no_response, json, &mut scratch).unwrap();
            scratch
        };
        assert_eq!(stored(Some("{}")), stored(None));
    }

    #[test]
    fn chunks_round_trip_and_are_small() {
        let records: Vec<CallRecord> = (0..200)
            .map(|_| {
                let mut r = sample();
                r.id = CallId::new();
                r
            })
            .collect();
        let refs: Vec<&CallRecord> = records.iter().collect();
        let (k, bytes) = encode_chunk(&refs).unwrap();
        assert_eq!(k, key(&records[0].id).unwrap().to_vec());
        assert_eq!(decode_chunk(&bytes).unwrap(), records);
        let h = chunk_header(&bytes).unwrap();
        assert_eq!(h.count, 200);
        assert_eq!(h.last, key(&records[199].id).unwrap());
        let json = serde_json::to_vec(&records[0]).unwrap().len();
        let per_record = bytes.len() / 200;
        assert!(
            per_record * 5 < json,
            "{per_record} bytes a record vs {json} as JSON"
        );
        // An unusual start time survives as text; the JSON form is still read.
        let mut odd = sample();
        odd.started_at = "2026-01-01T00:00:00+02:00".into();
        let (_, b) = encode_chunk(&[&odd]).unwrap();
        assert_eq!(decode_chunk(&b).unwrap(), vec![odd.clone()]);
        assert_eq!(
            decode_json(&serde_json::to_vec(&odd).unwrap()).unwrap(),
            odd
        );
        assert!(encode_chunk(&[]).is_err());
        assert!(decode_chunk(b"{}").is_err());
    }

    /// `n` records like `sample`, each with an id of its own and the error `"{error} {i}"`.
    fn samples(n: usize, error: &str) -> Vec<CallRecord> {
        (0..n)
            .map(|i| {
                let mut r = sample();
                r.id = CallId::new();
                r.error = Some(format!("{error} {i}"));
                r
            })
            .collect()
    }

    /// A chunk packed past `PLAIN_FROM` is compressed without the dictionary (zstd reads its
    /// frame without one), a smaller one with it; both are read back by the one decompressor.
    #[test]
    fn large_chunks_leave_the_dictionary_out_and_are_read_back() {
        let frame_alone = |bytes: &[u8]| {
            let size = u32::from_be_bytes([bytes[19], bytes[20], bytes[21], bytes[22]]);
            (
                size as usize,
                zstd::bulk::Decompressor::new()
                    .unwrap()
                    .decompress(&bytes[HEADER..], size as usize),
            )
        };
        let large = samples(CHUNK_MAX, "error");
        let (_, bytes) = encode_chunk(&large.iter().collect::<Vec<_>>()).unwrap();
        let (size, plain) = frame_alone(&bytes);
        assert!(size >= PLAIN_FROM, "{size} bytes packed");
        assert_eq!(plain.expect("no dictionary needed").len(), size);
        assert_eq!(decode_chunk(&bytes).unwrap(), large);
        let small = samples(20, "error");
        let (_, bytes) = encode_chunk(&small.iter().collect::<Vec<_>>()).unwrap();
        let (size, plain) = frame_alone(&bytes);
        assert!(size < PLAIN_FROM, "{size} bytes packed");
        assert!(plain.is_err(), "a small chunk needs the dictionary");
        assert_eq!(decode_chunk(&bytes).unwrap(), small);
    }

    /// The buffers a thread keeps between chunks carry nothing from one chunk into the next: a
    /// small chunk after a large one is exactly its own records, and is the bytes a thread that
    /// never encoded a chunk before makes of it. A chunk larger than the buffers keep is not
    /// kept, and the next one still comes out right.
    #[test]
    fn chunks_encoded_one_after_another_share_no_bytes() {
        let large = samples(CHUNK_MAX, "large");
        let small = samples(3, "small");
        let mut huge = samples(2, "huge");
        huge[0].error = Some("x".repeat(CHUNK_SCRATCH_KEPT + 1));
        let fresh_thread = |records: Vec<CallRecord>| {
            std::thread::spawn(move || encode_chunk(&records.iter().collect::<Vec<_>>()).unwrap().1)
                .join()
                .unwrap()
        };
        let small_alone = fresh_thread(small.clone());
        fn refs(v: &[CallRecord]) -> Vec<&CallRecord> {
            v.iter().collect()
        }
        let (_, l) = encode_chunk(&refs(&large)).unwrap();
        let (_, s1) = encode_chunk(&refs(&small)).unwrap();
        assert_eq!(decode_chunk(&l).unwrap(), large);
        assert_eq!(decode_chunk(&s1).unwrap(), small);
        assert_eq!(
            s1, small_alone,
            "a chunk depends on what the thread encoded before"
        );
        let (_, h) = encode_chunk(&refs(&huge)).unwrap();
        assert_eq!(decode_chunk(&h).unwrap(), huge);
        let (kept_packed, kept_frame) = CHUNK_SCRATCH.take();
        assert!(
            kept_packed.capacity() <= CHUNK_SCRATCH_KEPT
                && kept_frame.capacity() <= CHUNK_SCRATCH_KEPT,
            "a chunk too large to keep left its buffers with the thread"
        );
        CHUNK_SCRATCH.set((kept_packed, kept_frame));
        let (_, s2) = encode_chunk(&refs(&small)).unwrap();
        assert_eq!(s2, small_alone);
    }

    #[test]
    fn a_chunk_gives_just_the_records_asked_for() {
        let records: Vec<CallRecord> = (0..50)
            .map(|i| {
                let mut r = sample();
                r.id = CallId::new();
                r.arguments = json!({"i": i});
                r
            })
            .collect();
        let (_, bytes) = encode_chunk(&records.iter().collect::<Vec<_>>()).unwrap();
        // Positions 3 and 47 only; the mask may be shorter than the chunk.
        let mut wanted = vec![false; 48];
        wanted[3] = true;
        wanted[47] = true;
        let got = decode_chunk_some(&bytes, &wanted).unwrap();
        assert_eq!(got.len(), 50);
        for (i, r) in got.iter().enumerate() {
            match i {
                3 | 47 => assert_eq!(r.as_ref(), Some(&records[i])),
                _ => assert!(r.is_none(), "position {i} was built"),
            }
        }
        assert!(decode_chunk_some(&bytes[..bytes.len() - 3], &wanted).is_err());
    }

    #[test]
    fn keys_spell_the_id_and_its_time() {
        let id = crate::model::ids::new_id("call");
        let k = key(&id).unwrap();
        assert_eq!(CallId::from_bits(u128::from_be_bytes(k)), id);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(recorded_ms(&k).unwrap()) < 5_000);
        assert!(key("call_xyz").is_err());
        assert!(key("wh_0123").is_err());
        // Later ids sort after earlier ones, as keys.
        let later = key(&crate::model::ids::new_id("call")).unwrap();
        assert!(later > k);
    }
}
