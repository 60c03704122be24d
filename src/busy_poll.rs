//! A serving thread keeps polling its sockets for a short while after each request instead of
//! sleeping at once, when its requests come close enough together for that to pay.
//!
//! A call waits twice: for the upstream's answer, then for the caller's next request. Under
//! load both usually come back within tens of microseconds. A thread that sleeps for them leaves
//! its CPU idle; in a virtual machine an idle virtual CPU halts, and the write that should wake
//! it costs the writer an exit to the hypervisor and the sleeper a trip back through the host's
//! scheduler, with cold caches at the end of it. Polling the sockets without a timeout for a
//! bounded time after the last request keeps the CPU in the thread's hands across those short
//! waits. Once nothing has come for the whole budget, the thread sleeps as before, so an idle
//! gateway costs nothing.
//!
//! Spinning only pays when the next event comes within the budget. Each thread keeps a moving
//! average of the time between its requests' beginnings and ends, and polls only while that
//! average is under twice the budget: a gateway whose calls are sparse, or whose upstreams take
//! milliseconds, sleeps at once as if polling were off. (Twice, because without polling each
//! wait also holds a wake-up, so the averages measured then run longer than the waits polling
//! would see.) And it polls only while it has at most one call in flight: polling is for a lone
//! call's wake-ups. A thread with several calls in flight is woken by them often enough, and what
//! it would poll away is CPU that the upstream and the callers it waits for could use.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// The longest `--busy-poll-us` accepted: past a few milliseconds a sleep is cheaper than the
/// polling it would spare.
pub const MAX_BUDGET_US: u64 = 10_000;

/// What this serving thread has seen: a count of requests begun and ended, how many are in
/// flight, when the last one began or ended, the moving average of the time between those, the
/// budget (zero: no poller, nothing timed), and the poller's waker while it sleeps.
struct Activity {
    ticks: Cell<u64>,
    in_flight: Cell<u32>,
    last: Cell<Option<Instant>>,
    gap_ns: Cell<u64>,
    budget_ns: Cell<u64>,
    sleeping: Cell<Option<Waker>>,
}

thread_local! {
    static ACTIVITY: Activity = const {
        Activity {
            ticks: Cell::new(0),
            in_flight: Cell::new(0),
            last: Cell::new(None),
            gap_ns: Cell::new(0),
            budget_ns: Cell::new(0),
            sleeping: Cell::new(None),
        }
    };
}

/// A request in flight on this thread, from `begin` until dropped (answered, or abandoned by
/// its caller).
pub struct InFlight(());

/// Note a request beginning on this thread; its end is noted when the guard is dropped.
pub fn begin() -> InFlight {
    ACTIVITY.with(|a| a.in_flight.set(a.in_flight.get().saturating_add(1)));
    note();
    InFlight(())
}

impl Drop for InFlight {
    fn drop(&mut self) {
        ACTIVITY.with(|a| a.in_flight.set(a.in_flight.get().saturating_sub(1)));
        note();
    }
}

/// Note a request beginning or ending on this thread, waking its poller if it sleeps.
fn note() {
    ACTIVITY.with(|a| {
        a.ticks.set(a.ticks.get().wrapping_add(1));
        let budget = a.budget_ns.get();
        if budget > 0 {
            let now = Instant::now();
            if let Some(before) = a.last.replace(Some(now)) {
                // One long pause moves the average by at most half a budget.
                let gap = u64::try_from(now.saturating_duration_since(before).as_nanos())
                    .unwrap_or(u64::MAX)
                    .min(budget.saturating_mul(4));
                let average = a.gap_ns.get();
                a.gap_ns.set(average - average / 8 + gap / 8);
            }
        }
        if let Some(w) = a.sleeping.take() {
            w.wake();
        }
    });
}

fn ticks() -> u64 {
    ACTIVITY.with(|a| a.ticks.get())
}

/// Whether polling pays on this thread: at most one call in flight, and its requests close
/// enough together.
fn worth_polling() -> bool {
    ACTIVITY
        .with(|a| a.in_flight.get() <= 1 && a.gap_ns.get() < a.budget_ns.get().saturating_mul(2))
}

