//! The clock of hyper's header timeout on the serving threads (`hyper::rt::Timer`): deadlines
//! checked by each thread's chores (`sweep`, every `allocator::COLLECT_EVERY`) instead of one
//! Tokio timer per request.
//!
//! hyper arms the timeout each time it starts waiting for a request's head, which on a
//! kept-alive connection is after every answer: with `hyper_util`'s `TokioTimer` that was a
//! boxed Tokio `Sleep` put into and taken out of the runtime's timer wheel, and a clock read,
//! on every request: about 1,300 instructions of a 51,000-instruction tool call (issue 16,
//! twenty-ninth session). Here a request costs a box and a slot in a per-thread list; the
//! timeouts are whole seconds, so firing up to one sweep late (or early, since `now` is the
//! time of the last sweep) does not matter.
//!
//! A sleep fires only on a thread whose chores sweep: the serving threads, which run every
//! connection's task from start to end (current-thread runtimes: a task never moves).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// hyper's timer on the serving threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoarseTimer;

/// Tells the threads' lists apart, so that a sleep is only ever taken out of its own.
static NEXT_WATCH: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static WATCH: RefCell<Watch> = RefCell::new(Watch::new());
}

/// One thread's waiting sleeps.
struct Watch {
    id: u64,
    /// The time of the last sweep.
    now: Instant,
    slots: Vec<Slot>,
    free: Vec<usize>,
}

/// A place for one waiting sleep. `generation` moves on whenever the sleep leaves it (fired or
/// dropped), so a sleep whose slot has moved on knows it fired.
struct Slot {
    generation: u64,
    waiting: Option<(Instant, Waker)>,
}

/// Where a registered sleep waits.
#[derive(Clone, Copy, Debug)]
struct Key {
    watch: u64,
    index: usize,
    generation: u64,
}

impl Watch {
    fn new() -> Self {
        Watch {
            id: NEXT_WATCH.fetch_add(1, Ordering::Relaxed),
            now: Instant::now(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    fn register(&mut self, deadline: Instant, waker: Waker) -> Key {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation: 0,
                waiting: None,
            });
            self.slots.len() - 1
        });
        let slot = &mut self.slots[index];
        slot.waiting = Some((deadline, waker));
        Key {
            watch: self.id,
            index,
            generation: slot.generation,
        }
    }

    /// The slot of `key` if the sleep still waits there.
    fn waiting(&mut self, key: Key) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.index)
            .filter(|s| key.watch == self.id && s.generation == key.generation)
    }

    fn release(&mut self, index: usize) -> Option<Waker> {
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        slot.waiting.take().map(|(_, w)| w)
    }
}

/// Fire this thread's sleeps whose deadline has passed, and move its clock on. For the serving
/// threads' periodic chores.
pub fn sweep() {
    let due = WATCH.try_with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else {
            return Vec::new();
        };
        let now = Instant::now();
        w.now = now;
        let expired: Vec<usize> = (w.slots.iter().enumerate())
            .filter(|(_, s)| s.waiting.as_ref().is_some_and(|(d, _)| *d <= now))
            .map(|(i, _)| i)
            .collect();
        expired.into_iter().filter_map(|i| w.release(i)).collect()
    });
    // Woken once the list is let go: a waker may run code that arms another sleep.
    for waker in due.unwrap_or_default() {
        waker.wake();
    }
}

