//! A serving thread keeps polling its sockets for a short while after each request instead of
//! sleeping at once.
//!
//! A call waits twice: for the upstream's answer, then for the caller's next request. Both
//! usually come back within tens of microseconds. A thread that sleeps for them leaves its CPU
//! idle; in a virtual machine an idle virtual CPU halts, and the write that should wake it costs
//! the writer an exit to the hypervisor and the sleeper a trip back through the host's
//! scheduler, with cold caches at the end of it. Polling the sockets without a timeout for a
//! bounded time after the last request keeps the CPU in the thread's hands across those short
//! waits. Once nothing has come for the whole budget, the thread sleeps as before, so an idle
//! gateway costs nothing; a busy one pays at most the budget per burst of activity.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// The longest `--busy-poll-us` accepted: past a few milliseconds a sleep is cheaper than the
/// polling it would spare.
pub const MAX_BUDGET_US: u64 = 10_000;

/// What this serving thread has seen: a count of requests begun and ended, and the poller's
/// waker while it sleeps.
struct Activity {
    ticks: Cell<u64>,
    sleeping: Cell<Option<Waker>>,
}

thread_local! {
    static ACTIVITY: Activity = const {
        Activity {
            ticks: Cell::new(0),
            sleeping: Cell::new(None),
        }
    };
}

/// Note a request beginning or ending on this thread, waking its poller if it sleeps.
pub fn note_activity() {
    ACTIVITY.with(|a| {
        a.ticks.set(a.ticks.get().wrapping_add(1));
        if let Some(w) = a.sleeping.take() {
            w.wake();
        }
    });
}

fn ticks() -> u64 {
    ACTIVITY.with(|a| a.ticks.get())
}

/// Run on a serving thread's current-thread runtime, forever: after each request, keep the
/// runtime polling its sockets until `budget` has passed with no request begun or ended. A
/// task that yields makes that runtime poll its sockets with a zero timeout instead of
/// sleeping in them.
pub async fn poll_while_busy(budget: Duration) {
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
        let mut until = Instant::now() + budget;
        loop {
            tokio::task::yield_now().await;
            let now = ticks();
            let at = Instant::now();
            if now != seen {
                seen = now;
                until = at + budget;
            } else if at >= until {
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

    /// This thread's (voluntary context switches, CPU time in clock ticks).
    fn this_thread() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("voluntary_ctxt_switches");
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<u64> = rest
            .split(' ')
            .skip(11)
            .take(2)
            .map(|f| f.parse().expect("tick count"))
            .collect();
        (switches, fields.iter().sum())
    }

    /// On a current-thread runtime with the poller at `budget`: note a request, then wait for
    /// a socket that another thread writes to after `delay`. Returns what the waiting cost this
    /// thread: (voluntary context switches, CPU clock ticks).
    fn wait_for_a_late_answer(budget: Duration, delay: Duration) -> (u64, u64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
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
            tokio::spawn(poll_while_busy(budget));
            tokio::task::yield_now().await;
            note_activity();
            let before = this_thread();
            let mut byte = [0u8; 1];
            sock.read_exact(&mut byte).await.expect("read");
            let after = this_thread();
            sock.shutdown().await.ok();
            writer.join().expect("writer");
            (after.0 - before.0, after.1 - before.1)
        })
    }

    #[test]
    fn within_the_budget_the_thread_never_sleeps() {
        let (switches, _) =
            wait_for_a_late_answer(Duration::from_secs(5), Duration::from_millis(30));
        assert_eq!(switches, 0, "the serving thread slept while polling");
    }

    #[test]
    fn past_the_budget_the_thread_sleeps_and_costs_nothing() {
        let (switches, ticks) =
            wait_for_a_late_answer(Duration::from_millis(2), Duration::from_millis(300));
        assert!(switches >= 1, "the thread never slept");
        // Spinning through the wait would cost about 30 ticks of 10 ms.
        assert!(ticks < 10, "the idle thread used {ticks} ticks of CPU");
    }

    #[test]
    fn without_activity_the_poller_stays_asleep() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (switches, ticks) = rt.block_on(async {
            tokio::spawn(poll_while_busy(Duration::from_secs(5)));
            let before = this_thread();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after = this_thread();
            (after.0 - before.0, after.1 - before.1)
        });
        assert!(switches >= 1, "the thread never slept");
        assert!(ticks < 10, "the idle thread used {ticks} ticks of CPU");
    }
}
