//! Running the history writer only when a CPU would otherwise idle.
//!
//! At one connection on two cores the serving thread polls on one CPU while the caller and the
//! upstream take turns on the other. The writer woke on a timer onto that other CPU, ahead of the
//! caller that the call had just answered, and held it for its whole batch (about half a
//! millisecond of packing, compressing and storing for 50 ms of calls): the kernel does not
//! preempt a thread that has just woken from a long sleep for one that keeps waking. `perf sched`
//! showed the caller waiting 0.54 ms behind it while the serving thread's CPU went idle, which is
//! the bump from p97 to p99.5 that history added. A thread of the idle class (`SCHED_IDLE`)
//! is preempted by any other thread that wakes on its CPU and is placed as if that CPU were
//! idle, so it fills the gaps between the caller's and the upstream's turns instead (BENCHMARKS.md,
//! issue 16, twentieth session).
//!
//! An idle-class thread gets next to no CPU while every CPU is busy with other threads; the
//! guard (`writer::Role::Guard`) writes in its place then.

/// Put the calling thread in the idle scheduling class. A platform without the class, or a
/// sandbox that refuses the call, leaves it where it was (the writer then runs at the serving
/// threads' priority, as it always had).
pub fn run_only_when_idle() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` reads `param` during the call only; pid 0 is the calling
        // thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "call history writer stays at normal priority"
            );
        }
    }
}