/// A sleep of `CoarseTimer`.
struct CoarseSleep {
    deadline: Instant,
    key: Option<Key>,
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let polled = WATCH.try_with(|w| {
            // Never held across a poll (`sweep` wakes once it has let go); should that change,
            // ask to be polled again rather than panic.
            let Ok(mut w) = w.try_borrow_mut() else {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            };
            if let Some(key) = this.key {
                return match w.waiting(key) {
                    Some(slot) => {
                        if let Some((_, waker)) = &mut slot.waiting
                            && !waker.will_wake(cx.waker())
                        {
                            waker.clone_from(cx.waker());
                        }
                        Poll::Pending
                    }
                    // Fired by a sweep (a sleep polled on another thread than the one it
                    // waited on, which current-thread runtimes never do, counts as fired too).
                    None => Poll::Ready(()),
                };
            }
            if this.deadline <= w.now {
                return Poll::Ready(());
            }
            this.key = Some(w.register(this.deadline, cx.waker().clone()));
            Poll::Pending
        });
        // The thread is ending: nothing is left to time out.
        polled.unwrap_or(Poll::Ready(()))
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let _ = WATCH.try_with(|w| {
                if let Ok(mut w) = w.try_borrow_mut()
                    && w.waiting(key).is_some()
                {
                    w.release(key.index);
                }
            });
        }
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseSleep {
            deadline,
            key: None,
        })
    }

    /// The time of this thread's last sweep: no clock read per request.
    fn now(&self) -> Instant {
        WATCH
            .try_with(|w| w.try_borrow().map(|w| w.now).ok())
            .ok()
            .flatten()
            .unwrap_or_else(Instant::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// Counts its wake-ups.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, waker: &Waker) -> Poll<()> {
        sleep.as_mut().poll(&mut Context::from_waker(waker))
    }

    fn slots_waiting() -> usize {
        WATCH.with(|w| {
            w.borrow()
                .slots
                .iter()
                .filter(|s| s.waiting.is_some())
                .count()
        })
    }

    #[test]
    fn a_sleep_fires_at_the_first_sweep_past_its_deadline_and_wakes_its_task() {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        sweep();
        let mut sleep = CoarseTimer.sleep(Duration::from_millis(60));
        assert!(poll(&mut sleep, &waker).is_pending());
        assert_eq!(slots_waiting(), 1);
        sweep();
        assert!(
            poll(&mut sleep, &waker).is_pending(),
            "fired before its deadline"
        );
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        std::thread::sleep(Duration::from_millis(80));
        sweep();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "not woken");
        assert!(poll(&mut sleep, &waker).is_ready());
        assert_eq!(slots_waiting(), 0);
        drop(sleep);
        // A sleep whose deadline is already past when first polled is ready at once.
        let mut past = CoarseTimer.sleep_until(CoarseTimer.now());
        assert!(poll(&mut past, &waker).is_ready());
        assert_eq!(slots_waiting(), 0);
    }

    #[test]
    fn a_dropped_sleep_gives_its_slot_back_and_never_fires() {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut first = CoarseTimer.sleep(Duration::from_millis(1));
        assert!(poll(&mut first, &waker).is_pending());
        let slots = WATCH.with(|w| w.borrow().slots.len());
        drop(first);
        assert_eq!(slots_waiting(), 0);
        // The slot is reused by the next sleep, which the dropped one's key no longer reaches.
        let mut second = CoarseTimer.sleep(Duration::from_secs(60));
        assert!(poll(&mut second, &waker).is_pending());
        std::thread::sleep(Duration::from_millis(5));
        sweep();
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "a dropped sleep fired");
        assert!(poll(&mut second, &waker).is_pending());
        assert_eq!(WATCH.with(|w| w.borrow().slots.len()), slots);
    }

    #[test]
    fn the_latest_waker_is_the_one_woken() {
        let old = Arc::new(Counter(AtomicUsize::new(0)));
        let new = Arc::new(Counter(AtomicUsize::new(0)));
        let mut sleep = CoarseTimer.sleep(Duration::from_millis(1));
        assert!(poll(&mut sleep, &Waker::from(old.clone())).is_pending());
        assert!(poll(&mut sleep, &Waker::from(new.clone())).is_pending());
        std::thread::sleep(Duration::from_millis(5));
        sweep();
        assert_eq!(old.0.load(Ordering::SeqCst), 0);
        assert_eq!(new.0.load(Ordering::SeqCst), 1);
    }
}