/// Run on a serving thread's current-thread runtime, forever: after each request, keep the
/// runtime polling its sockets until `budget` has passed with no request begun or ended. A
/// task that yields makes that runtime poll its sockets with a zero timeout instead of
/// sleeping in them.
pub async fn poll_while_busy(budget: Duration) {
    let budget_ns = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX).max(1);
    ACTIVITY.with(|a| a.budget_ns.set(budget_ns));
    let mut seen = ticks();
    loop {
        poll_fn(|cx| {
            let now = ticks();
            if now != seen {
                seen = now;
                return Poll::Ready(());
            }
            ACTIVITY.with(|a| a.sleeping.set(Some(cx.waker().clone())));
            Poll::Pending
        })
        .await;
        // A budget past any deadline `Instant` can hold polls until the next request.
        let deadline = |at: Instant| at.checked_add(budget);
        let mut until = deadline(Instant::now());
        while worth_polling() {
            tokio::task::yield_now().await;
            let now = ticks();
            let at = Instant::now();
            if now != seen {
                seen = now;
                until = deadline(at);
            } else if until.is_some_and(|u| at >= u) {
                break;
            } else {
                // Whatever else is waiting for this CPU (the upstream, the caller, the history
                // writer) goes first: the point is to be awake when it is done, not to keep it
                // from running.
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// This thread's (voluntary context switches, CPU time in nanoseconds).
    fn this_thread() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("voluntary_ctxt_switches");
        // The first field is the time spent on a CPU, in nanoseconds.
        let cpu = std::fs::read_to_string("/proc/thread-self/schedstat")
            .expect("schedstat")
            .split(' ')
            .next()
            .and_then(|f| f.parse().ok())
            .expect("CPU time");
        (switches, cpu)
    }

    /// On a current-thread runtime with the poller at `budget`: note `earlier` events spaced
    /// `apart`, then one more (with `in_flight` calls begun and not ended), then wait for a
    /// socket that another thread writes to after `delay`. Returns what that last wait cost this
    /// thread: (voluntary context switches, CPU nanoseconds).
    fn wait_for_a_late_answer(
        budget: Duration,
        earlier: u32,
        apart: Duration,
        in_flight: u32,
        delay: Duration,
    ) -> (u64, u64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            tokio::spawn(poll_while_busy(budget));
            tokio::task::yield_now().await;
            for _ in 0..earlier {
                note();
                tokio::time::sleep(apart).await;
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let writer = std::thread::spawn(move || {
                let mut peer = std::net::TcpStream::connect(addr).expect("connect");
                std::thread::sleep(delay);
                std::io::Write::write_all(&mut peer, b"x").expect("write");
            });
            let (mut sock, _) = listener.accept().await.expect("accept");
            note();
            let calls: Vec<InFlight> = (0..in_flight).map(|_| begin()).collect();
            let before = this_thread();
            let mut byte = [0u8; 1];
            sock.read_exact(&mut byte).await.expect("read");
            let after = this_thread();
            drop(calls);
            sock.shutdown().await.ok();
            writer.join().expect("writer");
            (after.0 - before.0, after.1 - before.1)
        })
    }

    const MS: Duration = Duration::from_millis(1);

    /// That a wait cost the thread at least one sleep and less than `most` of CPU.
    fn assert_slept((switches, cpu): (u64, u64), most: Duration) {
        assert!(switches >= 1, "the thread never slept");
        let most = u64::try_from(most.as_nanos()).expect("a short bound");
        assert!(cpu < most, "the thread used {cpu} ns of CPU while waiting");
    }

    /// That a wait was polled through: the thread never slept.
    fn assert_polled((switches, _): (u64, u64)) {
        assert_eq!(switches, 0, "the serving thread slept while polling");
    }

    #[test]
    fn within_the_budget_the_thread_never_sleeps() {
        assert_polled(wait_for_a_late_answer(5000 * MS, 0, MS, 1, 30 * MS));
    }

    #[test]
    fn past_the_budget_the_thread_sleeps_and_costs_nothing() {
        // Polling through the wait would cost 300 ms.
        assert_slept(wait_for_a_late_answer(2 * MS, 0, MS, 0, 300 * MS), 50 * MS);
    }

    #[test]
    fn requests_further_apart_than_the_budget_are_not_polled_for() {
        // Ten requests 50 ms apart teach the thread that its requests are sparse; polling
        // through the last wait would cost the whole 10 ms budget.
        assert_slept(
            wait_for_a_late_answer(10 * MS, 10, 50 * MS, 0, 100 * MS),
            5 * MS,
        );
    }

    #[test]
    fn requests_close_together_are_polled_for() {
        // Requests 1 ms apart, within a 20 ms budget: the next wait is polled through.
        assert_polled(wait_for_a_late_answer(20 * MS, 20, MS, 0, 10 * MS));
    }

    #[test]
    fn a_thread_with_several_calls_in_flight_is_not_polled_for() {
        assert_slept(
            wait_for_a_late_answer(5000 * MS, 0, MS, 2, 100 * MS),
            50 * MS,
        );
    }

    #[test]
    fn a_call_abandoned_by_its_caller_is_no_longer_in_flight() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let call = async {
                let _flight = begin();
                std::future::pending::<()>().await;
            };
            let mut call = Box::pin(call);
            assert!(futures_poll_once(call.as_mut()).is_pending());
            assert_eq!(ACTIVITY.with(|a| a.in_flight.get()), 1);
            drop(call);
            assert_eq!(ACTIVITY.with(|a| a.in_flight.get()), 0);
        });
    }

    /// Poll a future once, with a waker that does nothing.
    fn futures_poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(Waker::noop());
        f.poll(&mut cx)
    }

    #[test]
    fn without_activity_the_poller_stays_asleep() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cost = rt.block_on(async {
            tokio::spawn(poll_while_busy(5000 * MS));
            let before = this_thread();
            tokio::time::sleep(200 * MS).await;
            let after = this_thread();
            (after.0 - before.0, after.1 - before.1)
        });
        assert_slept(cost, 50 * MS);
    }
}
