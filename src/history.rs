//! Call history: the recorder that takes writes off the call
//! path (bounded queue with back-pressure, batched writer, drained on shutdown).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::model::CallRecord;
use crate::store::Store;

pub use crate::redact::{REDACTED, Redactor};

enum Msg {
    Record(Box<CallRecord>),
    Sync(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

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
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
}

/// Most records written in one batch.
const BATCH: usize = 256;

/// Longest a record waits for companions before its batch is written.
const LINGER: std::time::Duration = std::time::Duration::from_millis(25);

impl Recorder {
    /// Start the writer. `queue` bounds records waiting to be written; a full queue makes callers wait.
    pub fn start(
        store: Arc<dyn Store>,
        queue: usize,
        max_records: usize,
        max_age_secs: u64,
    ) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Msg>(queue.max(1));
        tokio::spawn(async move {
            let mut batch: Vec<CallRecord> = Vec::with_capacity(BATCH);
            let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
            loop {
                let Some(first) = rx.recv().await else { break };
                let mut closing = None;
                let handle =
                    |m: Msg,
                     batch: &mut Vec<CallRecord>,
                     waiters: &mut Vec<oneshot::Sender<()>>,
                     closing: &mut Option<oneshot::Sender<()>>| {
                        match m {
                            Msg::Record(r) => batch.push(*r),
                            Msg::Sync(w) => waiters.push(w),
                            Msg::Close(w) => *closing = Some(w),
                        }
                    };
                handle(first, &mut batch, &mut waiters, &mut closing);
                // Linger briefly so a busy gateway writes (and fsyncs) a few large batches
                // instead of one per call; a reader's sync or shutdown cuts the wait short.
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < BATCH && waiters.is_empty() && closing.is_none() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(m)) => handle(m, &mut batch, &mut waiters, &mut closing),
                        Ok(None) | Err(_) => break,
                    }
                }
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(m) => handle(m, &mut batch, &mut waiters, &mut closing),
                        Err(_) => break,
                    }
                }
                let records = batch.len();
                if records > 0
                    && let Err(e) = write_batch(&store, &mut batch, max_records, max_age_secs).await
                {
                    tracing::error!(error = %e, records, "could not write call history");
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                if let Some(w) = closing {
                    rx.close();
                    while let Ok(m) = rx.try_recv() {
                        if let Msg::Record(r) = m {
                            batch.push(*r);
                        }
                    }
                    if !batch.is_empty()
                        && let Err(e) =
                            write_batch(&store, &mut batch, max_records, max_age_secs).await
                    {
                        tracing::error!(error = %e, "could not write call history at shutdown");
                    }
                    let _ = w.send(());
                    break;
                }
            }
        });
        Recorder { tx }
    }

    /// Queue a record; waits while the queue is full (back-pressure, never dropping).
    pub async fn record(&self, r: CallRecord) {
        if self.tx.send(Msg::Record(Box::new(r))).await.is_err() {
            tracing::error!("call history writer has stopped; record lost");
        }
    }

    /// Wait until every record queued before this call is stored.
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Sync(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Write everything queued and stop the writer.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
