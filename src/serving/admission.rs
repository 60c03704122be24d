//! The cap on open client connections: the acceptor stops accepting while it is reached, and
//! starts again when a connection ends.
//!
//! Without it, a client that opens connections and never finishes a request on them (or never
//! closes them) could take every file descriptor the process may open; the gateway would then
//! fail its upstream calls, store files and event deliveries too, not only new clients. At the
//! cap, new connections wait in the kernel's listen backlog instead; the gateway's own work goes
//! on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How often, at most, reaching the cap is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// File descriptors the cap leaves for the rest of the process when it is derived from the
/// open-file limit: the store's files, listeners, the PostgreSQL pool, event deliveries.
const RESERVED_FDS: u64 = 256;

/// The smallest derived cap, for a process allowed very few files.
const FLOOR: usize = 16;

/// How many client connections may be open at once, and how many are.
pub struct Admission {
    max: usize,
    open: AtomicUsize,
    /// Times the acceptor found the cap reached and waited.
    waits: AtomicU64,
    /// When the last warning that the cap was reached was logged: one every `WARN_EVERY` at
    /// most, since a flood reaches it again with every connection that ends.
    warned: std::sync::Mutex<Option<Instant>>,
    /// Told when a connection ends (a permit is kept if nobody waits yet, so an end between the
    /// acceptor's check and its wait is not missed).
    room: Notify,
}

/// One open client connection's place under the cap; given back when dropped.
pub struct Admitted(Arc<Admission>);

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == self.0.max {
            self.0.room.notify_one();
        }
    }
}

impl Admission {
    /// A cap of `max` connections (0: derived from the process's open-file limit, `default_max`).
    pub fn new(max: usize) -> Arc<Self> {
        let max = if max == 0 { default_max() } else { max };
        Arc::new(Admission {
            max,
            open: AtomicUsize::new(0),
            waits: AtomicU64::new(0),
            warned: std::sync::Mutex::new(None),
            room: Notify::new(),
        })
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Times the acceptor found the cap reached and stopped accepting until a connection ended.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// The client connection families of `GET /metrics` (Prometheus text exposition format).
    pub fn render(&self) -> String {
        crate::metrics::render_families(&[
            (
                "toolgate_client_connections_open",
                "gauge",
                "Client connections open.",
                self.open() as f64,
            ),
            (
                "toolgate_client_connections_max",
                "gauge",
                "Most client connections open at once; more wait in the listen backlog.",
                self.max as f64,
            ),
            (
                "toolgate_client_connection_limit_waits_total",
                "counter",
                "Times the connection limit was reached and accepting paused until one closed.",
                self.waits() as f64,
            ),
        ])
    }

    /// Wait until fewer than the cap are open. Called by the acceptor before each accept: one
    /// place at a time is taken (`admit`) once a connection is accepted.
    pub async fn room(&self) {
        let mut counted = false;
        loop {
            let notified = self.room.notified();
            if self.open.load(Ordering::Acquire) < self.max {
                return;
            }
            if !counted {
                counted = true;
                let waits = self.waits.fetch_add(1, Ordering::Relaxed) + 1;
                if self.warn_due() {
                    tracing::warn!(
                        max = self.max,
                        times = waits,
                        "client connection limit reached: new connections wait until one closes"
                    );
                }
            }
            notified.await;
        }
    }

    fn warn_due(&self) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if warned.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            return false;
        }
        *warned = Some(now);
        true
    }

    /// Count an accepted connection; its place is given back when the returned value drops.
    pub fn admit(self: &Arc<Self>) -> Admitted {
        self.open.fetch_add(1, Ordering::AcqRel);
        Admitted(self.clone())
    }
}

/// Half of what the open-file limit leaves after `RESERVED_FDS`: a client connection whose call
/// is in flight holds an upstream connection too. The soft limit is raised to the hard one
/// first (as Go's runtime and nginx's `worker_rlimit_nofile` do): a service manager's soft
/// default of 1,024 would otherwise cap the gateway at 384 connections.
pub fn default_max() -> usize {
    raise_open_file_limit();
    let limit = open_file_limit().unwrap_or(1024);
    let half = limit.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(half).unwrap_or(usize::MAX).max(FLOOR)
}

/// Raise the process's soft limit on open files to its hard limit, where it is lower.
fn raise_open_file_limit() {
    let Some(mut lim) = open_file_limits() else {
        return;
    };
    if lim.rlim_cur >= lim.rlim_max {
        return;
    }
    let from = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads only the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        tracing::debug!(from, to = lim.rlim_max, "open-file limit raised");
    }
}

/// The process's soft limit on open files (`RLIMIT_NOFILE`), if it has one.
fn open_file_limit() -> Option<u64> {
    open_file_limits()
        .map(|lim| lim.rlim_cur)
        .filter(|&cur| cur != libc::RLIM_INFINITY)
}

/// The process's soft and hard limits on open files.
fn open_file_limits() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_acceptor_waits_at_the_cap_until_a_connection_ends() {
        let admission = Admission::new(2);
        admission.room().await;
        let a = admission.admit();
        admission.room().await;
        let _b = admission.admit();
        assert_eq!(admission.open(), 2);
        let waiting = tokio::time::timeout(Duration::from_millis(100), admission.room()).await;
        assert!(waiting.is_err(), "room given at the cap");
        assert_eq!(admission.waits(), 1);
        // A connection ending before the acceptor waits again still lets it through.
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), admission.room())
            .await
            .expect("no room after a connection ended");
        assert_eq!(admission.open(), 1);
        let text = admission.render();
        assert!(
            text.contains("toolgate_client_connections_open 1\n"),
            "{text}"
        );
        assert!(
            text.contains("toolgate_client_connections_max 2\n"),
            "{text}"
        );
        assert!(
            text.contains("toolgate_client_connection_limit_waits_total 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE toolgate_client_connection_limit_waits_total counter"));
    }

    #[tokio::test]
    async fn a_waiting_acceptor_is_woken_by_the_end() {
        let admission = Admission::new(1);
        let only = admission.admit();
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.room().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "room given at the cap");
        drop(only);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the acceptor was not woken")
            .expect("join");
    }

    #[test]
    fn the_derived_cap_leaves_room_for_upstream_connections() {
        let lim = open_file_limits().expect("getrlimit");
        // A soft limit one below the hard one (harmless to the other tests running) is raised.
        if lim.rlim_max != libc::RLIM_INFINITY && lim.rlim_max > 1024 {
            let lowered = libc::rlimit {
                rlim_cur: lim.rlim_max - 1,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads only the struct it is given.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        }
        let max = default_max();
        let lim = open_file_limits().expect("getrlimit");
        assert_eq!(lim.rlim_cur, lim.rlim_max, "the soft limit was not raised");
        assert!(max >= FLOOR);
        if let Some(limit) = open_file_limit() {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            assert!(max <= limit / 2 || max == FLOOR, "{max} of {limit}");
        }
        assert_eq!(Admission::new(0).max(), max);
        assert_eq!(Admission::new(7).max(), 7);
    }
}
