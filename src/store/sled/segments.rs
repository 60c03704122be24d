//! The bodies of the call history's chunks, in append-only segment files beside the sled
//! database (`history/0000000000000001.seg`, …). sled keeps, per chunk, its header and where its
//! body is (a [`ChunkRef`]), so the count, the head and the index stay in one atomic sled batch.
//!
//! Kept in sled, the bodies made sled's own footprint grow with the history: its page cache, the
//! pages its segment cleaner pulled back from disk to rewrite them and the chunk values freed on
//! its I/O threads took about 16 MB more at a 1,000,000-record cap than at the start, whatever
//! the cache size (BENCHMARKS.md, issue 18, seventh session), and the gateway's RSS rose with
//! them. A segment file is written once, read through the OS page cache and deleted whole once
//! retention has passed every chunk in it, so the history costs the process no memory that grows
//! with it.
//!
//! Crash safety: a batch's bodies are appended and synced before the sled batch that refers to
//! them is applied, so a durable reference always finds its bytes; a crash in between leaves
//! bytes nothing refers to at a segment's end (skipped for ever, gone with the segment). A segment
//! is deleted only after the sled batch that removed its last chunk is durable, and whatever a
//! crash left undeleted is deleted when the store opens.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::store::StoreError;
use crate::store::history_codec as codec;

/// A segment is closed, and a new one started, once it holds this much. Retention deletes whole
/// segments, so the disk holds at most this much beyond what the records need.
pub(super) const SEGMENT_BYTES: u64 = 1024 * 1024;

/// Format byte of a chunk reference (an inline chunk's is `history_codec`'s 3).
const FORMAT_REF: u8 = 4;

/// A reference: the chunk's header bytes (format, count, last key), then segment, offset,
/// length, and the chunk's [`Summary`] (outcomes, sources, names).
const REF_LEN: usize = 1 + 2 + 16 + 8 + 8 + 4 + 1 + 1 + 8;

/// What a chunk's records are, in a few bytes kept with its reference: a filtered page skips a
/// chunk none of whose records can match without reading its body. Without it, `GET
/// /v1/calls?outcome=failed` on a history of 1,000,000 successes decompressed every chunk
/// (about 2 s); now it reads sled's index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Summary {
    /// Bit `outcome as u8` set for each outcome present.
    outcomes: u8,
    /// Bit `source as u8` set for each source present.
    sources: u8,
    /// A 64-bit Bloom filter of the tool names and webhook ids present (two bits each): a
    /// clear bit proves a name absent.
    names: u64,
}

