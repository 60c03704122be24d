//! The history writer's loops: the writer, which runs only when a CPU would otherwise idle, and
//! its guard, which writes in its place when it stops getting the CPU.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::{BATCH, LINGER, Queue, RETAINED_BYTES, Shared, idle};
use crate::store::Store;
use crate::store::history_codec::PackedBatch;

/// How long the guard lets queued work wait without the writer taking any of it before it
/// writes in the writer's place: the whole linger and 25 ms more. An idle-class writer on a CPU
/// with any idle time takes its batch within microseconds of the linger's end; one that only
/// gets the CPU between other threads' slices takes it tens of milliseconds late.
pub(super) const WATCH: Duration = Duration::from_millis(LINGER.as_millis() as u64 + 25);

/// How long past its due time (`Queue::due`: its timer's end, or when it took the batch it is
/// writing) the guard lets the writer leave queued records before it moves the writer to other
/// CPUs: an idle-class writer on a CPU with any idle time takes its batch within microseconds
/// of its timer and writes it in about a millisecond.
pub(super) const KICK_AFTER: Duration = Duration::from_millis(5);

/// How late past its due time the writer may get to a batch and still write it itself. Later
/// means its CPUs are busy: an idle-class thread then gets the CPU only in slivers, and one
/// preempted midway through a batch holds it (and the turn: the guard cannot write either)
/// until it runs again, which at 32 connections took up to a third of a second while calls
/// waited for room in the queue. It hands the batch to the guard instead. A batch that grew a
/// quarter past full while it waited says the same. Twice `KICK_AFTER`: a writer the guard just
/// moved off a CPU it could not get writes its batch itself.
const LATE: Duration = Duration::from_millis(10);

/// Most queued records `Shared::behind` waits for: half the default queue.
const BEHIND_MOST: usize = crate::config::defaults::HISTORY_QUEUE_RECORDS / 2;

/// How long the guard writes before it looks again whether the writer would get the CPU.
const SLICE: Duration = Duration::from_millis(250);

/// How soon the writer must answer the guard's ping, at the start of a slice, for that slice to
/// count as one where it would have got the CPU: an idle-class thread on a CPU with any idle
/// time runs within microseconds; behind busy threads, milliseconds later or not at all.
const PROMPT: Duration = Duration::from_millis(1);

/// Slices in a row with a prompt answer that end a take-over: under load, one or two could be
/// lucky gaps. At one connection the writer sometimes waits on the runqueue of the CPU where the
/// serving thread polls (which never sleeps) until the guard steps in; the ping's wake-up
/// places it afresh, so such a take-over lasts about `PROMPT_SLICES` slices.
const PROMPT_SLICES: u32 = 3;

/// Which of the two threads runs a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The writer, at the idle scheduling class: every batch while it keeps up.
    Writer,
    /// The guard, at the serving threads' class: every batch while a take-over lasts.
    Guard,
}

/// What a writing loop needs of the store.
pub(super) struct Io<'a> {
    pub store: &'a dyn Store,
    pub runtime: &'a tokio::runtime::Handle,
    pub max_records: usize,
    pub max_age_secs: u64,
}

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
pub(super) fn fills_within_linger(records: usize, full: usize, short: Duration) -> bool {
    let ratio = (LINGER.as_micros() / short.as_micros().max(1)).max(1);
    let ratio = usize::try_from(ratio).unwrap_or(usize::MAX);
    records.saturating_mul(ratio) >= full
}

impl Queue {
    /// Whether the guard is writing in the writer's place at `now`.
    pub(super) fn taken_over(&self, now: Instant) -> bool {
        self.guard_until.is_some_and(|until| now < until)
    }

    /// Whether the thread in `role` should leave the queue to the other one at `now`.
    fn stands_aside(&self, role: Role, now: Instant) -> bool {
        match role {
            Role::Writer => self.taken_over(now) || self.handed_over || self.writer_held(),
            Role::Guard => !self.taken_over(now),
        }
    }

    /// Whether a test holds the writer back, as a CPU it never gets would.
    fn writer_held(&self) -> bool {
        #[cfg(test)]
        {
            self.hold_writer
        }
        #[cfg(not(test))]
        {
            false
        }
    }

    /// Whether both threads should end.
    fn finished(&self) -> bool {
        self.closed || self.abandoned
    }
}

