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
//!
//! The class ranks a thread only among the threads of its scheduling group (its autogroup, one
//! per session, or its cgroup): against another group's threads the whole group competes as
//! one. An upstream started in another session waited 0.46 ms behind a batch; the benchmark
//! starts its nginx and wrk in toolgate's session, where the class works as described above.

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

/// Whether the calling thread is in the idle class (`run_only_when_idle`); `true` where the
/// class does not exist, so that nothing tries to put it there.
pub fn runs_only_when_idle() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `sched_getscheduler` takes a thread id (0: the calling thread) only.
        let policy = unsafe { libc::sched_getscheduler(0) };
        policy == libc::SCHED_IDLE || policy < 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// Put thread `tid` of this process back in the normal scheduling class, for the one batch it
/// is late with. An idle-class thread gets 3 parts in 1,027 of a CPU that normal threads keep
/// busy, as one slice every 250 ms or so: holding the writing turn (a batch in hand) or the
/// queue's lock meanwhile, it kept the guard and every call waiting, up to 0.4 s at 32
/// connections (BENCHMARKS.md, issue 16, twenty-seventh session). In the normal class it gets
/// its share within milliseconds; it returns to the idle class itself (`run_only_when_idle`)
/// once the batch is stored. Returns whether the class was set.
pub fn run_normally(tid: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` reads `param` during the call only; `tid` is a thread of
        // this process (a stale id fails with ESRCH).
        unsafe { libc::sched_setscheduler(tid, libc::SCHED_OTHER, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        false
    }
}

/// The calling thread's kernel id, for the guard to move it (`move_off_its_cpu`); 0 where
/// threads cannot be moved.
pub fn this_thread_id() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` takes nothing and cannot fail.
        unsafe { libc::gettid() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Move the thread `tid` off the CPU it last ran on (or waits to run on), onto another it may
/// use, and give it back all its CPUs at once. An idle-class thread woken onto a CPU whose
/// thread never sleeps (a serving thread polling at one connection) waits there behind it,
/// while another CPU idles half the time: the kernel's balancing does not pull a waiting thread
/// onto a CPU that is idle only in microsecond gaps. Narrowing its CPUs makes the kernel move it
/// before the call returns; widening them again straight after leaves it where it now is but
/// free to be balanced (kept narrowed until it ran, a writer preempted midway through a batch at
/// 32 connections waited on the one CPU left to it for up to 0.34 s while the other had room,
/// holding the batch). Returns whether it moved: not when the thread may use only that CPU,
/// waits for the disk, or the platform has no affinity.
pub fn move_off_its_cpu(tid: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        let Some(cpu) = last_cpu(tid) else {
            return false;
        };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a zeroed `cpu_set_t` is an empty set; the calls read and write one set of
        // `size` bytes, and `CPU_ISSET`/`CPU_CLR` stay within it for cpu < `CPU_SETSIZE`.
        unsafe {
            let mut was: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(tid, size, &mut was) != 0
                || cpu >= libc::CPU_SETSIZE as usize
                || !libc::CPU_ISSET(cpu, &was)
            {
                return false;
            }
            let mut others = was;
            libc::CPU_CLR(cpu, &mut others);
            if libc::CPU_COUNT(&others) == 0 || libc::sched_setaffinity(tid, size, &others) != 0 {
                return false;
            }
            if libc::sched_setaffinity(tid, size, &was) != 0 {
                tracing::warn!(
                    error = %std::io::Error::last_os_error(),
                    "call history writer could not be given back all its CPUs"
                );
            }
            true
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        false
    }
}

/// The CPU thread `tid` of this process last ran on, unless it waits for the disk (a writer
/// in an `fdatasync` is not waiting for a CPU, and moving it would not help).
#[cfg(target_os = "linux")]
fn last_cpu(tid: i32) -> Option<usize> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let (state, cpu) = state_and_cpu(&stat)?;
    (state != 'D').then_some(cpu)
}

/// A thread's state (field 3) and last CPU (field 39) from its `/proc/…/stat` line.
#[cfg(target_os = "linux")]
fn state_and_cpu(stat: &str) -> Option<(char, usize)> {
    let state = stat_field(stat, 3)?.chars().next()?;
    let cpu = stat_field(stat, 39)?.parse().ok()?;
    Some((state, cpu))
}

/// Field `n` (numbered from 1, as in proc(5)) of a `/proc/…/stat` line.
#[cfg(target_os = "linux")]
pub(super) fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // The command name (field 2) may hold spaces and parentheses: count from its end, where
    // field 3 begins.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    after_name.split_whitespace().nth(n.checked_sub(3)?)
}

