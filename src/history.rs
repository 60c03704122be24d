//! Call history: the recorder that takes writes off the call
//! path (bounded queue with back-pressure, batched writer, drained on shutdown).

use std::sync::Arc;

use tokio::sync::{Notify, oneshot};

use crate::model::{CallId, CallRecord};
use crate::store::Store;
use crate::store::history_codec::{Encoded, PackedBatch};

pub use crate::redact::{REDACTED, Redactor};

/// Sends call records to a background writer that stores them in batches.
///
/// A call only pushes its record onto a shared queue: the writer is woken when it fills a
/// batch, for a reader's sync or shutdown, and by the first record after it parked, not once per
/// call. On two cores a wake-up per call (a futex and a thread switch) cost more than the record
/// itself. It parks only after a whole short linger without records: right after a batch it
/// waits on a timer, so under steady traffic no call pays for waking it.
///
/// The writer is a thread of its own at the serving threads' priority. It ran at nice +10 for a
/// while, so that a request arriving during a batch would not wait for it; that did not shorten
/// the 1-connection tail (the scheduler lets a running thread finish its slice), and once a call
/// cost half as much the writer needed about a tenth of a core at 32 connections and got less:
/// its queue filled and calls waited for room (req/s −9 %, p99 5–9 ms against 3 ms at nice 0).
pub struct Recorder {
    shared: Arc<Shared>,
}

struct Shared {
    queue: std::sync::Mutex<Queue>,
    /// Wakes the writer.
    wake: std::sync::Condvar,
    /// Wakes callers waiting for room in a full queue.
    room: Notify,
    /// Most records waiting to be written.
    capacity: usize,
    /// How long a batch that will not fill within `LINGER` waits (`fills_within_linger`).
    short_linger: std::time::Duration,
}

#[derive(Default)]
struct Queue {
    records: PackedBatch,
    /// Readers waiting for everything queued before them to be stored.
    waiters: Vec<oneshot::Sender<()>>,
    closing: Option<oneshot::Sender<()>>,
    closed: bool,
    /// The writer waits for records with no timer: the first record queued must wake it.
    parked: bool,
    /// Every `Recorder` handle is gone without a close (a test's gateway dropped): the writer
    /// ends without writing, as its runtime may be gone too.
    abandoned: bool,
}

impl Queue {
    /// Whether the writer should write now rather than linger for more records: a batch is
    /// `full` records, or someone waits.
    fn urgent(&self, full: usize) -> bool {
        self.records.len() >= full || !self.waiters.is_empty() || self.closing.is_some()
    }

    fn idle(&self) -> bool {
        self.records.is_empty()
            && self.waiters.is_empty()
            && self.closing.is_none()
            && !self.abandoned
    }
}

/// What `Recorder::try_push` did with a record.
enum Pushed {
    /// Queued under this id.
    Queued(CallId),
    /// No room: wait for the writer to take the queue.
    Full,
    /// The writer has stopped.
    Closed,
}

/// A record the stopped writer will never store.
fn stopped() -> CallId {
    tracing::error!("call history writer has stopped; record lost");
    CallId::new()
}

/// Bytes a batch's buffers keep between batches: twice what a full batch (`BATCH`) of small
/// records needs. A batch is seldom exactly full (records arrive while the writer wakes), and one
/// record past a power of two doubles every buffer: at 1 MB, a batch of 1,025 of the benchmark's
/// records held 1.06 MB, let it go, and the serving threads grew new buffers into fresh pages
/// (0.25 page faults per call against 0.08 at 2 MB, 80 % of them in `Vec` growth). A larger
/// batch (the queue filled while the writer waited on the disk, or large records) lets its
/// buffers go once written. At 16 MB, the two batches the recorder and the writer swap kept the
/// capacity of the largest batch either had seen, and that high-water mark rose whenever a
/// longer stall came: sled's soaks crept by about 0.12 MB a minute, mostly this (a heap profile
/// by allocation site over 3 and 9 minutes, BENCHMARKS.md, issue 18, thirteenth session).
const RETAINED_BYTES: usize = 2 << 20;

/// Bytes a thread's encoding buffer keeps between records (one large record must not pin its
/// size on every serving thread).
const SCRATCH_KEPT: usize = 64 << 10;

/// Most records written in one batch. Each batch has a fixed cost: the segment's fsync, sled's
/// flush, and the thread wake-ups both bring. At 256, a gateway at 24,000 calls a second wrote 93
/// batches a second; its writer used 1.1–2.0 µs of CPU per call and sled's I/O threads 0.4–0.6 µs
/// more. At 1,024 it wrote 23 a second, and they used 0.7–1.0 µs and under 0.15 µs
/// (BENCHMARKS.md, issue 16, fifteenth session). A lightly loaded gateway writes after `LINGER`,
/// long before a batch fills, so this changes nothing there.
const BATCH: usize = 1024;

