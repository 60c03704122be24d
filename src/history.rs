//! Call history: the recorder that takes writes off the call
//! path (bounded queue with back-pressure, batched writer, drained on shutdown).

use std::sync::Arc;

use tokio::sync::{Notify, oneshot};

use crate::model::CallRecord;
use crate::store::Store;

pub use crate::redact::{REDACTED, Redactor};

/// Store `batch` (emptying it) on a blocking thread: sled writes are synchronous, and on an async
/// worker they would stall the calls scheduled behind them.
async fn write_batch(
    store: &Arc<dyn Store>,
    batch: &mut Vec<CallRecord>,
    max_records: usize,
    max_age_secs: u64,
) -> Result<(), String> {
    let (store, records) = (store.clone(), std::mem::take(batch));
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        handle
            .block_on(store.insert_calls(&records, max_records, max_age_secs))
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("history writer task failed: {e}"))?
}

/// Sends call records to a background writer that stores them in batches.
///
/// A call only pushes its record onto a shared queue: the writer is woken when the queue goes
/// from empty to not empty, when it fills a batch, and for a reader's sync or shutdown, not once
/// per call. On two cores a wake-up per call (a futex and a thread switch) cost more than the
/// record itself.
pub struct Recorder {
    shared: Arc<Shared>,
}

struct Shared {
    queue: std::sync::Mutex<Queue>,
    /// Wakes the writer.
    wake: Notify,
    /// Wakes callers waiting for room in a full queue.
    room: Notify,
    /// Most records waiting to be written.
    capacity: usize,
}

#[derive(Default)]
struct Queue {
    records: Vec<CallRecord>,
    /// Readers waiting for everything queued before them to be stored.
    waiters: Vec<oneshot::Sender<()>>,
    closing: Option<oneshot::Sender<()>>,
    closed: bool,
}

impl Queue {
    /// Whether the writer should write now rather than linger for more records.
    fn urgent(&self) -> bool {
        self.records.len() >= BATCH || !self.waiters.is_empty() || self.closing.is_some()
    }
}

/// Most records written in one batch.
const BATCH: usize = 256;

/// Longest a record waits for companions before its batch is written.
const LINGER: std::time::Duration = std::time::Duration::from_millis(25);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue holds plain data: a panic elsewhere while it was held leaves it usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Recorder {
    /// Start the writer. `queue` bounds records waiting to be written; a full queue makes callers wait.
    pub fn start(
        store: Arc<dyn Store>,
        queue: usize,
        max_records: usize,
        max_age_secs: u64,
    ) -> Recorder {
        let shared = Arc::new(Shared {
            queue: Default::default(),
            wake: Notify::new(),
            room: Notify::new(),
            capacity: queue.max(1),
        });
        let writer = shared.clone();
        tokio::spawn(async move {
            loop {
                writer.wake.notified().await;
                // Linger briefly so a busy gateway writes (and fsyncs) a few large batches
                // instead of one per call; a full batch, a reader's sync or shutdown cuts the
                // wait short.
                let deadline = tokio::time::Instant::now() + LINGER;
                loop {
                    {
                        let q = writer.lock();
                        if q.urgent() || q.records.is_empty() {
                            break;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = writer.wake.notified() => {}
                    }
                }
                let (mut batch, waiters, closing) = {
                    let mut q = writer.lock();
                    if q.closing.is_some() {
                        q.closed = true;
                    }
                    (
                        std::mem::take(&mut q.records),
                        std::mem::take(&mut q.waiters),
                        q.closing.take(),
                    )
                };
                writer.room.notify_waiters();
                let records = batch.len();
                if records > 0
                    && let Err(e) = write_batch(&store, &mut batch, max_records, max_age_secs).await
                {
                    tracing::error!(error = %e, records, "could not write call history");
                }
                for w in waiters {
                    let _ = w.send(());
                }
                if let Some(w) = closing {
                    let _ = w.send(());
                    break;
                }
            }
        });
        Recorder { shared }
    }

    /// Queue a record; waits while the queue is full (back-pressure, never dropping).
    pub async fn record(&self, r: CallRecord) {
        let mut r = Some(r);
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            {
                let mut q = self.shared.lock();
                if q.closed || q.closing.is_some() {
                    drop(q);
                    tracing::error!("call history writer has stopped; record lost");
                    return;
                }
                if q.records.len() < self.shared.capacity {
                    if let Some(r) = r.take() {
                        q.records.push(r);
                    }
                    let wake = q.records.len() == 1 || q.records.len() == BATCH;
                    drop(q);
                    if wake {
                        self.shared.wake.notify_one();
                    }
                    return;
                }
                // Registered before the lock is released, so the writer's `notify_waiters`
                // after taking the queue cannot be missed.
                room.as_mut().enable();
            }
            room.await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallFilter, HistoryStore, SledStore};

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

    /// Many callers against a queue of 4: every record is written (callers wait for room, none
    /// is dropped), a sync sees all of them, and records after close are refused, not hung on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_record_is_written_under_back_pressure() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(SledStore::open(dir.path(), &[7; 32]).expect("open"));
        let recorder = Arc::new(Recorder::start(store.clone(), 4, 0, 0));
        let mut tasks = Vec::new();
        for t in 0..20 {
            let recorder = recorder.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    recorder.record(record(t * 50 + i)).await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        recorder.sync().await;
        assert_eq!(count(&store).await, 1000);
        // A lone record is written after the linger even with nobody syncing.
        recorder.record(record(1000)).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while count(&store).await < 1001 {
            assert!(
                std::time::Instant::now() < deadline,
                "a lone record was never written"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        recorder.record(record(1001)).await;
        recorder.close().await;
        assert_eq!(count(&store).await, 1002, "close writes what is queued");
        recorder.record(record(1002)).await;
        recorder.sync().await;
        recorder.close().await;
        assert_eq!(count(&store).await, 1002);
    }
}
