//! Call history: the recorder that takes writes off the call
//! path (bounded queue with back-pressure, batched writer, drained on shutdown).

mod idle;
mod stats;
#[cfg(test)]
mod tests;
mod writer;

use std::sync::Arc;

use tokio::sync::{Notify, oneshot};

use crate::model::{CallId, CallRecord};
use crate::store::Store;
use crate::store::history_codec::{Encoded, PackedBatch};
use writer::Role;

pub use crate::redact::{REDACTED, Redactor};
pub use stats::HistoryStats;

/// Sends call records to a background writer that stores them in batches.
///
/// A call only pushes its record onto a shared queue: the writer is woken when it fills a
/// batch, for a reader's sync or shutdown, and by the first record after it parked, not once per
/// call. On two cores a wake-up per call (a futex and a thread switch) cost more than the record
/// itself. It parks only after a whole short linger without records: right after a batch it
/// waits on a timer, so under steady traffic no call pays for waking it.
///
/// The writer is a thread of its own in the idle scheduling class (`idle`), so that its batches
/// fill the gaps between other threads' turns instead of delaying them. A lower nice value does
/// not do that: at nice +10 (and later +19) the kernel still let the writer finish its batch
/// ahead of a waking caller, and at 32 connections a reniced writer got too little CPU, so its
/// queue filled and calls waited for room (req/s −9 %). So that an idle-class writer on a host
/// whose CPUs stay busy cannot hold calls back either, a second thread at the serving threads'
/// priority, the guard, writes in its place whenever queued work waits a whole `writer::WATCH`
/// without the writer taking any, or half the queue waits, until pings show the writer gets the
/// CPU again (`writer::Shared::guard_until_closed`). Before that, a writer still not running
/// `writer::KICK_AFTER` past its timer (or that far into a batch) is moved to another CPU
/// (`idle::move_off_its_cpu`), and a writer that gets to a batch `writer::LATE` hands it over.
pub struct Recorder {
    shared: Arc<Shared>,
    /// One per history thread, sent when it has ended and let go of the store: `close`
    /// returns only then, so a gateway that has stopped holds its data dir no more.
    ended: std::sync::Mutex<Vec<oneshot::Receiver<()>>>,
}

