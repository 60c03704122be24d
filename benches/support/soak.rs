//! The soak: minutes of steady load on one invoke route with history on, reported window by
//! window, so a cost that grows with the history (retention, compaction, memory) shows as a
//! trend. `benches/run.sh soak` (SOAK_MINUTES, default 5; SOAK_WINDOW_SECS, default 15;
//! SOAK_CAP, default 1,000,000 records; SOAK_CONNS, default 16).

use super::*;

/// One window of the soak.
struct Window {
    end_s: u64,
    rps: f64,
    errors: u64,
    records: u64,
    dir_mb: f64,
    /// VmRSS, the mean of one sample a second while the window's load ran: one sample at the
    /// window's end caught the writer's queue and batch at a random point of their cycle (the
    /// anonymous part swung by 25 MB between neighbouring windows of the same steady load).
    rss_mb: f64,
    /// The highest of those samples.
    rss_peak_mb: f64,
    /// toolgate's CPU time (every thread, user + system) per request served in the window: on
    /// this shared machine req/s moves with the neighbours' load, CPU per request does not.
    cpu_us: f64,
    /// PostgreSQL's (every `postgres` process), per request; NaN on sled.
    db_cpu_us: f64,
    /// The anonymous part of RSS (heap, stacks), the mean: VmRSS also counts the pages of the
    /// binary that have been run, which grow as new code paths (retention, say) are first taken.
    anon_mb: f64,
}

/// Every PostgreSQL server process on the machine (the benchmark's server runs nothing else).
fn postgres_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .collect()
}

/// Samples a process's VmRSS and RssAnon once a second on its own thread until stopped.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, f64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                samples.push((rss_mb(pid), status_mb(pid, "RssAnon:")));
            }
            samples
        });
        Self { stop, thread }
    }

    /// (mean RSS, peak RSS, mean anon RSS) of the samples taken.
    fn stop(self) -> (f64, f64, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        let n = samples.len().max(1) as f64;
        (
            samples.iter().map(|s| s.0).sum::<f64>() / n,
            samples.iter().map(|s| s.0).fold(f64::NAN, f64::max),
            samples.iter().map(|s| s.1).sum::<f64>() / n,
        )
    }
}

