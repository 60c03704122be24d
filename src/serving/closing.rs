//! Graceful shutdown of the connections of one serving thread: a signal each connection checks
//! with one atomic load when it is polled, and that wakes every connection once when given.
//!
//! `axum::serve` watched a channel in a `select!` beside every connection, which locked the
//! channel's waiter list to renew the task's waker each time the connection was polled (two or
//! three times a request): about 600 instructions a call. Here a connection's waker is put in
//! the list once, when the connection first waits, and taken out when the connection ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// The connections of one serving thread: the signal to close and how many are still open.
#[derive(Default)]
pub struct Closing {
    closed: AtomicBool,
    /// One slot per open connection that has waited; `None` for a free slot.
    wakers: Mutex<Vec<Option<Waker>>>,
    open: AtomicUsize,
    /// Told when the last open connection ends.
    none_open: Notify,
}

impl Closing {
    /// Ask every connection to finish what it has in flight and close: now and any opened later.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self.slots().iter_mut().filter_map(Option::take).collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Wait until every connection watched here has ended.
    pub async fn all_ended(&self) {
        loop {
            let notified = self.none_open.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<Waker>>> {
        // A panic while holding it leaves only wakers behind: still usable.
        self.wakers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a connection does when asked to close: hyper's connections finish the request in
/// flight and then close (`graceful_shutdown`).
pub trait Closable: Future {
    /// Start closing.
    fn start_closing(self: Pin<&mut Self>);
}

impl<I, S> Closable for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn start_closing(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// A connection that closes when its thread's `Closing` says so.
pub struct Watched<C> {
    conn: Pin<Box<C>>,
    closing: Arc<Closing>,
    /// Its waker's slot in `Closing::wakers`, once it has waited, and the waker put there.
    slot: Option<usize>,
    waker: Option<Waker>,
    closing_started: bool,
}

impl<C: Closable> Watched<C> {
    /// Watch `conn`; it counts as open until this is dropped.
    pub fn new(conn: C, closing: Arc<Closing>) -> Self {
        closing.open.fetch_add(1, Ordering::SeqCst);
        Watched {
            conn: Box::pin(conn),
            closing,
            slot: None,
            waker: None,
            closing_started: false,
        }
    }

    /// Put the task's waker where `Closing::close` finds it; false when closing has already
    /// been asked for (then nothing is put there).
    fn register(&mut self, waker: &Waker) -> bool {
        let mut slots = self.closing.slots();
        if self.closing.closed.load(Ordering::SeqCst) {
            return false;
        }
        match self.slot {
            Some(i) => slots[i] = Some(waker.clone()),
            None => {
                let i = match slots.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => {
                        slots.push(None);
                        slots.len() - 1
                    }
                };
                slots[i] = Some(waker.clone());
                self.slot = Some(i);
            }
        }
        self.waker = Some(waker.clone());
        true
    }
}

impl<C: Closable> Future for Watched<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        loop {
            if !this.closing_started && this.closing.closed.load(Ordering::SeqCst) {
                this.closing_started = true;
                this.conn.as_mut().start_closing();
            }
            if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if this.closing_started {
                return Poll::Pending;
            }
            // Tasks keep their waker, so after the first wait this is one comparison.
            let known = this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if known || this.register(cx.waker()) {
                return Poll::Pending;
            }
            // Closing was asked for between the check above and now: start it.
        }
    }
}

impl<C> Drop for Watched<C> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.closing.slots()[i] = None;
        }
        if self.closing.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.closing.none_open.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connection that stays open until asked to close, then ends at its next poll.
    struct Idle {
        asked: bool,
    }

    impl Future for Idle {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.asked {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl Closable for Idle {
        fn start_closing(mut self: Pin<&mut Self>) {
            self.asked = true;
        }
    }

    fn spawn_idle(closing: &Arc<Closing>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Watched::new(Idle { asked: false }, closing.clone()))
    }

    #[tokio::test]
    async fn waiting_connections_close_when_asked_and_all_ended_waits_for_them() {
        let closing = Arc::new(Closing::default());
        let conns: Vec<_> = (0..3).map(|_| spawn_idle(&closing)).collect();
        tokio::task::yield_now().await;
        assert_eq!(closing.open.load(Ordering::SeqCst), 3);
        assert_eq!(
            closing.slots().iter().flatten().count(),
            3,
            "each waits, woken by close"
        );
        let waiting = tokio::time::timeout(Duration::from_millis(50), closing.all_ended()).await;
        assert!(waiting.is_err(), "connections are still open");
        closing.close();
        tokio::time::timeout(Duration::from_secs(5), closing.all_ended())
            .await
            .expect("every connection ended after close");
        for c in conns {
            c.await.expect("connection task");
        }
        assert_eq!(closing.open.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_connection_opened_after_close_closes_at_once() {
        let closing = Arc::new(Closing::default());
        closing.close();
        tokio::time::timeout(Duration::from_secs(5), spawn_idle(&closing))
            .await
            .expect("ended")
            .expect("task");
        assert!(closing.slots().iter().flatten().next().is_none());
    }

    #[tokio::test]
    async fn an_ended_connection_gives_its_slot_back() {
        let closing = Arc::new(Closing::default());
        let first = spawn_idle(&closing);
        tokio::task::yield_now().await;
        first.abort();
        let _ = first.await;
        assert_eq!(closing.open.load(Ordering::SeqCst), 0);
        assert!(closing.slots().iter().all(Option::is_none));
        let second = spawn_idle(&closing);
        tokio::task::yield_now().await;
        assert_eq!(closing.slots().len(), 1, "the freed slot is reused");
        closing.close();
        second.await.expect("task");
    }
}