struct Shared {
    queue: std::sync::Mutex<Queue>,
    /// Wakes the writer.
    wake: std::sync::Condvar,
    /// Wakes the guard.
    guard_wake: std::sync::Condvar,
    /// Held by whichever thread takes a batch from the queue until the batch is stored, so
    /// batches reach the store in the order they were taken.
    turn: std::sync::Mutex<()>,
    /// Wakes callers waiting for room in a full queue.
    room: Notify,
    /// Most records waiting to be written.
    capacity: usize,
    /// How long a batch that will not fill within `LINGER` waits (`fills_within_linger`).
    short_linger: std::time::Duration,
    /// The writer's kernel thread id, once it runs (0 before, or where threads cannot be
    /// moved): the guard moves it off a CPU it cannot get (`idle::move_off_its_cpu`).
    writer_tid: std::sync::atomic::AtomicI32,
    /// The writer runs in the idle class (`idle::run_only_when_idle`).
    idle_writer: bool,
    /// The idle-class writer was put in the normal class (`idle::run_normally`) by the guard,
    /// finding it late with a batch, or by a call, finding the queue's lock held long
    /// (`lock_for_call`); it returns to the idle class after its next batch
    /// (`writer::settle_writer`).
    boosted: std::sync::atomic::AtomicBool,
    /// What has been written, and how long calls waited for room.
    written: stats::Written,
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
    /// The guard sleeps until a record comes (so does the writer).
    guard_parked: bool,
    /// Batches taken from the queue so far: the guard watches it move.
    taken: u64,
    /// The guard writes every batch until then (the writer stopped getting the CPU).
    guard_until: Option<std::time::Instant>,
    /// How often the guard has stepped in.
    take_overs: u64,
    /// When the guard, writing, asked the writer to show it gets the CPU; taken by the writer.
    ping: Option<std::time::Instant>,
    /// How long the writer took to answer the last ping.
    pong: Option<std::time::Duration>,
    /// When the writer means to take the queued records at the latest (the end of the timer it
    /// waits on, or a linger after a record woke it), or when it took the batch it is writing.
    /// Past it (and `writer::KICK_AFTER` more) with records still queued, the writer is waiting
    /// for a CPU, unless it waits for the disk.
    due: Option<std::time::Instant>,
    /// `taken` when the guard last moved the writer to another CPU: once per batch.
    moved_at: Option<u64>,
    /// How often the guard has moved the writer to another CPU.
    moves: u64,
    /// The writer found itself too late to write at idle priority (`writer::LATE`) and left
    /// the writing to the guard, which takes over as if it had stepped in itself.
    handed_over: bool,
    /// How often the writer has handed the writing over.
    hand_overs: u64,
    /// How often the writer was put in the normal class for a batch (`Shared::boosted`).
    boosts: u64,
    /// Calls that found the queue full (each counted once, however long it waited).
    room_waits: u64,
    /// A test holds the writer back (`writer::Queue::writer_held`).
    #[cfg(test)]
    hold_writer: bool,
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

impl Shared {
    /// Wake the writer and the guard (a reader's sync, a close): whichever has the turn acts.
    fn ring_both(&self) {
        self.wake.notify_one();
        self.guard_wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue holds plain data: a panic elsewhere while it was held leaves it usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queue, for a call. Calls, the guard and the writer hold it for a few hundred
    /// nanoseconds at a time; held for longer, it is held by the idle-class writer, preempted
    /// while holding it and then getting 3 parts in 1,027 of a CPU that normal threads keep
    /// busy: at 32 connections every call waited behind it, up to 0.4 s (BENCHMARKS.md,
    /// issue 16, twenty-seventh session). Its guard cannot help (it waits for the lock too), so
    /// the call that finds it held puts the writer in the normal class (`boost_writer`), which
    /// lets it finish and let go within its share of a CPU.
    fn lock_for_call(&self) -> std::sync::MutexGuard<'_, Queue> {
        for _ in 0..LOCK_SPINS {
            match self.queue.try_lock() {
                Ok(q) => return q,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
            }
        }
        let boosted = self.boost_writer();
        let mut q = self.lock();
        if boosted {
            q.boosts += 1;
        }
        q
    }

    /// Put the idle-class writer in the normal class until it has stored its next batch or
    /// finds nothing to write (`writer::settle_writer`). Whether it was put there now.
    fn boost_writer(&self) -> bool {
        use std::sync::atomic::Ordering;
        let tid = self.writer_tid.load(Ordering::Relaxed);
        // Marked first, so that a writer finishing in between still returns to the idle class
        // after its next batch; once marked, later callers leave it be.
        if !self.idle_writer || tid == 0 || self.boosted.swap(true, Ordering::SeqCst) {
            return false;
        }
        idle::run_normally(tid)
    }
}

/// Tries at the queue's lock before a call takes it as held by a starved writer: its longest
/// holds by others (a record's bytes appended) take well under a microsecond.
const LOCK_SPINS: u32 = 200;

impl Recorder {
    /// Start the writer. `queue` bounds records waiting to be written; a full queue makes callers
    /// wait. `short_linger` is how long a batch that will not fill within `LINGER` waits (clamped
    /// to 1 ms..=`LINGER`). `idle_writer` puts the writer in the idle scheduling class (`idle`;
    /// its guard covers for it either way). Must be called within a Tokio runtime, which the
    /// writer uses for the store.
    pub fn start(
        store: Arc<dyn Store>,
        queue: usize,
        max_records: usize,
        max_age_secs: u64,
        short_linger: std::time::Duration,
        idle_writer: bool,
    ) -> std::io::Result<Recorder> {
        let shared = Arc::new(Shared {
            queue: Default::default(),
            wake: std::sync::Condvar::new(),
            guard_wake: std::sync::Condvar::new(),
            turn: std::sync::Mutex::new(()),
            room: Notify::new(),
            capacity: queue.max(1),
            short_linger: short_linger.clamp(std::time::Duration::from_millis(1), LINGER),
            writer_tid: std::sync::atomic::AtomicI32::new(0),
            idle_writer,
            boosted: std::sync::atomic::AtomicBool::new(false),
            written: stats::Written::default(),
        });
        let runtime = tokio::runtime::Handle::current();
        let threads = [
            ("toolgate-history", Role::Writer),
            ("toolgate-hist-guard", Role::Guard),
        ];
        let mut ended = Vec::with_capacity(threads.len());
        for (name, role) in threads {
            let (shared_here, store, runtime) = (shared.clone(), store.clone(), runtime.clone());
            let (ends, end) = oneshot::channel();
            ended.push(end);
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    // These threads only wait on the store: their flushes need no blocking-pool
                    // thread.
                    crate::store::group_commit::flush_inline_on_this_thread();
                    let io = writer::Io {
                        store: store.as_ref(),
                        runtime: &runtime,
                        max_records,
                        max_age_secs,
                    };
                    match role {
                        Role::Writer => {
                            shared_here.writer_tid.store(
                                idle::this_thread_id(),
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            if idle_writer {
                                idle::run_only_when_idle();
                            }
                            shared_here.write_until_closed(&io);
                        }
                        Role::Guard => shared_here.guard_until_closed(&io),
                    }
                    drop(store);
                    let _ = ends.send(());
                });
            if let Err(e) = spawned {
                // The writer, if it started, ends without writing.
                shared.lock().abandoned = true;
                shared.end();
                return Err(e);
            }
        }
        Ok(Recorder {
            shared,
            ended: std::sync::Mutex::new(ended),
        })
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
        let waiting = std::time::Instant::now();
        let pushed = loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            match self.try_push(&e, Some(room.as_mut())) {
                Pushed::Queued(id) => break id,
                Pushed::Closed => break stopped(),
                Pushed::Full => room.await,
            }
        };
        let waited = u64::try_from(waiting.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared
            .written
            .waited_us
            .fetch_add(waited, std::sync::atomic::Ordering::Relaxed);
        pushed
    }

