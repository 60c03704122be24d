//! Call history: redaction of secret values, and the recorder that takes writes off the call
//! path (bounded queue with back-pressure, batched writer, drained on shutdown).

use std::sync::Arc;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::model::CallRecord;
use crate::store::Store;

/// Replacement for every secret value.
pub const REDACTED: &str = "[REDACTED]";

/// Replaces known secret values (raw, percent-encoded and form-encoded) wherever they appear.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values.
    pub fn new(secrets: &[String]) -> Self {
        let mut needles = Vec::new();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            needles.push(s.clone());
            let pct = utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
            let form = serde_urlencoded::to_string([("", s.as_str())]).unwrap_or_default();
            let form = form.trim_start_matches('=').to_string();
            let json_escaped = serde_json::to_string(s).unwrap_or_default();
            let json_inner = json_escaped.trim_matches('"').to_string();
            for n in [pct, form, json_inner] {
                if !n.is_empty() && !needles.contains(&n) {
                    needles.push(n);
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Redactor { needles }
    }

    /// Whether there is anything to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Redact a string.
    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redact every string (keys included) of a JSON value.
    pub fn value(&self, v: &Value) -> Value {
        if self.is_empty() {
            return v.clone();
        }
        match v {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (self.text(k), self.value(x)))
                    .collect(),
            ),
            Value::Number(n) => {
                let t = n.to_string();
                if self.needles.contains(&t) {
                    Value::String(REDACTED.into())
                } else {
                    v.clone()
                }
            }
            other => other.clone(),
        }
    }

    /// Redact header values.
    pub fn headers(&self, h: &[(String, String)]) -> Vec<(String, String)> {
        h.iter().map(|(k, v)| (k.clone(), self.text(v))).collect()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_everywhere() {
        let r = Redactor::new(&["s3cr3t/+&x".to_string()]);
        assert_eq!(r.text("Bearer s3cr3t/+&x"), "Bearer [REDACTED]");
        assert_eq!(
            r.text("https://a/b?k=s3cr3t%2F%2B%26x"),
            "https://a/b?k=[REDACTED]"
        );
        assert_eq!(r.text("k=s3cr3t%2F%2B%26x&y=1"), "k=[REDACTED]&y=1");
        let v = r.value(&json!({"echo": {"auth": "x s3cr3t/+&x"}, "s3cr3t/+&x": 1}));
        assert!(!v.to_string().contains("s3cr3t"), "{v}");
    }

    #[test]
    fn empty_secret_is_ignored() {
        let r = Redactor::new(&[String::new()]);
        assert!(r.is_empty());
        assert_eq!(r.text("abc"), "abc");
    }
}