/// Run the soak and return its report section; with `pg`, on the PostgreSQL store (history size
/// is then the `calls` table's, indexes included).
pub async fn run(tmp: &Path, client: &reqwest::Client, pg: Option<&super::postgres::Db>) -> String {
    let minutes: u64 = env_or("SOAK_MINUTES", 5);
    // 15 s: at 36,000 calls a second a 1,000,000 cap is reached in 28 s, and a first window of
    // 30 s left nothing below the cap to compare with.
    let window: u64 = env_or("SOAK_WINDOW_SECS", 15);
    let cap: u64 = env_or("SOAK_CAP", 1_000_000);
    let conns: u32 = env_or("SOAK_CONNS", 16);
    let (_upstream, up_port) = upstream(tmp, "soak-upstream");
    let data = tmp.join("data-soak");
    let cap_arg = cap.to_string();
    let mut args = vec!["--history-max-records", cap_arg.as_str()];
    if let Some(db) = pg {
        args.extend(["--database-url", db.url.as_str()]);
    }
    let (gw, _) = start_toolgate(&data, &args);
    setup_tool(client, &gw.base, up_port).await;
    let script = invoke_script(tmp);
    let url = format!("{}/v1/tools/bench_order/invoke", gw.base);
    let pid = gw.proc.0.id();
    let mut windows = Vec::new();
    let mut total: u64 = 1; // the setup call
    for i in 1..=(minutes * 60 / window).max(1) {
        let db_pids = if pg.is_some() {
            postgres_pids()
        } else {
            Vec::new()
        };
        let (cpu0, db0) = (procstat::usage(&[pid]), procstat::usage(&db_pids));
        let sampler = RssSampler::start(pid);
        let r = wrk_for(&url, conns, Some(&script), window);
        let (rss_mb, rss_peak_mb, anon_mb) = sampler.stop();
        let per_request = |u: procstat::Usage| u.cpu.as_secs_f64() * 1e6 / r.requests.max(1) as f64;
        let cpu_us = per_request(procstat::usage(&[pid]) - cpu0);
        let db_cpu_us = if pg.is_some() {
            per_request(procstat::usage(&db_pids) - db0)
        } else {
            f64::NAN
        };
        total += r.requests;
        windows.push(Window {
            end_s: i * window,
            rps: r.rps,
            errors: r.errors,
            records: total.min(cap),
            dir_mb: match pg {
                Some(db) => db.calls_bytes().await as f64 / 1e6,
                None => dir_size(&data) as f64 / 1e6,
            },
            rss_mb,
            rss_peak_mb,
            cpu_us,
            db_cpu_us,
            anon_mb,
        });
    }
    let (page, _) = time_get(client, &format!("{}/v1/calls?limit=50", gw.base), 11).await;
    let (filtered, _) = time_get(
        client,
        &format!("{}/v1/calls?outcome=failed&limit=50", gw.base),
        5,
    )
    .await;
    // The reads above come as the load stops, while the writer stores its last batches and
    // PostgreSQL catches up (vacuum, checkpoint); the same page once things are quiet is the
    // figure a reader of a settled history sees.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (page_quiet, _) = time_get(client, &format!("{}/v1/calls?limit=50", gw.base), 11).await;
    drop(gw);

    let store = if pg.is_some() { "PostgreSQL" } else { "sled" };
    let mut out = format!(
        "## Soak ({store} store): {minutes} min, {conns} connections, history cap {cap} records\n\n\
         | time | req/s | errors | records | data dir | bytes/record | RSS (mean) | RSS (peak) | anon RSS (mean) | CPU/req toolgate | CPU/req PostgreSQL |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for w in &windows {
        out.push_str(&format!(
            "| {} s | {:.0} | {} | {} | {:.1} MB | {:.0} | {:.1} MB | {:.1} MB | {:.1} MB | {:.1} µs | {} |\n",
            w.end_s,
            w.rps,
            w.errors,
            w.records,
            w.dir_mb,
            w.dir_mb * 1e6 / w.records.max(1) as f64,
            w.rss_mb,
            w.rss_peak_mb,
            w.anon_mb,
            w.cpu_us,
            if w.db_cpu_us.is_nan() { "—".to_string() } else { format!("{:.1} µs", w.db_cpu_us) }
        ));
    }
    let below: Vec<&Window> = windows.iter().filter(|w| w.records < cap).collect();
    let at: Vec<&Window> = windows.iter().filter(|w| w.records >= cap).collect();
    let mean = |ws: &[&Window], f: fn(&Window) -> f64| {
        ws.iter().map(|w| f(w)).sum::<f64>() / ws.len().max(1) as f64
    };
    let rps = |ws: &[&Window]| mean(ws, |w| w.rps);
    let errors: u64 = windows.iter().map(|w| w.errors).sum();
    let range_from_minute_1 = |f: fn(&Window) -> f64| {
        windows
            .iter()
            .filter(|w| w.end_s > 60)
            .map(f)
            .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)))
    };
    let (rss_lo, rss_hi) = range_from_minute_1(|w| w.rss_mb);
    let (peak_lo, peak_hi) = range_from_minute_1(|w| w.rss_peak_mb);
    let (anon_lo, anon_hi) = range_from_minute_1(|w| w.anon_mb);
    if below.is_empty() {
        out.push_str(
            "\n- no window ended below the cap, so nothing is compared with it: the cap was reached \
             within the first window (run again with a smaller SOAK_WINDOW_SECS or a larger SOAK_CAP)",
        );
    }
    out.push_str(&format!(
        "\n- throughput: {:.0} req/s below the cap ({} windows), {:.0} req/s at the cap ({} windows): {:.2}× (target ≥ 0.90×)\n",
        rps(&below),
        below.len(),
        rps(&at),
        at.len(),
        if below.is_empty() || at.is_empty() { f64::NAN } else { rps(&at) / rps(&below) }
    ));
    let (below_cpu, at_cpu) = (mean(&below, |w| w.cpu_us), mean(&at, |w| w.cpu_us));
    out.push_str(&format!(
        "- toolgate CPU per request: {below_cpu:.1} µs below the cap, {at_cpu:.1} µs at it ({:+.1} %)\n",
        (at_cpu / below_cpu - 1.0) * 100.0
    ));
    if pg.is_some() {
        let (below_db, at_db) = (mean(&below, |w| w.db_cpu_us), mean(&at, |w| w.db_cpu_us));
        out.push_str(&format!(
            "- PostgreSQL CPU per request: {below_db:.1} µs below the cap, {at_db:.1} µs at it ({:+.1} %)\n",
            (at_db / below_db - 1.0) * 100.0
        ));
    }
    if let (Some(first), Some(last)) = (at.first(), at.last()) {
        out.push_str(&format!(
            "- trend at the cap: first window {:.0} req/s, last {:.0} req/s ({:+.1} %); least-squares fit over every window at the cap: {:+.1} % of the mean a minute, CPU per request {:+.1} % a minute\n",
            first.rps,
            last.rps,
            (last.rps / first.rps - 1.0) * 100.0,
            slope_per_minute(&at, |w| w.rps) / rps(&at) * 100.0,
            slope_per_minute(&at, |w| w.cpu_us) / mean(&at, |w| w.cpu_us) * 100.0,
        ));
    }
    let from_minute_1: Vec<&Window> = windows.iter().filter(|w| w.end_s > 60).collect();
    let second_half: Vec<&Window> = windows
        .iter()
        .filter(|w| w.end_s * 2 > minutes * 60)
        .collect();
    out.push_str(&format!(
        "- RSS trend (least-squares fit of the windows' means): {:+.2} MB a minute from minute 1, {:+.2} MB a minute over the second half (anon: {:+.2}, {:+.2})\n",
        slope_per_minute(&from_minute_1, |w| w.rss_mb),
        slope_per_minute(&second_half, |w| w.rss_mb),
        slope_per_minute(&from_minute_1, |w| w.anon_mb),
        slope_per_minute(&second_half, |w| w.anon_mb),
    ));
    out.push_str(&format!(
        "- RSS from minute 1, windows' means: {rss_lo:.1}–{rss_hi:.1} MB ({:+.1} %, target within 10 %); \
         peaks {peak_lo:.1}–{peak_hi:.1} MB ({:+.1} %); anon RSS means {anon_lo:.1}–{anon_hi:.1} MB \
         ({:+.1} %); errors: {errors}\n\
         - `GET /v1/calls?limit=50` at the end: {} (5 s later: {}); `?outcome=failed` (no match: PostgreSQL's outcome index, sled's chunk summaries): {}\n\n",
        (rss_hi / rss_lo - 1.0) * 100.0,
        (peak_hi / peak_lo - 1.0) * 100.0,
        (anon_hi / anon_lo - 1.0) * 100.0,
        ms(page),
        ms(page_quiet),
        ms(filtered)
    ));
    out
}

/// The least-squares slope of `f` over the windows' end times, per minute: a trend over every
/// window, where the first and the last alone swing with this shared machine's load. NaN for
/// fewer than two windows.
fn slope_per_minute(ws: &[&Window], f: fn(&Window) -> f64) -> f64 {
    let n = ws.len() as f64;
    let x = |w: &Window| w.end_s as f64 / 60.0;
    let (mx, my) = (
        ws.iter().map(|w| x(w)).sum::<f64>() / n,
        ws.iter().map(|w| f(w)).sum::<f64>() / n,
    );
    let sxy: f64 = ws.iter().map(|w| (x(w) - mx) * (f(w) - my)).sum();
    let sxx: f64 = ws.iter().map(|w| (x(w) - mx).powi(2)).sum();
    if ws.len() < 2 { f64::NAN } else { sxy / sxx }
}