/// Longest a record waits for companions before its batch is written (and flushed). Each flush
/// woke sled's seven I/O threads and a blocking-pool thread, some twenty thread switches on two
/// cores (about five since `vendor/sled` wakes one I/O thread per task; since the eighteenth
/// session the writer flushes on its own thread, where sled also writes the log buffer the
/// flush seals): at 10 ms, a lightly loaded gateway (one connection, 7,000 calls a second)
/// flushed 100 times a second and its history added 0.35 thread switches to every call. A full
/// batch comes sooner under load, and a history read cuts the wait short, so this bounds only
/// what a `kill -9` can lose.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether a batch holding `records` after the short linger `short` is coming in fast enough to
/// fill to `full` within `LINGER`, and so should keep lingering.
///
/// The short linger (`--history-linger-ms`) is when a batch that would not fill within `LINGER`
/// is written anyway. The default is `LINGER` itself: every batch waits the whole linger unless
/// it fills. Each batch has a fixed cost (a segment `fdatasync`, two sled log writes, the
/// writer's wake-ups), and on a machine where system calls and disk waits are dear that cost, not
/// the records, made the bursts that delayed calls: at one connection (7,000 calls a second, an
/// AMD host with the Zen mitigations on) a 10 ms short linger wrote 100 batches a second at
/// 4.1–7.3 µs of writer CPU a call and a p99 of 776–15,790 µs (median about 950); 50 ms wrote 20,
/// at 1.4–2.0 µs a call and a p99 of 454–918 µs (median about 515), against 227–529 µs without
/// history (BENCHMARKS.md, issue 16, nineteenth session). On Intel machines where system calls
/// are cheap, the writer's per-record work dominated instead and 10 ms gave the lower p99
/// (sixteenth and eighteenth sessions): set `--history-linger-ms 10` there.
fn fills_within_linger(records: usize, full: usize, short: std::time::Duration) -> bool {
    let ratio = (LINGER.as_micros() / short.as_micros().max(1)).max(1);
    let ratio = usize::try_from(ratio).unwrap_or(usize::MAX);
    records.saturating_mul(ratio) >= full
}

