//! The recorder's tests: lingering, waking, back-pressure, the idle-class writer and its guard.

use super::idle::{allowed_cpus, pin, stat_field};
use super::writer::{WATCH, fills_within_linger};
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
    let recorder = Recorder::start(store.clone(), 10_000, 0, 0, short, true).expect("writer");
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
    let recorder = Arc::new(Recorder::start(store.clone(), 4, 0, 0, LINGER, true).expect("writer"));
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
    // 1,000 records through a queue of 4: callers waited, and the counters say so.
    let stats = recorder.stats();
    assert_eq!((stats.records, stats.queued, stats.capacity), (1000, 0, 4));
    assert!(stats.batches >= 250, "{stats:?}");
    assert!(stats.waits_for_room > 0 && stats.waited_us > 0, "{stats:?}");
    assert!(
        stats.waits_for_room <= 1000,
        "a call counted twice: {stats:?}"
    );
    assert_eq!(stats.failed_batches, 0);
    // A lone record is written after the linger even with nobody syncing.
    recorder.record(&record(1000), None).await;
    written_within_5_s(&store, 1001, "a lone record").await;
    recorder.record(&record(1001), None).await;
    recorder.close().await;
    assert_eq!(count(&store).await, 1002, "close writes what is queued");
    assert_eq!(recorder.stats().records, 1002);
    recorder.record(&record(1002), None).await;
    recorder.sync().await;
    recorder.close().await;
    assert_eq!(count(&store).await, 1002);
}

/// The `/proc` directories of this process's threads named `name`.
fn tasks_named(name: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .map(|t| t.path())
        .filter(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim_end() == name))
        .collect()
}

/// The scheduling policy (`/proc`'s field 41) of every thread of this process named `name`.
fn policies_of(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for task in tasks_named(name) {
        let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
        if let Some(policy) = stat_field(&stat, 41) {
            out.push(policy.parse().expect("policy"));
        }
    }
    out
}

/// The writer runs in the idle scheduling class, the guard at the serving threads' (Linux's
/// `SCHED_IDLE` is 5, `SCHED_OTHER` 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_runs_in_the_idle_class_and_its_guard_does_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(SledStore::open(dir.path(), &[7; 32]).expect("open"));
    let recorder = Recorder::start(store.clone(), 100, 0, 0, LINGER, true).expect("writer");
    recorder.record(&record(0), None).await;
    recorder.sync().await;
    // Other tests' recorders may be running too: every guard is at normal priority, and this
    // recorder's writer is in the idle class (on a loaded machine its guard may have put it in
    // the normal class for a late batch: it is back once it sleeps).
    let guards = policies_of("toolgate-hist-g");
    assert!(!guards.is_empty(), "threads not found");
    assert!(guards.iter().all(|p| *p == 0), "guard policies {guards:?}");
    let writer = writer_tid(&recorder);
    in_the_idle_class_within_5_s(writer).await;
    recorder.close().await;
}

