//! Group commit for sled: one fsync at a time, covering every write acknowledged before it started.
//!
//! sled 0.34's `flush_async` deadlocks when many run at once (spacejam/sled#1308: the flushes fill
//! its I/O thread pool while the write they wait for queues behind them), so concurrent writers
//! take a ticket after their write and share one blocking `flush` instead.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// Whether this thread may block in `flush` (set by threads of our own that drive a store
    /// with `block_on`, never by a runtime worker).
    static MAY_BLOCK: Cell<bool> = const { Cell::new(false) };
}

/// Let flushes started on the calling thread run on it instead of on Tokio's blocking pool.
/// For a dedicated thread that drives store futures with `Handle::block_on` (the history
/// writer): the hand-off to the pool woke a second thread and switched twice per flush, and
/// that thread then waited on sled's I/O thread anyway. Never call it on a runtime worker.
pub fn flush_inline_on_this_thread() {
    MAY_BLOCK.with(|b| b.set(true));
}

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
        if MAY_BLOCK.with(Cell::get) {
            self.db.flush()?;
        } else {
            let db = self.db.clone();
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(|e| sled::Error::ReportableBug(format!("flush task failed: {e}")))??;
        }
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

    /// A flush on a thread that may block runs there: it completes while every blocking-pool
    /// thread is taken, where a flush elsewhere waits for one.
    #[test]
    fn a_flush_on_a_thread_that_may_block_needs_no_pool_thread() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("db");
        let db = sled::Config::new().path(&path).open().expect("open");
        let gc = std::sync::Arc::new(GroupCommit::new(db.clone()));
        // Take the pool's one thread until told to let go.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (taken, is_taken) = std::sync::mpsc::channel::<()>();
        let blocker = runtime.spawn_blocking(move || {
            let _ = taken.send(());
            let _ = held.recv();
        });
        is_taken.recv().expect("the pool thread is taken");
        let five_s = std::time::Duration::from_secs(5);

        // On a thread that may block, the flush finishes while the pool is taken.
        let handle = runtime.handle().clone();
        let gc3 = gc.clone();
        let db3 = db.clone();
        let inline = std::thread::spawn(move || {
            flush_inline_on_this_thread();
            db3.insert(b"b", b"2".to_vec()).expect("insert");
            handle.block_on(gc3.flush())
        });
        let started = std::time::Instant::now();
        while !inline.is_finished() {
            assert!(
                started.elapsed() < five_s,
                "an inline flush must not wait for the pool"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        inline.join().expect("thread").expect("flush");
        // Elsewhere (a runtime worker), the flush waits for the pool.
        db.insert(b"a", b"1".to_vec()).expect("insert");
        let (gc2, (done_tx, done_rx)) = (gc.clone(), std::sync::mpsc::channel());
        runtime.spawn(async move {
            let _ = done_tx.send(gc2.flush().await.is_ok());
        });
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "a worker's flush must go through the blocking pool"
        );

        release.send(()).expect("release");
        assert!(
            done_rx
                .recv_timeout(five_s)
                .expect("the worker's flush ends")
        );
        runtime.block_on(blocker).expect("blocker");
        drop((gc, db));
        runtime.shutdown_timeout(five_s);
        // What both flushed is on disk.
        let db = sled::Config::new().path(&path).open().expect("reopen");
        assert_eq!(db.get(b"a").expect("get").as_deref(), Some(&b"1"[..]));
        assert_eq!(db.get(b"b").expect("get").as_deref(), Some(&b"2"[..]));
    }
}
