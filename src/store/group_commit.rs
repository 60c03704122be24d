//! Group commit for sled: one fsync at a time, covering every write acknowledged before it started.
//!
//! sled 0.34's `flush_async` deadlocks when many run at once (spacejam/sled#1308: the flushes fill
//! its I/O thread pool while the write they wait for queues behind them), so concurrent writers
//! take a ticket after their write and share one blocking `flush` instead.

use std::sync::atomic::{AtomicU64, Ordering};

/// Serialises flushes of one sled database and lets concurrent writers share them.
pub struct GroupCommit {
    db: sled::Db,
    issued: AtomicU64,
    /// Highest ticket known to be durable; the lock also keeps flushes one at a time.
    durable: tokio::sync::Mutex<u64>,
}

impl GroupCommit {
    /// Wrap `db`; nothing is flushed until [`GroupCommit::flush`] is called.
    pub fn new(db: sled::Db) -> Self {
        GroupCommit {
            db,
            issued: AtomicU64::new(0),
            durable: tokio::sync::Mutex::new(0),
        }
    }

    /// Return once every write that finished before this call is on disk.
    pub async fn flush(&self) -> sled::Result<()> {
        // The ticket is taken after the caller's write, so any flush that starts once
        // `issued >= ticket` covers that write.
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut durable = self.durable.lock().await;
        if *durable >= ticket {
            return Ok(());
        }
        let covers = self.issued.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| sled::Error::ReportableBug(format!("flush task failed: {e}")))??;
        *durable = covers;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_flushes_finish_and_persist() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .expect("open");
        let gc = std::sync::Arc::new(GroupCommit::new(db.clone()));
        let mut tasks = Vec::new();
        for i in 0u32..200 {
            let (gc, db) = (gc.clone(), db.clone());
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), b"v".to_vec()).expect("insert");
                gc.flush().await.expect("flush");
            }));
        }
        let all = async {
            for t in tasks {
                t.await.expect("task");
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), all)
            .await
            .expect("flushes must not deadlock");
        assert_eq!(db.len(), 200);
        assert!(*gc.durable.lock().await >= 1);
    }
}