/// Wait until thread `tid` is in the idle class (Linux's `SCHED_IDLE`, 5): a writer put in the
/// normal class for a late batch is back once it has stored it or sleeps.
async fn in_the_idle_class_within_5_s(tid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let policy = policy_of(tid);
        if policy == Some(5) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the writer stayed at policy {policy:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A thread keeping the CPU the calling thread runs on busy at normal priority, as other work
/// keeps every CPU of a busy host, until `stop`.
struct Spinner {
    cpu: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Spinner {
    fn on_this_cpu() -> Spinner {
        // SAFETY: `sched_getcpu` takes nothing.
        let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinning = stop.clone();
        let thread = std::thread::spawn(move || {
            pin(0, cpu);
            while !spinning.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        Spinner { cpu, stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("spinner");
    }
}

/// The kernel id of `recorder`'s writer thread (0 before it runs).
fn writer_tid(recorder: &Recorder) -> i32 {
    recorder
        .shared
        .writer_tid
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// The scheduling policy of thread `tid` of this process.
fn policy_of(tid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    stat_field(&stat, 41)?.parse().ok()
}

/// A writer that gets next to no CPU while it is due to write (pinned to a CPU that a
/// normal-priority thread keeps busy, as on a host whose CPUs are all busy) is put in the normal
/// class for its late batch, by its guard or by a call that finds the queue held, so records
/// keep reaching the store and calls keep going; afterwards it is back in the idle class. In
/// the idle class throughout it ran about once in 250 ms (its 3 parts in 1,027 of the CPU come
/// as one slice), holding the writing turn or the queue's lock in between: at 32 connections
/// calls waited up to 0.4 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_writer_runs_at_normal_priority_for_its_late_batch() {
    let (_dir, store, recorder) = parked_recorder(2_000).await;
    let writer = writer_tid(&recorder);
    assert_eq!(
        policy_of(writer),
        Some(5),
        "the writer starts in the idle class"
    );
    let spinner = Spinner::on_this_cpu();
    pin(writer, spinner.cpu);
    let started = std::time::Instant::now();
    let mut queued = 0;
    let mut slowest_call = std::time::Duration::ZERO;
    // Calls go on while the first records wait to be written.
    let stored = loop {
        let call = std::time::Instant::now();
        recorder.record(&record(queued), None).await;
        slowest_call = slowest_call.max(call.elapsed());
        queued += 1;
        let n = count(&store).await;
        if n >= 10 {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{n} of {queued} records stored after 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    };
    let boosts = recorder.shared.lock().boosts;
    spinner.stop();
    assert!(boosts >= 1, "never boosted (stored after {stored:?})");
    // Boosted a linger and `KICK_AFTER` past the first record at the latest.
    assert!(stored < WATCH * 2, "stored after {stored:?}");
    assert!(
        slowest_call < WATCH,
        "a call waited {slowest_call:?} for the queue"
    );
    recorder.sync().await;
    assert_eq!(count(&store).await, queued);
    in_the_idle_class_within_5_s(writer).await;
    recorder.close().await;
}

/// The thread ids of this process's threads named `name`.
fn tids_of(name: &str) -> Vec<i32> {
    tasks_named(name)
        .iter()
        .filter_map(|t| t.file_name()?.to_str()?.parse().ok())
        .collect()
}

/// A writer that gets next to no CPU (pinned to a CPU that a normal-priority thread keeps busy,
/// which is what an idle-class thread gets on a host whose CPUs are all busy) does not hold
/// calls back: once half the queue waits, the guard writes in its place; every sync returns in
/// well under a second, and the records land in order (each found by its id). Once the CPU is
/// free again, the guard hands the writing back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_writes_when_the_writer_gets_no_cpu() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(SledStore::open(dir.path(), &[7; 32]).expect("open"));
    let before: std::collections::HashSet<i32> = tids_of("toolgate-histor").into_iter().collect();
    let recorder = Recorder::start(store.clone(), 2_000, 0, 0, LINGER, true).expect("writer");
    // The writer names its thread once it runs. (A recorder another test starts meanwhile may
    // have its writer pinned too: its guard then writes for it, which is what is tested here.)
    let named = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let ours = loop {
        let new: Vec<i32> = tids_of("toolgate-histor")
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        if !new.is_empty() {
            break new;
        }
        assert!(
            std::time::Instant::now() < named,
            "the writer's thread never appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    };
    let spinner = Spinner::on_this_cpu();
    for tid in ours {
        pin(tid, spinner.cpu);
    }
    let mut ids = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut slowest = std::time::Duration::ZERO;
    while recorder.shared.lock().take_overs == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the guard never stepped in"
        );
        // Faster than a starved writer takes them: half the queue is soon waiting.
        for i in 0..1_500 {
            ids.push(recorder.record(&record(ids.len() + i), None).await);
        }
        let started = std::time::Instant::now();
        recorder.sync().await;
        slowest = slowest.max(started.elapsed());
    }
    // Once the guard writes, a sync is a batch's write away.
    for i in 0..10 {
        ids.push(recorder.record(&record(ids.len() + i), None).await);
    }
    let started = std::time::Instant::now();
    recorder.sync().await;
    let taken_over = started.elapsed();
    spinner.stop();
    // With its CPU free again the writer answers the guard's pings at once, and after three
    // such slices (under a second) the guard hands the writing back.
    let back = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while recorder.shared.lock().guard_until.is_some() {
        assert!(
            std::time::Instant::now() < back,
            "the guard never handed back"
        );
        ids.push(recorder.record(&record(ids.len()), None).await);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let handed_back = recorder.shared.lock().take_overs;
    for i in 0..10 {
        ids.push(recorder.record(&record(ids.len() + i), None).await);
    }
    recorder.sync().await;
    assert_eq!(
        recorder.shared.lock().take_overs,
        handed_back,
        "the writer writes again without the guard stepping in"
    );
    recorder.close().await;
    assert!(
        taken_over < std::time::Duration::from_secs(1),
        "a sync while the guard writes took {taken_over:?}"
    );
    // Before the guard stepped in, a sync could wait for a batch the starved writer had taken
    // (the guard waits for that batch to be stored: batches are stored in order). At the idle
    // class's share of a busy CPU (3 parts in 1,027) that is a few hundred milliseconds in a
    // release build and longer in a debug one, but never unbounded.
    assert!(
        slowest < WATCH * 60,
        "a sync took {slowest:?} before the guard stepped in"
    );
    assert_eq!(count(&store).await, ids.len());
    for id in &ids {
        store
            .get_call(id.as_ref())
            .await
            .expect("every record found by its id");
    }
}

/// A writer that never takes its records (held back here, as a CPU it never gets would) while
/// the queue stays far from half full: the guard steps in after a watch and writes them, so a
/// lone record reaches the store with nobody syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_writes_what_a_held_back_writer_leaves_waiting() {
    let (_dir, store, recorder) = parked_recorder(2_000).await;
    // Once the writer sleeps until a record comes, the record that wakes it sets when it is
    // due: a held writer (as one that never gets a CPU) leaves it past due.
    let writer = writer_tid(&recorder);
    let cpus = allowed_cpus(writer);
    recorder.shared.lock().hold_writer = true;
    let started = std::time::Instant::now();
    recorder.record(&record(0), None).await;
    written_within_5_s(&store, 1, "a record the held-back writer left").await;
    assert!(
        started.elapsed() >= WATCH,
        "written after {:?}, before a watch",
        started.elapsed()
    );
    assert_eq!(recorder.shared.lock().take_overs, 1);
    // Before stepping in, a linger and `KICK_AFTER` past due, the guard moved the writer to
    // another CPU (where there is one), leaving it free to use them all.
    let moves = recorder.shared.lock().moves;
    assert_eq!(
        moves,
        u64::from(cpus.len() >= 2),
        "moves with CPUs {cpus:?}"
    );
    assert_eq!(allowed_cpus(writer), cpus);
    // Released, the writer answers the guard's pings and gets the writing back.
    recorder.shared.lock().hold_writer = false;
    let back = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while recorder.shared.lock().guard_until.is_some() {
        assert!(
            std::time::Instant::now() < back,
            "the guard never handed back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    recorder.record(&record(1), None).await;
    recorder.sync().await;
    assert_eq!(count(&store).await, 2);
    assert_eq!(recorder.shared.lock().take_overs, 1);
    recorder.close().await;
}

/// A writer that gets to its batch only once it has grown a quarter past full (it got too
/// little CPU to take it when it filled) leaves it to the guard, which writes it at once,
/// without a watch: an idle-class writer preempted midway through a batch would hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_too_late_for_its_batch_hands_it_to_the_guard() {
    let (_dir, store, recorder) = parked_recorder(4_096).await;
    // Queued behind both threads' backs, as if calls had gone on while the writer waited for a
    // CPU: 1,300 records, past 1,024 and a quarter.
    let n = 1_300;
    {
        let mut scratch = Vec::new();
        let records: Vec<CallRecord> = (0..n).map(record).collect();
        let mut q = recorder.shared.lock();
        for r in &records {
            let e = PackedBatch::encode(r, None, &mut scratch).expect("encode");
            q.records.push(&e, uuid::Uuid::now_v7().as_u128());
        }
    }
    recorder.shared.wake.notify_one();
    written_within_5_s(&store, n, "a batch the late writer handed over").await;
    let (hand_overs, take_overs) = {
        let q = recorder.shared.lock();
        (q.hand_overs, q.take_overs)
    };
    assert_eq!((hand_overs, take_overs), (1, 1), "hand-overs, take-overs");
    recorder.close().await;
    assert_eq!(count(&store).await, n);
}

/// A recorder over a fresh store (in the returned directory) holding up to `queue` records,
/// once its writer and its guard both sleep until a record comes.
async fn parked_recorder(queue: usize) -> (tempfile::TempDir, Arc<SledStore>, Recorder) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(SledStore::open(dir.path(), &[7; 32]).expect("open"));
    let recorder = Recorder::start(store.clone(), queue, 0, 0, LINGER, true).expect("writer");
    let parked = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let both = {
            let q = recorder.shared.lock();
            q.parked && q.guard_parked
        };
        if both {
            return (dir, store, recorder);
        }
        assert!(
            std::time::Instant::now() < parked,
            "the threads never parked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