/// The two Bloom bits of a name of kind `kind` (FNV-1a: stable across runs and builds).
fn name_bits(kind: u8, name: &str) -> u64 {
    let h = std::iter::once(kind)
        .chain(name.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    (1 << (h & 63)) | (1 << ((h >> 6) & 63))
}

const TOOL: u8 = b't';
const WEBHOOK: u8 = b'w';

/// The bit of an outcome or source in its byte; every bit for a variant past the eighth, so a
/// summary never rules out what it cannot tell.
fn bit(index: u8) -> u8 {
    1u8.checked_shl(u32::from(index)).unwrap_or(u8::MAX)
}

impl Summary {
    /// The summary of a chunk's records.
    pub fn of(records: &[&codec::PackedCall<'_>]) -> Summary {
        records.iter().fold(Summary::default(), |s, r| Summary {
            outcomes: s.outcomes | bit(r.outcome as u8),
            sources: s.sources | bit(r.source as u8),
            names: s.names
                | r.tool.map_or(0, |t| name_bits(TOOL, t))
                | name_bits(WEBHOOK, r.webhook_id),
        })
    }

    /// Whether some record of the chunk may pass `f` (false only when none can).
    pub fn may_match(&self, f: &crate::store::CallFilter) -> bool {
        use crate::store::OutcomeFilter;
        let has = |bits: u64| self.names & bits == bits;
        let outcome = match f.outcome {
            None => true,
            Some(OutcomeFilter::Failed) => {
                self.outcomes & !bit(crate::model::Outcome::Success as u8) != 0
            }
            Some(OutcomeFilter::Is(o)) => self.outcomes & bit(o as u8) != 0,
        };
        outcome
            && f.source.is_none_or(|s| self.sources & bit(s as u8) != 0)
            && f.tool.as_deref().is_none_or(|t| has(name_bits(TOOL, t)))
            && f.webhook_id
                .as_deref()
                .is_none_or(|w| has(name_bits(WEBHOOK, w)))
    }
}

/// Where a chunk's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChunkRef {
    /// The segment's number (its file name).
    pub segment: u64,
    /// Where the body starts in it.
    pub offset: u64,
    /// The body's length.
    pub len: u32,
}

impl ChunkRef {
    /// The sled value of a chunk whose whole encoding is `chunk`, stored at `self`: the chunk's
    /// header (so retention and lookups read count and last key from sled), the place, then
    /// what its records are.
    pub fn encode(&self, chunk: &[u8], summary: Summary) -> Result<Vec<u8>, StoreError> {
        // Checks that `chunk` is a chunk; the reference repeats its count and last key.
        codec::chunk_header(chunk)?;
        let mut v = Vec::with_capacity(REF_LEN);
        v.push(FORMAT_REF);
        v.extend_from_slice(&chunk[1..19]);
        v.extend_from_slice(&self.segment.to_be_bytes());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        v.push(summary.outcomes);
        v.push(summary.sources);
        v.extend_from_slice(&summary.names.to_be_bytes());
        Ok(v)
    }

    /// The summary a sled value holds; `None` for a chunk stored inline (it may hold anything).
    pub fn summary(value: &[u8]) -> Result<Option<Summary>, StoreError> {
        Ok(parse(value)?.map(|r| r.summary))
    }

    /// The place a sled value names, or `None` for a chunk stored inline (written before chunk
    /// bodies moved to segments).
    pub fn decode(value: &[u8]) -> Result<Option<ChunkRef>, StoreError> {
        Ok(parse(value)?.map(|r| r.at))
    }
}

/// A reference as stored: what `ChunkRef::encode` wrote.
struct Reference {
    header: codec::ChunkHeader,
    at: ChunkRef,
    summary: Summary,
}

/// Read a sled value as a reference, the one parser of that layout; `None` for a chunk stored
/// inline.
fn parse(value: &[u8]) -> Result<Option<Reference>, StoreError> {
    if value.first() != Some(&FORMAT_REF) {
        return Ok(None);
    }
    let bad = || StoreError::Corrupt("call history chunk reference".into());
    let fields: &[u8; REF_LEN - 1] = value
        .get(1..)
        .and_then(|rest| rest.try_into().ok())
        .ok_or_else(bad)?;
    let (count, rest) = fields.split_first_chunk::<2>().ok_or_else(bad)?;
    let (last, rest) = rest.split_first_chunk::<16>().ok_or_else(bad)?;
    let (segment, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
    let (offset, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let (masks, names) = rest.split_first_chunk::<2>().ok_or_else(bad)?;
    let names = names.first_chunk::<8>().ok_or_else(bad)?;
    Ok(Some(Reference {
        header: codec::ChunkHeader {
            count: u16::from_be_bytes(*count) as usize,
            last: *last,
        },
        at: ChunkRef {
            segment: u64::from_be_bytes(*segment),
            offset: u64::from_be_bytes(*offset),
            len: u32::from_be_bytes(*len),
        },
        summary: Summary {
            outcomes: masks[0],
            sources: masks[1],
            names: u64::from_be_bytes(*names),
        },
    }))
}

/// The header of a chunk from its sled value, inline or a reference.
pub(super) fn header(value: &[u8]) -> Result<codec::ChunkHeader, StoreError> {
    match parse(value)? {
        Some(r) => Ok(r.header),
        None => codec::chunk_header(value),
    }
}

/// The segment being appended to.
struct Active {
    number: u64,
    file: File,
    len: u64,
}

/// The segment files of one store. Appends are made by the one history writer at a time
/// (`SledStore::history_write`); reads open the file they need.
pub(super) struct Segments {
    dir: PathBuf,
    active: std::sync::Mutex<Option<Active>>,
    files: std::sync::Mutex<Files>,
}

/// What is on disk and what refers to it.
#[derive(Default)]
struct Files {
    /// Segment numbers on disk, the active one included.
    on_disk: std::collections::BTreeSet<u64>,
    /// How many chunks in sled refer to each segment. Counted, not inferred from the oldest
    /// chunk: chunks are in key (time) order and segments in write order, and a clock set back
    /// between two runs puts newer segments before older ones.
    references: std::collections::HashMap<u64, usize>,
}

fn name(number: u64) -> String {
    format!("{number:016x}.seg")
}

fn number_of(file_name: &str) -> Option<u64> {
    let hex = file_name.strip_suffix(".seg")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

impl Segments {
    /// The segments in `dir` (created when missing), none of them referred to yet: the store
    /// counts its references (`referenced`) before it asks what is `unused`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let on_disk = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok()?.file_name().to_str().and_then(number_of))
            .collect();
        Ok(Segments {
            dir: dir.to_path_buf(),
            active: std::sync::Mutex::new(None),
            files: std::sync::Mutex::new(Files {
                on_disk,
                references: Default::default(),
            }),
        })
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(name(number))
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        // Plain data: a panic elsewhere while it was held leaves it usable.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append the chunks' whole encodings and sync them; returns where each one went. A new
    /// segment is started first when the active one is full (or there is none yet: a segment
    /// left by an earlier run is never appended to, so bytes a crash left at its end stay
    /// unreferenced).
    pub fn append(&self, chunks: &[Vec<u8>]) -> Result<Vec<ChunkRef>, StoreError> {
        // Retention can trim a whole batch away (a cap smaller than the batch).
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.as_ref().is_none_or(|a| a.len >= SEGMENT_BYTES) {
            let mut files = self.files();
            let number = files.on_disk.last().map_or(1, |n| n + 1);
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.path(number))?;
            // The new file's name must be durable before anything refers to it.
            File::open(&self.dir)?.sync_all()?;
            files.on_disk.insert(number);
            *active = Some(Active {
                number,
                file,
                len: 0,
            });
        }
        let Some(a) = active.as_mut() else {
            return Err(StoreError::Corrupt("no history segment".into()));
        };
        let total: usize = chunks.iter().map(Vec::len).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut refs = Vec::with_capacity(chunks.len());
        for c in chunks {
            let len = u32::try_from(c.len())
                .map_err(|_| StoreError::Corrupt("a history chunk over 4 GiB".into()))?;
            refs.push(ChunkRef {
                segment: a.number,
                offset: a.len + bytes.len() as u64,
                len,
            });
            bytes.extend_from_slice(c);
        }
        if let Err(e) = a.file.write_all(&bytes).and_then(|()| a.file.sync_data()) {
            // Where a failed write left the file's end is unknown: the next batch starts a
            // new segment rather than trust `len`.
            a.len = SEGMENT_BYTES;
            return Err(e.into());
        }
        a.len += bytes.len() as u64;
        Ok(refs)
    }

    /// A chunk's whole encoding; `None` when its segment is gone (retention deleted it after
    /// the caller read the reference: the chunk is past retention).
    pub fn read(&self, at: ChunkRef) -> Result<Option<Vec<u8>>, StoreError> {
        let file = match File::open(self.path(at.segment)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0; at.len as usize];
        file.read_exact_at(&mut buf, at.offset)
            .map_err(|e| StoreError::Corrupt(format!("call history segment: {e}")))?;
        Ok(Some(buf))
    }

    /// Chunks in sled now refer to these segments (one entry per chunk).
    pub fn referenced(&self, segments: impl IntoIterator<Item = u64>) {
        let mut files = self.files();
        for s in segments {
            *files.references.entry(s).or_default() += 1;
        }
    }

    /// A chunk that referred to `segment` was removed from sled.
    pub fn released(&self, segment: u64) {
        let mut files = self.files();
        if let Some(n) = files.references.get_mut(&segment) {
            *n = n.saturating_sub(1);
        }
    }

    /// The segments on disk that no chunk refers to, but the active one. Take them under the
    /// store's history lock, and delete them only once the removals that freed them are durable.
    pub fn unused(&self) -> Vec<u64> {
        let active = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|a| a.number);
        let files = self.files();
        files
            .on_disk
            .iter()
            .copied()
            .filter(|n| Some(*n) != active && files.references.get(n).is_none_or(|r| *r == 0))
            .collect()
    }

    /// Delete these segments (from `unused`).
    pub fn delete(&self, numbers: &[u64]) -> Result<(), StoreError> {
        for &n in numbers {
            match std::fs::remove_file(self.path(n)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            let mut files = self.files();
            files.on_disk.remove(&n);
            files.references.remove(&n);
        }
        Ok(())
    }

    /// How many segment files there are.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.files().on_disk.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u16, fill: u8, len: usize) -> Vec<u8> {
        let mut c = vec![codec::FORMAT_CHUNK];
        c.extend_from_slice(&n.to_be_bytes());
        c.extend_from_slice(&[fill; 16]);
        c.resize(len.max(codec::HEADER), fill);
        c
    }

    #[test]
    fn a_reference_keeps_the_header_and_finds_the_bytes() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Segments::open(dir.path()).expect("open");
        let chunks = vec![chunk(3, 7, 100), chunk(5, 9, 300)];
        let refs = s.append(&chunks).expect("append");
        for (c, r) in chunks.iter().zip(&refs) {
            let v = r.encode(c, Summary::default()).expect("encode");
            assert_eq!(v.len(), REF_LEN);
            assert_eq!(ChunkRef::decode(&v).expect("decode"), Some(*r));
            let (h, inline) = (header(&v).expect("ref header"), header(c).expect("header"));
            assert_eq!((h.count, h.last), (inline.count, inline.last));
            assert_eq!(s.read(*r).expect("read").as_deref(), Some(c.as_slice()));
        }
        // An inline chunk is not a reference.
        assert_eq!(ChunkRef::decode(&chunks[0]).expect("inline"), None);
        // A cut reference is refused, never read past.
        let v = refs[0].encode(&chunks[0], Summary::default()).expect("v");
        assert!(ChunkRef::decode(&v[..20]).is_err());
        assert!(ChunkRef::decode(&v[..REF_LEN - 1]).is_err());
        assert!(ChunkRef::summary(&v[..REF_LEN - 1]).is_err());
        assert_eq!(ChunkRef::summary(&chunks[0]).expect("inline"), None);
    }

    fn packed(tool: &str, webhook: &str, outcome: &str, source: &str) -> codec::PackedBatch {
        let r: crate::model::CallRecord = serde_json::from_value(serde_json::json!({
            "id": crate::model::ids::new_id("call"), "tool": tool, "webhook_id": webhook,
            "source": source, "started_at": "2026-01-01T00:00:00Z", "duration_ms": 1,
            "outcome": outcome, "error": null, "arguments": {}, "request": null, "response": null
        }))
        .expect("record");
        codec::PackedBatch::of(&[&r]).expect("pack")
    }

    #[test]
    fn a_summary_rules_out_only_chunks_with_no_possible_match() {
        use crate::model::{Outcome, Source};
        use crate::store::{CallFilter, OutcomeFilter};
        let (a, b) = (
            packed("lookup_order", "wh_1", "success", "invoke"),
            packed("book_slot", "wh_2", "timeout", "chat"),
        );
        let (a, b) = (a.records()[0], b.records()[0]);
        let both = Summary::of(&[&a, &b]);
        let ok_only = Summary::of(&[&a]);
        let f = |outcome, source, tool: Option<&str>, webhook: Option<&str>| CallFilter {
            outcome,
            source,
            tool: tool.map(str::to_string),
            webhook_id: webhook.map(str::to_string),
            limit: 50,
            before: None,
        };
        // Stored and read back.
        let dir = tempfile::tempdir().expect("tmp");
        let s = Segments::open(dir.path()).expect("open");
        let c = chunk(2, 1, 40);
        let at = s.append(std::slice::from_ref(&c)).expect("append")[0];
        let v = at.encode(&c, both).expect("encode");
        assert_eq!(ChunkRef::summary(&v).expect("summary"), Some(both));
        let failed = Some(OutcomeFilter::Failed);
        assert!(both.may_match(&f(None, None, None, None)));
        assert!(both.may_match(&f(failed, None, None, None)));
        assert!(!ok_only.may_match(&f(failed, None, None, None)));
        assert!(ok_only.may_match(&f(
            Some(OutcomeFilter::Is(Outcome::Success)),
            None,
            None,
            None
        )));
        assert!(!ok_only.may_match(&f(
            Some(OutcomeFilter::Is(Outcome::Timeout)),
            None,
            None,
            None
        )));
        assert!(both.may_match(&f(None, Some(Source::Chat), None, None)));
        assert!(!ok_only.may_match(&f(None, Some(Source::Chat), None, None)));
        assert!(both.may_match(&f(None, None, Some("book_slot"), Some("wh_2"))));
        assert!(ok_only.may_match(&f(None, None, Some("lookup_order"), Some("wh_1"))));
        // A name that is not there: some clear bit rules it out (these two were checked to
        // share no bits with the chunk's names; a Bloom filter only ever errs the other way).
        assert!(!ok_only.may_match(&f(None, None, Some("book_slot"), None)));
        assert!(!ok_only.may_match(&f(None, None, None, Some("wh_2"))));
        // A tool name is not a webhook id.
        assert_ne!(name_bits(TOOL, "x"), name_bits(WEBHOOK, "x"));
        // Every outcome and source has a bit of its own today; one past the eighth would match
        // everything rather than be skipped.
        assert_eq!(bit(Outcome::Forbidden as u8), 0x80);
        assert_eq!(bit(Source::Mcp as u8), 0x08);
        assert_eq!(bit(8), u8::MAX);
    }

    #[test]
    fn segments_roll_over_and_go_once_nothing_refers_to_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Segments::open(dir.path()).expect("open");
        let big = (SEGMENT_BYTES / 2 + 1) as usize;
        let mut refs = Vec::new();
        for i in 0..5u8 {
            let r = s.append(&[chunk(1, i, big)]).expect("append");
            s.referenced(r.iter().map(|r| r.segment));
            refs.extend(r);
        }
        // Two chunks fill a segment past its size: segments 1, 1, 2, 2, 3.
        let segs: Vec<u64> = refs.iter().map(|r| r.segment).collect();
        assert_eq!(segs, [1, 1, 2, 2, 3]);
        assert_eq!(s.count(), 3);
        assert!(s.unused().is_empty());
        // One chunk of segment 1 and both of segment 2 go: only segment 2 is unused, though
        // segment 1 is older (a chunk with a later key still refers to it).
        for r in &refs[1..4] {
            s.released(r.segment);
        }
        assert_eq!(s.unused(), [2]);
        s.delete(&s.unused()).expect("delete");
        assert_eq!(s.count(), 2);
        assert_eq!(
            s.read(refs[2]).expect("read"),
            None,
            "a deleted segment reads as gone"
        );
        assert!(s.read(refs[0]).expect("read").is_some());
        // The last of segment 1 goes; the active segment stays even with nothing in it.
        s.released(1);
        s.released(3);
        assert_eq!(s.unused(), [1]);
        s.delete(&[1]).expect("delete");
        assert_eq!(s.count(), 1);
        assert!(s.read(refs[4]).expect("read").is_some());
        drop(s);
        // Reopened: nothing refers to anything until the store counts; the old active segment
        // is not appended to (a crash may have left bytes nobody refers to at its end), the
        // next write starts segment 4, and the new active one is never unused.
        let s = Segments::open(dir.path()).expect("reopen");
        assert_eq!(s.unused(), [3]);
        let r = s.append(&[chunk(1, 9, 50)]).expect("append");
        assert_eq!((r[0].segment, r[0].offset), (4, 0));
        assert_eq!(s.unused(), [3]);
        // Files that are not segments are left alone.
        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        s.delete(&s.unused()).expect("delete");
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(s.count(), 1);
    }
}
