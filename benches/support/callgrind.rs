//! Instructions per invoke, counted by callgrind: the same for the same binary and inputs
//! whatever else the machine is doing (this machine has no hardware counters for `perf stat`).
//! The gateway runs under valgrind; after set-up and a warm-up the counters are zeroed
//! (`callgrind_control -z`), N sequential invokes are sent, and the counters are dumped
//! (`callgrind_control -d`): start-up and set-up are left out, and an idle gateway's background
//! work is a few hundred thousand instructions in 5 s against the hundreds of millions counted.
//! Counted twice: with history (what a call costs in all) and without (the call path alone,
//! which moves far less between runs than history's batching does); and the one-worker nginx
//! proxy of the latency comparison, per proxied request, counted the same way.

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
    sequential(client, &url, Some(&body), pid, (warm, n)).await;
    drop(proc);
    // The count with extra arguments (without history) is kept beside it, as `….bare`.
    let keep = if extra.is_empty() { "" } else { ".bare" };
    dump_total(tmp, "callgrind.out.", keep)
}

/// `warm` unmeasured requests to `url` (a POST of `body`, or a GET), the counters of the
/// process `pid` zeroed, `n` measured requests, the counters dumped.
async fn sequential(
    client: &reqwest::Client,
    url: &str,
    body: Option<&Value>,
    pid: u32,
    (warm, n): (usize, usize),
) {
    for i in 0..warm + n {
        if i == warm {
            callgrind_control("-z", pid);
        }
        let r = match body {
            Some(b) => client.post(url).json(b),
            None => client.get(url),
        }
        .send()
        .await
        .expect("request");
        assert!(r.status().is_success(), "request failed: {}", r.status());
        r.bytes().await.expect("body");
    }
    callgrind_control("-d", pid);
}

/// The total of the latest dump in `tmp` whose name starts with `prefix`; kept for
/// `callgrind_annotate` at `BENCH_CALLGRIND_OUT` + `keep` when that is set.
fn dump_total(tmp: &Path, prefix: &str, keep: &str) -> u64 {
    let dump = std::fs::read_dir(tmp)
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .expect("callgrind dump");
    if let Some(mut to) = std::env::var_os("BENCH_CALLGRIND_OUT") {
        to.push(keep);
        std::fs::copy(dump.path(), &to).expect("copy the callgrind dump");
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

/// Instructions the one-worker nginx proxy of the latency comparison spent on `n` sequential
/// requests through it (after `warm`), its worker run in the master's process under valgrind.
async fn count_proxy(
    tmp: &Path,
    client: &reqwest::Client,
    up_port: u16,
    (warm, n): (usize, usize),
) -> u64 {
    let port = free_port();
    let (conf, dir) = nginx_conf(
        tmp,
        "callgrind-proxy",
        "master_process off;\n",
        &proxy_block(port, up_port),
    );
    let out = tmp.join("nginx-callgrind.out");
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(nginx_bin());
    let proc = spawn_nginx(valgrind, &conf, &dir);
    let url = format!("http://127.0.0.1:{port}/api/orders/A-1001?format=json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_status(&url).map_or(true, |s| s != 200) {
        assert!(
            Instant::now() < deadline,
            "nginx under valgrind did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sequential(client, &url, None, proc.0.id(), (warm, n)).await;
    drop(proc);
    dump_total(tmp, "nginx-callgrind.out.", ".proxy")
}

/// Run the count and return its report section.
pub async fn run(tmp: &Path, client: &reqwest::Client) -> String {
    let n: usize = env_or("BENCH_CALLGRIND_N", 1000);
    let (_upstream, up_port) = upstream(tmp, "callgrind-upstream");
    let total = count(tmp, client, up_port, (100, n), &[]).await;
    // History's share moves between runs by thousands of instructions a call: whether its
    // writer or its guard writes a batch, and how many records a batch holds, depend on how
    // valgrind (which runs one thread at a time) schedules them. Without history the figure is
    // the call path's alone, which moves by about a thousand between runs (clock-driven chores).
    let bare = count(tmp, client, up_port, (100, n), &["--no-history"]).await;
    // The proxy hop the latency comparison holds toolgate against, counted the same way.
    let proxy = count_proxy(tmp, client, up_port, (100, n)).await;
    let per = |t: u64| t as f64 / n as f64;
    format!(
        "Instructions per invoke (callgrind, {n} sequential invokes after 100 unmeasured, busy polling off): {:.0} with history, {:.0} without (the call path alone; history's share {:.0}); the one-worker nginx proxy: {:.0} per proxied request (toolgate {:.1}× that with history, {:.1}× without)\n\n",
        per(total),
        per(bare),
        per(total) - per(bare),
        per(proxy),
        per(total) / per(proxy),
        per(bare) / per(proxy)
    )
}