impl Shared {
    /// Records that make a batch worth writing without lingering.
    fn full(&self) -> usize {
        BATCH.min(self.capacity)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue holds plain data: a panic elsewhere while it was held leaves it usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer's loop: wait for records, linger for companions, write, repeat until closed.
    fn write_until_closed(
        &self,
        store: &dyn Store,
        runtime: &tokio::runtime::Handle,
        max_records: usize,
        max_age_secs: u64,
    ) {
        // The batch being written: swapped with the queue's, so the two buffers are reused
        // batch after batch and no record is freed away from where it was made.
        let mut batch = PackedBatch::default();
        let mut wrote = false;
        let mut q = self.lock();
        loop {
            // When the batch's linger began: the end of the previous batch if records came
            // while the writer waited on its timer, else when the writer found them.
            let mut since = None;
            while q.idle() {
                if std::mem::take(&mut wrote) {
                    // Right after a batch, records usually keep coming: wait for them on a
                    // timer, so that the call queuing the next batch's first record need not
                    // wake this thread (a futex wake-up and an interrupt to another CPU, in that
                    // call's path). The linger counts from here: one wake-up a batch.
                    since = Some(std::time::Instant::now());
                    q = self
                        .wake
                        .wait_timeout(q, self.short_linger)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                } else {
                    // A whole short linger passed without a record: sleep until one comes.
                    since = None;
                    q.parked = true;
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                    q.parked = false;
                }
            }
            if q.abandoned {
                return;
            }
            // Linger briefly so a busy gateway writes (and fsyncs) a few large batches instead
            // of one per call; a full batch, a reader's sync or shutdown cuts the wait short,
            // and a batch too slow to fill is written after the short linger.
            let start = since.unwrap_or_else(std::time::Instant::now);
            let mut until = start + self.short_linger;
            let mut short = true;
            while !q.urgent(self.full()) {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    if short && fills_within_linger(q.records.len(), self.full(), self.short_linger)
                    {
                        short = false;
                        until = start + LINGER;
                        continue;
                    }
                    break;
                }
                q = self
                    .wake
                    .wait_timeout(q, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if q.closing.is_some() {
                q.closed = true;
            }
            std::mem::swap(&mut batch, &mut q.records);
            let waiters = std::mem::take(&mut q.waiters);
            let closing = q.closing.take();
            drop(q);
            self.room.notify_waiters();
            if !batch.is_empty() {
                let started = std::time::Instant::now();
                let records = batch.records();
                match runtime.block_on(store.insert_packed(&records, max_records, max_age_secs)) {
                    Ok(()) => tracing::debug!(
                        records = batch.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "call history batch written"
                    ),
                    Err(e) => tracing::error!(
                        error = %e, records = batch.len(), "could not write call history"
                    ),
                }
            }
            batch.clear_keeping(RETAINED_BYTES);
            crate::allocator::return_what_is_due();
            for w in waiters {
                let _ = w.send(());
            }
            if let Some(w) = closing {
                let _ = w.send(());
                return;
            }
            wrote = true;
            q = self.lock();
        }
    }
}

impl Recorder {
    /// Start the writer. `queue` bounds records waiting to be written; a full queue makes callers
    /// wait. `short_linger` is how long a batch that will not fill within `LINGER` waits (clamped
    /// to 1 ms..=`LINGER`). Must be called within a Tokio runtime, which the writer uses for the
    /// store.
    pub fn start(
        store: Arc<dyn Store>,
        queue: usize,
        max_records: usize,
        max_age_secs: u64,
        short_linger: std::time::Duration,
    ) -> std::io::Result<Recorder> {
        let shared = Arc::new(Shared {
            queue: Default::default(),
            wake: std::sync::Condvar::new(),
            room: Notify::new(),
            capacity: queue.max(1),
            short_linger: short_linger.clamp(std::time::Duration::from_millis(1), LINGER),
        });
        let writer = shared.clone();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("toolgate-history".into())
            .spawn(move || {
                // This thread only waits on the store: its flushes need no blocking-pool thread.
                crate::store::group_commit::flush_inline_on_this_thread();
                writer.write_until_closed(store.as_ref(), &runtime, max_records, max_age_secs);
            })?;
        Ok(Recorder { shared })
    }

    /// Queue a record under a fresh call id, which it returns (the record's own id is replaced);
    /// waits while the queue is full (back-pressure, never dropping). The record is encoded on
    /// the caller's thread, into a buffer that thread reuses, and only copied into the queue.
    /// `json_body`, when given, is the response body as compact JSON text, stored in place of the
    /// record's (left `Null`; see `PackedBatch::encode`).
    pub async fn record(&self, r: &CallRecord, json_body: Option<&str>) -> CallId {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // With room in the queue, nothing is allocated for the record. Without (the PostgreSQL
        // writer keeps its queue full much of the time), its bytes are put aside to wait with
        // the call, not encoded a second time.
        let mut owned = Vec::new();
        let first = SCRATCH.with(|cell| {
            let mut scratch = cell.try_borrow_mut().ok()?;
            let pushed = PackedBatch::encode(r, json_body, &mut scratch).map(|e| {
                let pushed = self.try_push(&e, None);
                if matches!(pushed, Pushed::Full) {
                    e.keep(&mut owned);
                }
                pushed
            });
            if scratch.capacity() > SCRATCH_KEPT {
                *scratch = Vec::new();
            }
            Some(pushed)
        });
        let encoded = match first {
            Some(Ok(Pushed::Queued(id))) => return id,
            Some(Ok(Pushed::Closed)) => return stopped(),
            Some(Ok(Pushed::Full)) => Ok(Encoded::kept(r, &owned)),
            // This thread's scratch is in use (never expected): a buffer of the call's own.
            None => PackedBatch::encode(r, json_body, &mut owned),
            Some(Err(e)) => Err(e),
        };
        let e = match encoded {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "could not pack a call history record; record lost");
                return CallId::new();
            }
        };
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            match self.try_push(&e, Some(room.as_mut())) {
                Pushed::Queued(id) => return id,
                Pushed::Closed => return stopped(),
                Pushed::Full => room.await,
            }
        }
    }

    /// Queue `e` if there is room. When the queue is full, `room` (if given) is registered
    /// before the lock is released, so the writer's `notify_waiters` after taking the queue
    /// cannot be missed.
    fn try_push(
        &self,
        e: &Encoded<'_>,
        room: Option<std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>>,
    ) -> Pushed {
        let mut q = self.shared.lock();
        if q.closed || q.closing.is_some() {
            return Pushed::Closed;
        }
        if q.records.len() >= self.shared.capacity {
            if let Some(room) = room {
                room.enable();
            }
            return Pushed::Full;
        }
        // The id is taken here, under the queue's lock: ids (UUIDv7, ordered within the
        // process) then grow in the order records reach the store, so no write batch holds an
        // id older than one already stored. Taken when the call started, a slow call's id was
        // older than those of calls that began after it but ended first and were stored in an
        // earlier batch; the sled history's chunks then overlapped, and lookups by id and pages
        // missed records.
        let bits = uuid::Uuid::now_v7().as_u128();
        q.records.push(e, bits);
        let wake = (q.records.len() == 1 && q.parked) || q.records.len() == self.shared.full();
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
        Pushed::Queued(CallId::from_bits(bits))
    }

    /// Wait until every record queued before this call is stored.
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.lock();
            if q.closed {
                return;
            }
            q.waiters.push(tx);
        }
        self.shared.wake.notify_one();
        let _ = rx.await;
    }

    /// Write everything queued and stop the writer.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.lock();
            if q.closed || q.closing.is_some() {
                return;
            }
            q.closing = Some(tx);
        }
        self.shared.wake.notify_one();
        let _ = rx.await;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shared.lock().abandoned = true;
        self.shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallFilter, HistoryStore, SledStore};

    #[test]
    fn only_a_batch_that_fills_within_the_linger_keeps_lingering() {
        // 10 ms of a 50 ms linger: a fifth of a batch by then fills it in time.
        let ten = std::time::Duration::from_millis(10);
        assert!(fills_within_linger(205, 1024, ten));
        assert!(fills_within_linger(1024, 1024, ten));
        assert!(!fills_within_linger(204, 1024, ten));
        assert!(!fills_within_linger(100, 1024, ten));
        assert!(!fills_within_linger(0, 1024, ten));
        assert!(fills_within_linger(1, 5, ten));
        assert!(fills_within_linger(usize::MAX, 1024, ten));
        // The default short linger is the whole linger: only a full batch is "filling".
        assert!(!fills_within_linger(1023, 1024, LINGER));
        assert!(fills_within_linger(1024, 1024, LINGER));
        // A zero short linger (never configured so: `start` clamps it) divides by nothing.
        assert!(fills_within_linger(1, 1024, std::time::Duration::ZERO));
    }

    /// The writer waits on a timer right after a batch, so the calls queuing the next batch do
    /// not wake it; a record queued then is still stored within the linger, with nobody syncing,
    /// and so is one queued after the writer parked (a whole short linger without records), which
    /// wakes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_after_a_batch_are_written_without_waking_the_writer() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(SledStore::open(dir.path(), &[7; 32]).expect("open"));
        let short = std::time::Duration::from_millis(10);
        let recorder = Recorder::start(store.clone(), 10_000, 0, 0, short).expect("writer");
        let parked = || recorder.shared.lock().parked;
        recorder.record(&record(0), None).await;
        recorder.sync().await;
        // Right after the batch the writer is on its timer (unless this thread was held up for
        // a whole short linger): the record is written without waking it.
        recorder.record(&record(1), None).await;
        written_within_5_s(&store, 2, "a record queued after a batch").await;
        // A short linger without records: the writer parks, and the next record wakes it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !parked() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never parked"
            );
            tokio::time::sleep(short).await;
        }
        recorder.record(&record(2), None).await;
        written_within_5_s(&store, 3, "a record queued while the writer parked").await;
        recorder.close().await;
    }

    fn record(i: usize) -> CallRecord {
        serde_json::from_value(serde_json::json!({
            "id": crate::model::ids::new_id("call"), "tool": format!("t{i}"), "webhook_id": "wh_x",
            "source": "invoke", "started_at": "2026-01-01T00:00:00Z", "duration_ms": 1,
            "outcome": "success", "error": null, "arguments": {}, "request": null, "response": null
        }))
        .expect("record")
    }

    async fn count(store: &SledStore) -> usize {
        let filter = CallFilter {
            limit: 10_000,
            ..Default::default()
        };
        store.list_calls(&filter).await.expect("list").len()
    }

    /// Wait until `store` holds `n` records, with nobody syncing; fail after 5 s, naming `what`.
    async fn written_within_5_s(store: &SledStore, n: usize, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while count(store).await < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} was never written"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Many callers against a queue of 4: every record is written (callers wait for room, none
    /// is dropped), a sync sees all of them, and records after close are refused, not hung on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_record_is_written_under_back_pressure() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(SledStore::open(dir.path(), &[7; 32]).expect("open"));
        let recorder = Arc::new(Recorder::start(store.clone(), 4, 0, 0, LINGER).expect("writer"));
        let mut tasks = Vec::new();
        for t in 0..20 {
            let recorder = recorder.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    recorder.record(&record(t * 50 + i), None).await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        recorder.sync().await;
        assert_eq!(count(&store).await, 1000);
        // A lone record is written after the linger even with nobody syncing.
        recorder.record(&record(1000), None).await;
        written_within_5_s(&store, 1001, "a lone record").await;
        recorder.record(&record(1001), None).await;
        recorder.close().await;
        assert_eq!(count(&store).await, 1002, "close writes what is queued");
        recorder.record(&record(1002), None).await;
        recorder.sync().await;
        recorder.close().await;
        assert_eq!(count(&store).await, 1002);
    }
}