impl Shared {
    /// Records that make a batch worth writing without lingering.
    pub(super) fn full(&self) -> usize {
        BATCH.min(self.capacity)
    }

    /// Whether the writer, about to take the queued batch at `now`, got to it too late to
    /// write it at idle priority (`LATE`).
    fn late(&self, q: &Queue, now: Instant) -> bool {
        let overflow = self.full().saturating_add(self.full() / 4);
        q.due
            .is_some_and(|due| now.saturating_duration_since(due) > LATE)
            || (overflow <= self.capacity && q.records.len() >= overflow)
    }

    /// Queued records that mean the writer is falling behind: half the queue, and at most
    /// `BEHIND_MOST` however large the queue is set (a larger queue is room for the store's
    /// stalls, not a reason to tell the guard later).
    pub(super) fn behind(&self) -> usize {
        (self.capacity / 2).clamp(1, BEHIND_MOST)
    }

    /// The condition variable the thread in `role` waits on.
    fn bell(&self, role: Role) -> &std::sync::Condvar {
        match role {
            Role::Writer => &self.wake,
            Role::Guard => &self.guard_wake,
        }
    }

    fn wait_for<'a>(
        &self,
        role: Role,
        q: MutexGuard<'a, Queue>,
        at_most: Duration,
    ) -> MutexGuard<'a, Queue> {
        self.bell(role)
            .wait_timeout(q, at_most)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// The writer's thread: write batches until the recorder is closed or dropped, standing
    /// aside while the guard has taken over.
    pub(super) fn write_until_closed(&self, io: &Io<'_>) {
        let mut batch = PackedBatch::default();
        let q = self.lock();
        let _ = self.write_batches(Role::Writer, q, &mut batch, io);
        self.end();
    }

    /// The guard's thread: watch the writer, and write in its place when queued work waited a
    /// whole `WATCH` without the writer taking any of it, or half the queue waits (an idle-class
    /// thread gets next to no CPU while every CPU is busy with other threads).
    pub(super) fn guard_until_closed(&self, io: &Io<'_>) {
        let mut batch = PackedBatch::default();
        // The batches taken when the guard began watching pending work, and when.
        let mut watch: Option<(u64, Instant)> = None;
        let mut q = self.lock();
        loop {
            if q.finished() {
                break;
            }
            if q.idle() {
                watch = None;
                if q.parked {
                    // The writer sleeps until a record comes: so does the guard (the record
                    // that wakes the writer wakes it too).
                    q.guard_parked = true;
                    q = self.guard_wake.wait(q).unwrap_or_else(|p| p.into_inner());
                    q.guard_parked = false;
                } else {
                    // The writer is on its timer after a batch: look again when it is due to
                    // have taken what comes meanwhile (records do not wake the guard then), or
                    // in a linger.
                    let look = q
                        .due
                        .map(|due| (due + KICK_AFTER).saturating_duration_since(Instant::now()))
                        .filter(|d| !d.is_zero())
                        .unwrap_or(LINGER);
                    q = self.wait_for(Role::Guard, q, look);
                }
                continue;
            }
            // Work is pending: watch for the writer taking some, from when it was first seen
            // waiting (a reader's sync or a record waking the guard does not restart the watch).
            let now = Instant::now();
            let started = match watch {
                Some((taken, since)) if taken == q.taken => since,
                _ => {
                    watch = Some((q.taken, now));
                    now
                }
            };
            let mut left = WATCH.saturating_sub(now.duration_since(started));
            // Past its due time the writer is waiting for a CPU: first move it to another CPU
            // (cheap, and at one connection enough), then, should it still not run, write in
            // its place.
            if let Some(due) = q
                .due
                .filter(|_| q.moved_at != Some(q.taken) && !q.handed_over)
            {
                let move_at = due + KICK_AFTER;
                if now >= move_at {
                    q = self.move_writer(q);
                    continue;
                }
                left = left.min(move_at - now);
            }
            if !q.handed_over && !left.is_zero() && q.records.len() < self.behind() {
                q = self.wait_for(Role::Guard, q, left);
                continue;
            }
            q.handed_over = false;
            // The writer took nothing for a whole watch while work waited, or half the queue
            // is waiting (at its pace the rest fills before a watch ends, and calls then wait).
            watch = None;
            tracing::info!(
                queued = q.records.len(),
                "call history writer is not getting the CPU; its guard writes at normal priority until it does"
            );
            q.take_overs += 1;
            // Write a slice at a time; at each slice's start ping the writer, which answers when
            // it next runs. The take-over ends once it answered promptly in `PROMPT_SLICES`
            // slices in a row: the CPUs have room for it again.
            let mut prompt = 0;
            while prompt < PROMPT_SLICES {
                let now = Instant::now();
                q.guard_until = Some(now + SLICE);
                q.ping = Some(now);
                q.pong = None;
                self.wake.notify_one();
                q = match self.write_batches(Role::Guard, q, &mut batch, io) {
                    Some(q) => q,
                    None => return self.end(),
                };
                prompt = match q.pong {
                    Some(answer) if answer <= PROMPT => prompt + 1,
                    _ => 0,
                };
            }
            q.guard_until = None;
            q.ping = None;
            tracing::info!("call history writer gets the CPU again; writing at idle priority");
            drop(q);
            // The writer waits for the take-over's end on a timer; it may as well start now.
            self.wake.notify_one();
            q = self.lock();
        }
        drop(q);
        self.end();
    }

    /// Move the writer off the CPU it waits for (`idle::move_off_its_cpu`), once for the batch
    /// now queued. The move happens outside the queue's lock: calls queue records meanwhile.
    fn move_writer<'a>(&'a self, mut q: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        q.moved_at = Some(q.taken);
        let tid = self.writer_tid.load(std::sync::atomic::Ordering::Relaxed);
        if tid == 0 {
            return q;
        }
        drop(q);
        let moved = idle::move_off_its_cpu(tid);
        // Another CPU helps only if it has room: with every CPU busy the idle-class writer
        // waits on either, holding the turn if it took a batch. Until that batch is stored it
        // runs in the normal class.
        let boosted = self.boost_writer();
        let mut q = self.lock();
        if moved {
            q.moves += 1;
            tracing::debug!(
                queued = q.records.len(),
                "call history writer waited past its time; moved to another CPU"
            );
        }
        if boosted {
            q.boosts += 1;
            tracing::debug!(
                queued = q.records.len(),
                "call history writer waited past its time; normal priority for this batch"
            );
        }
        q
    }

    /// Back to the idle class after a batch it was boosted for (called by the writer after each
    /// batch it stored or handed over, and before it parks). The class is read back rather than
    /// trusted to the flag: a boost racing this one (its mark cleared here, its class change
    /// landing after) would otherwise leave the writer in the normal class for good, and one
    /// landing in between, marked but in the idle class, where no later boost would move it
    /// (`boost_writer` leaves a marked writer be) while it starved holding the queue or the turn.
    fn settle_writer(&self) {
        if !self.idle_writer {
            return;
        }
        use std::sync::atomic::Ordering;
        self.boosted.store(false, Ordering::SeqCst);
        if !idle::runs_only_when_idle() {
            idle::run_only_when_idle();
        }
        // Marked again meanwhile: that boost stands.
        if self.boosted.load(Ordering::SeqCst) {
            idle::run_normally(idle::this_thread_id());
        }
    }

    /// Wake both threads so that each sees the recorder closed or dropped and ends.
    pub(super) fn end(&self) {
        self.wake.notify_all();
        self.guard_wake.notify_all();
    }

    /// Wait for records, linger for companions, write, repeat, while it is `role`'s turn.
    /// Returns the queue when the turn ends (the guard's take-over is over), `None` once the
    /// recorder is closed or dropped.
    fn write_batches<'a>(
        &'a self,
        role: Role,
        mut q: MutexGuard<'a, Queue>,
        batch: &mut PackedBatch,
        io: &Io<'_>,
    ) -> Option<MutexGuard<'a, Queue>> {
        let mut wrote = false;
        // A guard stepping in writes what waited at once: it is overdue.
        let mut overdue = role == Role::Guard;
        loop {
            // When the batch's linger began: the end of the previous batch if records came
            // while the writer waited on its timer, else when the writer found them.
            let mut since = None;
            loop {
                if q.finished() {
                    return None;
                }
                let now = Instant::now();
                if q.stands_aside(role, now) {
                    if role == Role::Guard {
                        return Some(q);
                    }
                    if let Some(sent) = q.ping.take() {
                        q.pong = Some(now.duration_since(sent));
                    }
                    since = None;
                    let wait = q
                        .guard_until
                        .map_or(LINGER, |until| until.saturating_duration_since(now));
                    q = self.wait_for(role, q, wait);
                    continue;
                }
                if !q.idle() {
                    break;
                }
                if role == Role::Guard || std::mem::take(&mut wrote) {
                    // Right after a batch, records usually keep coming: wait for them on a
                    // timer, so that the call queuing the next batch's first record need not
                    // wake this thread (a futex wake-up and an interrupt to another CPU, in that
                    // call's path). The linger counts from here: one wake-up a batch. (The
                    // guard, while it writes, never parks: the writer's park is what a record
                    // wakes.)
                    since = Some(now);
                    let mut wait = self.short_linger;
                    if let Some(until) = q.guard_until.filter(|_| role == Role::Guard) {
                        wait = wait.min(until.saturating_duration_since(now));
                    }
                    if role == Role::Writer {
                        q.due = Some(now + wait);
                    }
                    q = self.wait_for(role, q, wait);
                } else {
                    // A whole short linger passed without a record: sleep until one comes.
                    since = None;
                    q.due = None;
                    q.parked = true;
                    // Nothing to be late with any more (the guard may have written the batch
                    // it was boosted for): idle class again before sleeping.
                    if role == Role::Writer {
                        self.settle_writer();
                    }
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                    q.parked = false;
                }
            }
            // Linger briefly so a busy gateway writes (and fsyncs) a few large batches instead
            // of one per call; a full batch, a reader's sync or shutdown cuts the wait short,
            // and a batch too slow to fill is written after the short linger.
            let start = since.unwrap_or_else(Instant::now);
            let mut until = start + self.short_linger;
            if role == Role::Writer {
                q.due = Some(until);
            }
            let mut short = true;
            while !std::mem::take(&mut overdue) && !q.urgent(self.full()) && !q.finished() {
                let now = Instant::now();
                if q.stands_aside(role, now) {
                    break;
                }
                let left = until.saturating_duration_since(now);
                if left.is_zero() {
                    if short && fills_within_linger(q.records.len(), self.full(), self.short_linger)
                    {
                        short = false;
                        until = start + LINGER;
                        if role == Role::Writer {
                            q.due = Some(until);
                        }
                        continue;
                    }
                    break;
                }
                q = self.wait_for(role, q, left);
            }
            if q.finished() || q.stands_aside(role, Instant::now()) {
                continue;
            }
            if role == Role::Writer && self.late(&q, Instant::now()) {
                q.handed_over = true;
                q.hand_overs += 1;
                self.guard_wake.notify_one();
                drop(q);
                self.settle_writer();
                q = self.lock();
                continue;
            }
            // Batches reach the store in the order they leave the queue: whoever takes one
            // holds the turn until it is stored.
            drop(q);
            let turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
            q = self.lock();
            if q.idle() || q.stands_aside(role, Instant::now()) {
                // The other thread wrote them meanwhile, or its turn began.
                continue;
            }
            let stop = self.write_one(role, q, batch, io);
            drop(turn);
            if role == Role::Writer {
                self.settle_writer();
            }
            if stop {
                return None;
            }
            wrote = true;
            q = self.lock();
        }
    }

    /// Take the queued batch and store it; `true` when it was the last (the recorder closes).
    fn write_one(
        &self,
        role: Role,
        mut q: MutexGuard<'_, Queue>,
        batch: &mut PackedBatch,
        io: &Io<'_>,
    ) -> bool {
        if q.closing.is_some() {
            q.closed = true;
        }
        std::mem::swap(batch, &mut q.records);
        q.taken = q.taken.wrapping_add(1);
        // The writer should be through this batch well before `KICK_AFTER`: if it is not, and
        // not for the disk, it was preempted and waits for a CPU, holding the turn (so the
        // guard cannot write either) until it gets one.
        q.due = (role == Role::Writer).then(Instant::now);
        let waiters = std::mem::take(&mut q.waiters);
        let closing = q.closing.take();
        drop(q);
        self.room.notify_waiters();
        if !batch.is_empty() {
            let started = Instant::now();
            let records = batch.records();
            let written = io.runtime.block_on(io.store.insert_packed(
                &records,
                io.max_records,
                io.max_age_secs,
            ));
            self.written.batch(records.len(), written.is_ok());
            match written {
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
        match closing {
            Some(w) => {
                let _ = w.send(());
                true
            }
            None => false,
        }
    }
}
