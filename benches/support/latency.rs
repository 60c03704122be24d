//! The call path against a reverse-proxy hop: wrk at 1 and 32 connections on the same nginx
//! upstream, directly, through a one-worker nginx proxy and through toolgate's invoke route
//! (history on and off, with one HTTP thread like the proxy's one worker, and without busy
//! polling), with each server's CPU time and context switches per request and the CPU time other
//! work on the machine used during each run; then history on against off at 1 and at 32
//! connections in alternating rounds (`BENCH_ROUNDS`, default 5).

use super::procstat::{Usage, benchmark_cpu, machine_idle, online_cpus, usage, with_children};
use super::*;

/// One wrk run and what the server under test spent on it.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub run: Run,
    pub used: Usage,
    /// CPU time the machine was busy during the run with anything but the benchmark's own
    /// processes: its services (a periodic job's burst shows here), and the kernel's own work
    /// outside any process (interrupts on idle CPUs and the like): 40–60 ms a second at one
    /// connection, where the CPUs idle in short gaps, and 10–20 at 32 on a quiet machine here.
    pub others: Duration,
}

impl Measured {
    /// CPU time per request, in µs.
    pub fn cpu_us(&self) -> f64 {
        self.used.cpu.as_secs_f64() * 1e6 / self.run.requests.max(1) as f64
    }
    /// Context switches per request.
    pub fn switches(&self) -> f64 {
        self.used.switches as f64 / self.run.requests.max(1) as f64
    }
    /// CPU time of other work during the run (`others`), in ms.
    pub fn others_ms(&self) -> f64 {
        self.others.as_secs_f64() * 1e3
    }
}

/// wrk against `url` while watching `pids`.
pub fn measure(url: &str, conns: u32, script: Option<&Path>, pids: &[u32]) -> Measured {
    let before = usage(pids);
    // The process-tree scan (a few ms) before the window opens and after it closes.
    let ours = benchmark_cpu();
    let (started, idle) = (Instant::now(), machine_idle());
    let run = wrk(url, conns, script);
    let (idle_after, elapsed) = (machine_idle(), started.elapsed());
    let used = usage(pids) - before;
    let busy = (elapsed * online_cpus()).saturating_sub(idle_after.saturating_sub(idle));
    let others = busy.saturating_sub(benchmark_cpu().saturating_sub(ours));
    Measured { used, others, run }
}

