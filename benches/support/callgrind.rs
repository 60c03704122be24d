//! Instructions per invoke, counted by callgrind: the same for the same binary and inputs
//! whatever else the machine is doing (this machine has no hardware counters for `perf stat`).
//! The gateway runs under valgrind; after set-up and a warm-up the counters are zeroed
//! (`callgrind_control -z`), N sequential invokes are sent, and the counters are dumped
//! (`callgrind_control -d`): start-up and set-up are left out, and an idle gateway's background
//! work is a few hundred thousand instructions in 5 s against the hundreds of millions counted.
//! Counted twice: with history (what a call costs in all) and without (the call path alone,
//! which does not move between runs as history's batching does).

use super::*;

fn callgrind_control(flag: &str, pid: u32) {
    let ok = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "callgrind_control {flag} failed");
}

/// Instructions the gateway (started with `extra` arguments) spent on `n` sequential invokes,
/// after `warm` unmeasured ones.
async fn count(
    tmp: &Path,
    client: &reqwest::Client,
    up_port: u16,
    (warm, n): (usize, usize),
    extra: &[&str],
) -> u64 {
    let data = tmp.join(format!("data-callgrind{}", extra.join("")));
    let out = tmp.join("callgrind.out");
    let port = free_port();
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(toolgate_bin());
    serve_args(&mut cmd, &data, port);
    let child = cmd
        .args(extra)
        // Busy polling spins for a wall-clock budget, which under valgrind spans many more
        // instructions than on a CPU: they would measure valgrind's slowness, not the call.
        // (An environment variable, so an older build under `BENCH_TOOLGATE_BIN` still starts.)
        .env("TOOLGATE_BUSY_POLL_US", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start valgrind (benches/run.sh installs it)");
    let proc = Proc(child);
    let pid = proc.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(300);
    while http_status(&format!("{base}/healthz")).map_or(true, |s| s >= 500) {
        assert!(
            Instant::now() < deadline,
            "toolgate under valgrind did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    setup_tool(client, &base, up_port).await;
    let url = format!("{base}/v1/tools/bench_order/invoke");
    let body = json!({"arguments": {"order_number": "A-1001"}});
    for i in 0..warm + n {
        if i == warm {
            callgrind_control("-z", pid);
        }
        let r = client.post(&url).json(&body).send().await.expect("invoke");
        assert!(r.status().is_success(), "invoke failed: {}", r.status());
        r.bytes().await.expect("body");
    }
    callgrind_control("-d", pid);
    drop(proc);
    let dump = std::fs::read_dir(tmp)
        .expect("tmp")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("callgrind.out.")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .expect("callgrind dump");
    // For `callgrind_annotate`: where the time went, not only how much.
    // The count with extra arguments (without history) is kept beside it, as `….bare`.
    if let Some(mut keep) = std::env::var_os("BENCH_CALLGRIND_OUT") {
        if !extra.is_empty() {
            keep.push(".bare");
        }
        std::fs::copy(dump.path(), &keep).expect("copy the callgrind dump");
    }
    let text = std::fs::read_to_string(dump.path()).expect("callgrind dump");
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .expect("callgrind totals")
}

/// Run the count and return its report section.
pub async fn run(tmp: &Path, client: &reqwest::Client) -> String {
    let n: usize = env_or("BENCH_CALLGRIND_N", 1000);
    let (_upstream, up_port) = upstream(tmp, "callgrind-upstream");
    let total = count(tmp, client, up_port, (100, n), &[]).await;
    // History's share moves between runs by thousands of instructions a call: whether its
    // writer or its guard writes a batch, and how many records a batch holds, depend on how
    // valgrind (which runs one thread at a time) schedules them. Without history the figure is
    // the call path's alone, the same from run to run.
    let bare = count(tmp, client, up_port, (100, n), &["--no-history"]).await;
    let per = |t: u64| t as f64 / n as f64;
    format!(
        "Instructions per invoke (callgrind, {n} sequential invokes after 100 unmeasured, busy polling off): {:.0} with history, {:.0} without (the call path alone; history's share {:.0})\n\n",
        per(total),
        per(bare),
        per(total) - per(bare)
    )
}