/// The CPUs thread `tid` (0: the calling thread) may run on.
#[cfg(all(test, target_os = "linux"))]
pub(super) fn allowed_cpus(tid: i32) -> Vec<usize> {
    // SAFETY: a zeroed `cpu_set_t` is an empty set; the call writes one set of its size, and
    // `CPU_ISSET` stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0,
            "affinity of {tid}"
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect()
    }
}

/// Pin the thread `tid` (0: the calling thread) to `cpu`.
#[cfg(all(test, target_os = "linux"))]
pub(super) fn pin(tid: i32, cpu: usize) {
    // SAFETY: a zeroed `cpu_set_t` is an empty set; `CPU_SET` stays within it for cpu < 1024.
    let done = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        done,
        0,
        "pin {tid} to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    use std::sync::{Arc, mpsc};

    /// The state and CPU are read after the command name, whatever it holds.
    #[test]
    fn a_stat_line_gives_its_state_and_cpu() {
        let tail = "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 \
                    29 30 31 32 33 34 35 7 0 0 0 5";
        let line = format!("4242 (toolgate-histor) R {tail}");
        assert_eq!(super::state_and_cpu(&line), Some(('R', 7)));
        let odd = format!("4242 (a (b) c) D {tail}");
        assert_eq!(super::state_and_cpu(&odd), Some(('D', 7)));
        assert_eq!(super::state_and_cpu("4242 (short) S 1 2"), None);
        assert_eq!(super::state_and_cpu("no name at all"), None);
    }

    /// A thread moved off its CPU runs on another one it may use, and may use all of them
    /// again. A thread that may use one CPU only is left alone.
    #[test]
    fn a_thread_moved_off_its_cpu_runs_elsewhere_with_all_its_cpus() {
        let mine = super::allowed_cpus(0);
        assert!(
            mine.len() >= 2,
            "this test needs two CPUs to move a thread between; the process may use {mine:?}"
        );
        let (tid_tx, tid_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_now = Arc::new(AtomicI32::new(-1));
        let thread = {
            let (stop, cpu_now) = (stop.clone(), cpu_now.clone());
            std::thread::spawn(move || {
                tid_tx.send(super::this_thread_id()).expect("send tid");
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: `sched_getcpu` takes nothing.
                    cpu_now.store(unsafe { libc::sched_getcpu() }, Ordering::Relaxed);
                    std::hint::spin_loop();
                }
            })
        };
        let tid = tid_rx.recv().expect("tid");
        // Wait until it has run and /proc names the CPU it runs on.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let was_on = loop {
            let on = cpu_now.load(Ordering::Relaxed);
            if on >= 0 && super::last_cpu(tid) == Some(on as usize) {
                break on as usize;
            }
            assert!(std::time::Instant::now() < deadline, "never ran");
            std::thread::yield_now();
        };
        assert!(super::move_off_its_cpu(tid));
        // The kernel moved it before the call returned: /proc says so at once.
        let now_on = super::last_cpu(tid).expect("its CPU from /proc");
        assert_ne!(now_on, was_on);
        assert!(mine.contains(&now_on));
        assert_eq!(super::allowed_cpus(tid), mine);
        // Pinned to one CPU, there is nowhere to move it.
        let only = now_on;
        super::pin(tid, only);
        assert!(!super::move_off_its_cpu(tid));
        assert_eq!(super::allowed_cpus(tid), vec![only]);
        stop.store(true, Ordering::Relaxed);
        thread.join().expect("thread");
    }
}