/// Run the comparison and return its report section.
pub async fn run(tmp: &Path, client: &reqwest::Client) -> String {
    let (upstream_proc, up_port) = upstream(tmp, "upstream");
    let proxy_port = free_port();
    let proxy = start_nginx(tmp, "proxy", &proxy_block(proxy_port, up_port));
    wait_http(&format!("http://127.0.0.1:{proxy_port}/api/orders/A-1001"));
    let up_pids = with_children(upstream_proc.0.id());
    let proxy_pids = with_children(proxy.0.id());
    let script = invoke_script(tmp);
    let path = "/api/orders/A-1001?format=json";
    let mut rows: Vec<(&str, u32, Measured)> = Vec::new();
    // The default (one HTTP thread per core), history on and off; then one HTTP thread, the
    // proxy's own parallelism: on two cores shared with wrk and nginx, the second serving thread
    // mostly adds preemptions and cross-CPU wake-ups.
    // Then without busy polling: each serving thread sleeps as soon as it has nothing to do.
    let configs: [(&str, &[&str]); 4] = [
        ("toolgate", &[]),
        ("toolgate_nh", &["--no-history"]),
        ("toolgate_1t", &["--http-threads", "1"]),
        ("toolgate_np", &["--busy-poll-us", "0"]),
    ];
    for (label, extra) in configs {
        // direct and the proxy are measured once, beside the first configuration.
        let first = label == "toolgate";
        let data = tmp.join(format!("data-{label}"));
        let (gw, _) = start_toolgate(&data, extra);
        setup_tool(client, &gw.base, up_port).await;
        let gw_pid = [gw.proc.0.id()];
        // Warm up (connections, pools, lazily compiled validators, the allocator's pages), so a
        // fresh process's first seconds are not counted against it.
        let url = format!("{}/v1/tools/bench_order/invoke", gw.base);
        wrk_for(&url, 32, Some(&script), 2);
        for conns in [1u32, 32] {
            if first {
                let url = format!("http://127.0.0.1:{up_port}{path}");
                rows.push(("direct", conns, measure(&url, conns, None, &up_pids)));
                let url = format!("http://127.0.0.1:{proxy_port}{path}");
                rows.push(("proxy", conns, measure(&url, conns, None, &proxy_pids)));
            }
            let url = format!("{}/v1/tools/bench_order/invoke", gw.base);
            rows.push((label, conns, measure(&url, conns, Some(&script), &gw_pid)));
        }
        drop(gw);
    }
    let alternating = alternating_history_rounds(tmp, client, up_port, &script).await;
    let name = |k: &str| match k {
        "direct" => "direct (nginx upstream)",
        "proxy" => "nginx reverse proxy (1 worker)",
        "toolgate" => "toolgate invoke, history on",
        "toolgate_1t" => "toolgate invoke, history on, 1 HTTP thread",
        "toolgate_np" => "toolgate invoke, history on, no busy polling",
        _ => "toolgate invoke, history off",
    };
    let mut out = String::from(
        "| target | conns | req/s | p50 | p99 | errors | server CPU per request | context switches per request | CPU time of other work during the run |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (k, c, m) in &rows {
        out.push_str(&format!(
            "| {} | {c} | {:.0} | {:.0} µs | {:.0} µs | {} | {:.1} µs | {:.2} | {:.0} ms |\n",
            name(k),
            m.run.rps,
            m.run.p50_us,
            m.run.p99_us,
            m.run.errors,
            m.cpu_us(),
            m.switches(),
            m.others_ms()
        ));
    }
    let get = |k: &str, c: u32| {
        rows.iter()
            .find(|(n, cc, _)| *n == k && *cc == c)
            .map(|(_, _, m)| m.clone())
            .unwrap_or_default()
    };
    let (d1, p1, g1, h1) = (
        get("direct", 1),
        get("proxy", 1),
        get("toolgate", 1),
        get("toolgate_nh", 1),
    );
    let (p32, g32, h32) = (
        get("proxy", 32),
        get("toolgate", 32),
        get("toolgate_nh", 32),
    );
    let (o1, o32) = (get("toolgate_1t", 1), get("toolgate_1t", 32));
    let (n1, n32) = (get("toolgate_np", 1), get("toolgate_np", 32));
    let pct = |a: f64, b: f64| (a / b - 1.0) * 100.0;
    out.push_str(&format!(
        "\n- added p50 at 1 connection over direct: {:.0} µs (nginx hop: {:.0} µs; target ≤ 60 µs)\n\
         - throughput at 32 connections: toolgate/nginx proxy {:.2}× (target ≥ 0.5×), {} errors\n\
         - c=1 p99/p50: {:.1}× (target ≤ 3×); the same machine without toolgate: direct nginx {:.1}×, nginx proxy {:.1}×\n\
         - history on vs off at 1 connection: p50 {:+.1} %, p99 {:+.1} %, req/s {:+.1} %; at 32: p50 {:+.1} %, p99 {:+.1} %, req/s {:+.1} % (target within 25 %)\n\
         - toolgate CPU per invoke: {:.1} µs at 32 connections (target ≤ 30 µs), {:.1} µs at 1; the nginx proxy's: {:.1} µs and {:.1} µs\n\
         - with one HTTP thread (`--http-threads 1`, the proxy's one worker): {:.1} µs at 32 connections, {:.1} µs at 1; throughput {:.2}× the proxy; added p50 at 1 connection {:.0} µs\n\
         - without busy polling (`--busy-poll-us 0`): added p50 at 1 connection {:.0} µs, c=1 p99/p50 {:.1}×; CPU per invoke {:.1} µs at 32 connections, {:.1} µs at 1; throughput {:.2}× the proxy\n\n",
        g1.run.p50_us - d1.run.p50_us,
        p1.run.p50_us - d1.run.p50_us,
        g32.run.rps / p32.run.rps,
        g32.run.errors + g1.run.errors,
        g1.run.p99_us / g1.run.p50_us,
        d1.run.p99_us / d1.run.p50_us,
        p1.run.p99_us / p1.run.p50_us,
        pct(g1.run.p50_us, h1.run.p50_us),
        pct(g1.run.p99_us, h1.run.p99_us),
        pct(g1.run.rps, h1.run.rps),
        pct(g32.run.p50_us, h32.run.p50_us),
        pct(g32.run.p99_us, h32.run.p99_us),
        pct(g32.run.rps, h32.run.rps),
        g32.cpu_us(),
        g1.cpu_us(),
        p32.cpu_us(),
        p1.cpu_us(),
        o32.cpu_us(),
        o1.cpu_us(),
        o32.run.rps / p32.run.rps,
        o1.run.p50_us - d1.run.p50_us,
        n1.run.p50_us - d1.run.p50_us,
        n1.run.p99_us / n1.run.p50_us,
        n32.cpu_us(),
        n1.cpu_us(),
        n32.run.rps / p32.run.rps,
    ));
    out.push_str(&alternating);
    out
}

/// One figure of a measured run.
type Stat = fn(&Measured) -> f64;

