//! CPU time and context switches of processes, read from `/proc`: on a shared, noisy machine the
//! CPU a process spends per request holds where requests per second do not.

use std::time::Duration;

/// CPU time (user + system, every thread) and context switches (voluntary and not, every thread)
/// a set of processes has used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu: Duration,
    pub switches: u64,
}

impl std::ops::Sub for Usage {
    type Output = Usage;
    fn sub(self, o: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(o.cpu),
            switches: self.switches.saturating_sub(o.switches),
        }
    }
}

/// Clock ticks per second of `/proc/PID/stat` and `/proc/stat` times (asked once: the
/// measurements around a run should not start processes of their own).
fn ticks_per_sec() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `pid` and its direct children (an nginx master and its worker).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for t in tasks.flatten() {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    pids
}

/// Field `n` (numbered from 1, as in proc(5)) of a `/proc/…/stat` line. The command name
/// (field 2) may hold spaces and parentheses: fields are counted from its end, where field 3
/// begins. (`history::idle::stat_field` in the gateway reads the same way; it is not public.)
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    after_name.split_whitespace().nth(n.checked_sub(3)?)
}

/// The sum of the tick counts in `fields` of a `/proc/…/stat` line, as a duration.
fn stat_time(stat: &str, fields: &[usize]) -> Duration {
    let ticks: u64 = fields
        .iter()
        .filter_map(|&n| stat_field(stat, n)?.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / ticks_per_sec())
}

/// utime and stime of process `pid` (every thread), in proc(5)'s field numbers.
const CPU_FIELDS: [usize; 2] = [14, 15];

/// The CPU time process `pid` has used so far (nothing if it is gone).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat_time(&stat, &CPU_FIELDS)
}

/// What `pids` have used so far.
pub fn usage(pids: &[u32]) -> Usage {
    let mut u = Usage::default();
    for &pid in pids {
        u.cpu += cpu_of(pid);
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        for t in tasks.flatten() {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            u.switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    u
}

/// Idle time (idle and I/O wait) of all CPUs so far, from `/proc/stat`. The kernel keeps it
/// exactly (from each idle period's start and end), where its user and system columns are
/// samples taken at each tick: with CPUs idling in gaps of microseconds (one connection), the
/// samples said less than the processes' own exact times added up to. The busy time of a
/// run is therefore its wall time on every CPU less this.
pub fn machine_idle() -> Duration {
    let hz = ticks_per_sec();
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|rest| {
            // user, nice, system, idle, iowait
            rest.split_whitespace()
                .skip(3)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / hz)
}

/// CPUs `/proc/stat` lists (the online ones).
pub fn online_cpus() -> u32 {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count()
        .max(1) as u32
}

/// Every process descended from this one (servers it started, their workers, a running wrk).
fn descendants() -> Vec<u32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if let Some(ppid) = stat_field(&stat, 4).and_then(|p| p.parse::<u32>().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![std::process::id()];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// CPU time spent so far by the benchmark: this process, the children it waited for (each
/// finished wrk) and every live descendant (the servers under test and their workers).
pub fn benchmark_cpu() -> Duration {
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // utime, stime, and the waited-for children's cutime, cstime.
    let waited = stat_time(&own, &[14, 15, 16, 17]);
    waited + descendants().into_iter().map(cpu_of).sum::<Duration>()
}
