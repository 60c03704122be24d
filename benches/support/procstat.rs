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

/// Clock ticks per second of `/proc/PID/stat` times.
fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
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

/// What `pids` have used so far.
pub fn usage(pids: &[u32]) -> Usage {
    let hz = ticks_per_sec();
    let mut u = Usage::default();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at field 3 (state);
        // utime and stime are fields 14 and 15.
        if let Some((_, rest)) = stat.rsplit_once(") ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = [11, 12]
                .iter()
                .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
                .sum();
            u.cpu += Duration::from_secs_f64(ticks as f64 / hz);
        }
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