/// The median of `v` (at least one value).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// History on against off at 1 and at 32 connections, in `BENCH_ROUNDS` alternating rounds each
/// (two gateways running side by side, each measured in turn): on a shared machine one run of
/// each can land in a loud and a quiet moment and say either way what history costs; the medians
/// of alternating rounds hold. Returns the report's lines.
async fn alternating_history_rounds(
    tmp: &Path,
    client: &reqwest::Client,
    up_port: u16,
    script: &Path,
) -> String {
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    if rounds == 0 {
        return String::new();
    }
    let (on, _) = start_toolgate(&tmp.join("data-alt-on"), &[]);
    let (off, _) = start_toolgate(&tmp.join("data-alt-off"), &["--no-history"]);
    let gateways = [&on, &off];
    for gw in gateways {
        setup_tool(client, &gw.base, up_port).await;
        let url = format!("{}/v1/tools/bench_order/invoke", gw.base);
        wrk_for(&url, 32, Some(script), 2);
    }
    let mut out = String::new();
    for conns in [1u32, 32] {
        let mut runs: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
        let mut waits = Vec::new();
        for _ in 0..rounds {
            for (i, gw) in gateways.iter().enumerate() {
                let url = format!("{}/v1/tools/bench_order/invoke", gw.base);
                let before = if i == 0 {
                    Some(history_counters(client, &gw.base).await)
                } else {
                    None
                };
                runs[i].push(measure(&url, conns, Some(script), &[gw.proc.0.id()]));
                if let Some(before) = before {
                    let after = history_counters(client, &gw.base).await;
                    waits.push(after.since(&before));
                }
            }
        }
        out.push_str(&rounds_report(conns, &runs, &waits));
    }
    out
}

/// The history recorder's counters of interest here, from `GET /metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct HistoryCounters {
    /// Calls that found the queue full.
    room_waits: f64,
    /// Seconds they waited.
    waited_s: f64,
    /// Guard take-overs.
    take_overs: f64,
}

impl HistoryCounters {
    fn since(&self, before: &HistoryCounters) -> HistoryCounters {
        HistoryCounters {
            room_waits: self.room_waits - before.room_waits,
            waited_s: self.waited_s - before.waited_s,
            take_overs: self.take_overs - before.take_overs,
        }
    }
}

async fn history_counters(client: &reqwest::Client, base: &str) -> HistoryCounters {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let sample = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    HistoryCounters {
        room_waits: sample("toolgate_history_room_waits_total"),
        waited_s: sample("toolgate_history_room_wait_seconds_total"),
        take_overs: sample("toolgate_history_guard_take_overs_total"),
    }
}

/// The report's line for one connection count's alternating rounds (`runs[0]` with history,
/// `runs[1]` without; `waits`, the history recorder's counters over each round with history).
fn rounds_report(conns: u32, runs: &[Vec<Measured>; 2], waits: &[HistoryCounters]) -> String {
    let rounds = runs[0].len();
    let med = |i: usize, f: Stat| median(runs[i].iter().map(f).collect());
    let p50: Stat = |m| m.run.p50_us;
    let p99: Stat = |m| m.run.p99_us;
    let rps: Stat = |m| m.run.rps;
    let cs: Stat = Measured::switches;
    let cpu: Stat = Measured::cpu_us;
    let list = |i: usize, f: Stat| {
        runs[i]
            .iter()
            .map(|m| format!("{:.0}", f(m)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let others: Stat = Measured::others_ms;
    let pct = |a: f64, b: f64| (a / b - 1.0) * 100.0;
    let errors: u64 = runs.iter().flatten().map(|m| m.run.errors).sum();
    let waited = if waits.iter().any(|w| w.room_waits.is_nan()) {
        // `BENCH_TOOLGATE_BIN` an earlier build, without the counters.
        "not counted by this build".to_string()
    } else {
        waits
            .iter()
            .map(|w| {
                format!(
                    "{:.0} ({:.1} ms, {:.0} take-overs)",
                    w.room_waits,
                    w.waited_s * 1000.0,
                    w.take_overs
                )
            })
            .collect::<Vec<_>>()
            .join(" / ")
    };
    format!(
        "History on against off at {conns} connection(s), {rounds} alternating rounds of {}s (medians, with / without): p50 {:.0} / {:.0} µs ({:+.1} %), p99 {:.0} / {:.0} µs ({:+.1} %), req/s {:.0} / {:.0} ({:+.1} %), CPU per call {:.1} / {:.1} µs, context switches per call {:.2} / {:.2}; each round's p99 with history {} µs, without {} µs; CPU time of other work in each round with history {} ms, without {} ms; calls that waited for room in the history queue in each round with history {waited}; {errors} errors (target within 25 %; p99/p50 with history {:.1}×, target ≤ 3× at 1 connection)\n\n",
        secs(),
        med(0, p50),
        med(1, p50),
        pct(med(0, p50), med(1, p50)),
        med(0, p99),
        med(1, p99),
        pct(med(0, p99), med(1, p99)),
        med(0, rps),
        med(1, rps),
        pct(med(0, rps), med(1, rps)),
        med(0, cpu),
        med(1, cpu),
        med(0, cs),
        med(1, cs),
        list(0, p99),
        list(1, p99),
        list(0, others),
        list(1, others),
        med(0, p99) / med(0, p50),
    )
}