    /// What the recorder has done so far (`GET /metrics`).
    pub fn stats(&self) -> HistoryStats {
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let w = &self.shared.written;
        let q = self.shared.lock();
        HistoryStats {
            queued: q.records.len() as u64,
            capacity: self.shared.capacity as u64,
            waits_for_room: q.room_waits,
            waited_us: w.waited_us.load(relaxed),
            batches: w.batches.load(relaxed),
            records: w.records.load(relaxed),
            failed_batches: w.failed_batches.load(relaxed),
            take_overs: q.take_overs,
            hand_overs: q.hand_overs,
            moves: q.moves,
            boosts: q.boosts,
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
        let mut q = self.shared.lock_for_call();
        if q.closed || q.closing.is_some() {
            return Pushed::Closed;
        }
        if q.records.len() >= self.shared.capacity {
            match room {
                Some(room) => {
                    room.enable();
                }
                // A call's first try: it is about to wait.
                None => q.room_waits += 1,
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
        let len = q.records.len();
        // The thread writing now is woken for a full batch; a first record wakes whichever
        // sleeps until one comes.
        let full = len == self.shared.full();
        let wakes_parked = len == 1 && q.parked;
        if wakes_parked {
            // The writer lingers from when it wakes; if it never runs, the guard knows when to
            // look.
            q.due = Some(std::time::Instant::now() + self.shared.short_linger);
        }
        let writer = wakes_parked || (full && !q.taken_over(std::time::Instant::now()));
        // The guard is told when half the queue waits, unless it is writing already.
        let guard = (len == 1 && q.guard_parked)
            || (full && q.guard_until.is_some())
            || (len == self.shared.behind() && q.guard_until.is_none());
        drop(q);
        if writer {
            self.shared.wake.notify_one();
        }
        if guard {
            self.shared.guard_wake.notify_one();
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
        self.shared.ring_both();
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
        self.shared.ring_both();
        let _ = rx.await;
        // The last batch is stored and the queue marked closed: a thread asleep since before
        // that (the guard) is woken to see it and end.
        self.shared.end();
        let ended = std::mem::take(&mut *self.ended.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in ended {
            // An error: the thread ended without a word (it never started, or it panicked).
            let _ = thread.await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shared.lock().abandoned = true;
        self.shared.end();
    }
}
