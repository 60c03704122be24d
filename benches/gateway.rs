//! The gateway benchmark: toolgate's invoke route against a direct call and an nginx reverse proxy
//! to the same nginx upstream (1 and 32 connections, wrk as load generator), history on and off,
//! then scale: 10,000 tools and 1,000,000 history records. Run it with `benches/run.sh`.
//! Every process it starts listens on 127.0.0.1 and is stopped at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BODY: &str = r#"{"order":{"number":"A-1001","status":"shipped","eta":"2026-11-24"}}"#;

/// A numeric setting from the environment, or its default.
#[path = "support/soak.rs"]
mod soak;

#[path = "support/postgres.rs"]
mod postgres;

#[path = "support/procstat.rs"]
mod procstat;

#[path = "support/latency.rs"]
mod latency;

#[path = "support/agent_loop.rs"]
mod agent_loop;

#[path = "support/callgrind.rs"]
mod callgrind;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn secs() -> u64 {
    env_or("BENCH_SECS", 10)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first: a SIGKILLed nginx master leaves its worker running.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        std::thread::sleep(Duration::from_millis(100));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_bin() -> String {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx".into()
    } else {
        "nginx".into()
    }
}

/// Write the configuration of a one-worker nginx named `name` under `dir` serving
/// `server_block` (with `top` before its `events` block); returns its file and directory.
fn nginx_conf(dir: &Path, name: &str, top: &str, server_block: &str) -> (PathBuf, PathBuf) {
    let d = dir.join(name);
    std::fs::create_dir_all(d.join("logs")).expect("nginx dir");
    let conf = format!(
        "worker_processes 1;\ndaemon off;\n{top}error_log {d}/logs/error.log warn;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         keepalive_requests 1000000;\n{server_block}\n}}\n",
        d = d.display()
    );
    let path = d.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    (path, d)
}

/// The proxy's `server` block: a keep-alive pool to the upstream on `up_port`.
fn proxy_block(listen: u16, up_port: u16) -> String {
    format!(
        "upstream u {{ server 127.0.0.1:{up_port}; keepalive 64; }}\n\
         server {{ listen 127.0.0.1:{listen}; location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
    )
}

fn start_nginx(dir: &Path, name: &str, server_block: &str) -> Proc {
    let (conf, d) = nginx_conf(dir, name, "", server_block);
    spawn_nginx(Command::new(nginx_bin()), &conf, &d)
}

/// Run `launcher` (nginx itself, or a tool that runs the nginx binary named last) on the
/// configuration `conf` with prefix `dir`.
fn spawn_nginx(mut launcher: Command, conf: &Path, dir: &Path) -> Proc {
    let child = launcher
        .arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (benches/run.sh installs it)");
    Proc(child)
}

fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http_status(url)
            && r < 500
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{url} did not come up");
}

/// Minimal blocking GET returning the status, to avoid pulling a sync HTTP client in.
fn http_status(url: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    buf.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad response"))
}

struct Gateway {
    proc: Proc,
    base: String,
}

/// The gateway under test: this build's, or `BENCH_TOOLGATE_BIN` (an earlier build, for
/// before/after runs of the same benchmark).
fn toolgate_bin() -> PathBuf {
    std::env::var_os("BENCH_TOOLGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_toolgate")))
}

/// The arguments of `toolgate serve` on `port` with its data in `data`, no tool or prompt files
/// and loopback upstreams allowed, and the benchmark's secret: added to `cmd` (the binary
/// itself, or valgrind running it).
fn serve_args(cmd: &mut Command, data: &Path, port: u16) {
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(data)
    .arg("--tools-dir")
    .arg(data.join("no-tools"))
    .arg("--prompts-dir")
    .arg(data.join("no-prompts"))
    .args(["--allow-hosts", "127.0.0.1"])
    .env("TOOLGATE_SECRET_BENCH_KEY", "bench-secret-value");
}

/// Start the nginx upstream (`BODY` on every path) on a free port.
fn upstream(dir: &Path, name: &str) -> (Proc, u16) {
    let port = free_port();
    let p = start_nginx(
        dir,
        name,
        &format!(
            "server {{ listen 127.0.0.1:{port}; location / {{ default_type application/json; return 200 '{BODY}'; }} }}"
        ),
    );
    wait_http(&format!("http://127.0.0.1:{port}/api/orders/A-1001"));
    (p, port)
}

/// The wrk script of the benchmark's invoke, written into `dir`.
fn invoke_script(dir: &Path) -> PathBuf {
    let script = dir.join("invoke.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"arguments\":{\"order_number\":\"A-1001\"}}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )
    .expect("lua");
    script
}

fn start_toolgate(data: &Path, extra: &[&str]) -> (Gateway, Duration) {
    let port = free_port();
    let start = Instant::now();
    std::fs::create_dir_all(data).expect("data dir");
    let log = std::fs::File::create(data.with_extension("log")).expect("log file");
    let mut cmd = Command::new(toolgate_bin());
    serve_args(&mut cmd, data, port);
    let child = cmd
        .args(extra)
        // The default log level, into a file: what a deployment pays for its logs.
        .env(
            "TOOLGATE_LOG",
            std::env::var("BENCH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start toolgate");
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/healthz"));
    (
        Gateway {
            proc: Proc(child),
            base,
        },
        start.elapsed(),
    )
}

#[derive(Debug, Clone, Default)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    requests: u64,
}

fn to_us(s: &str) -> f64 {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * mult
}

fn wrk(url: &str, conns: u32, script: Option<&Path>) -> Run {
    wrk_for(url, conns, script, secs())
}

fn wrk_for(url: &str, conns: u32, script: Option<&Path>, secs: u64) -> Run {
    let threads = if conns == 1 { 1 } else { 2 };
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &threads.to_string(),
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("run wrk (benches/run.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut r = Run::default();
    let mut in_dist = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        }
        if in_dist {
            if let Some(v) = t.strip_prefix("50%") {
                r.p50_us = to_us(v);
            } else if let Some(v) = t.strip_prefix("99%") {
                r.p99_us = to_us(v);
                in_dist = false;
            }
        }
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        }
        if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(v) = t.strip_prefix("Socket errors:") {
            r.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if t.contains("requests in") {
            r.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    r
}

async fn setup_tool(client: &reqwest::Client, base: &str, upstream: u16) {
    let hook = json!({"name": "Bench order", "description": "Order status for the benchmark", "method": "GET",
        "url": format!("http://127.0.0.1:{upstream}/api/orders/{{order_number}}"), "timeout_ms": 5000,
        "path_params": [{"name": "order_number", "description": "Order number", "value_type": "dynamic"}],
        "query_params": [{"name": "format", "value_type": "static", "value": "json"}],
        "headers": [{"name": "X-Api-Key", "value_type": "secret", "secret": "bench_key"}]});
    let w: Value = client
        .post(format!("{base}/v1/webhooks"))
        .json(&hook)
        .send()
        .await
        .expect("webhook")
        .json()
        .await
        .expect("json");
    let r = client
        .post(format!("{base}/v1/tools"))
        .json(&json!({"name": "bench_order", "webhook_id": w["id"]}))
        .send()
        .await
        .expect("tool");
    assert!(r.status().is_success(), "tool creation failed");
    let check: Value = client
        .post(format!("{base}/v1/tools/bench_order/invoke"))
        .json(&json!({"arguments": {"order_number": "A-1001"}}))
        .send()
        .await
        .expect("invoke")
        .json()
        .await
        .expect("json");
    assert_eq!(
        check["outcome"], "success",
        "benchmark tool must work: {check}"
    );
}

fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// One `/proc/PID/status` figure in MB (`VmRSS:`, `RssAnon:`, …), NaN when unreadable.
fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_size(&path)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn time_get(client: &reqwest::Client, url: &str, n: usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let body = client
            .get(url)
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        times.push(t.elapsed());
        size = body.len();
    }
    times.sort();
    (times[n / 2], size)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let only = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let tmp = tempfile::tempdir().expect("tmp");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut report = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    report.push_str(&format!(
        "Machine: {} cores, {cpu}; {} s per wrk run.\n\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        secs()
    ));

    // Minutes long: only when asked for by name.
    if only == "soak" {
        report.push_str(&soak::run(tmp.path(), &client, None).await);
    }
    if only == "soak-postgres" {
        let db = postgres::Db::create().await;
        report.push_str(&soak::run(tmp.path(), &client, Some(&db)).await);
        db.drop_it().await;
    }
    if only.is_empty() || only == "postgres" {
        report.push_str(&postgres::run(tmp.path(), &client).await);
    }
    if only.is_empty() || only == "latency" {
        report.push_str(&latency::run(tmp.path(), &client).await);
    }
    if only.is_empty() || only == "agent" {
        report.push_str(&agent_loop::run(tmp.path(), &client).await);
    }
    // Minutes under valgrind: only when asked for by name.
    if only == "callgrind" {
        report.push_str(&callgrind::run(tmp.path(), &client).await);
    }
    if only.is_empty() || only == "scale" {
        let data = tmp.path().join("data-scale");
        let (gw, _) = start_toolgate(&data, &[]);
        let n: usize = env_or("BENCH_TOOLS", 10_000);
        let t = Instant::now();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = Vec::new();
        for i in 0..n {
            let (client, base, sem) = (client.clone(), gw.base.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await.expect("sem");
                let hook = json!({"name": format!("Hook {i}"), "description": format!("Look up record {i} in system {}", i % 97),
                    "method": "GET", "url": format!("https://api{}.example.com/v1/records/{{id}}", i % 50),
                    "path_params": [{"name": "id", "description": "Record id", "value_type": "dynamic"}],
                    "query_params": [{"name": "verbose", "data_type": "boolean", "value_type": "dynamic", "required": false}]});
                let w: Value = client.post(format!("{base}/v1/webhooks")).json(&hook).send().await.expect("w").json().await.expect("j");
                client
                    .post(format!("{base}/v1/tools"))
                    .json(&json!({"name": format!("tool_{i}"), "webhook_id": w["id"]}))
                    .send()
                    .await
                    .expect("t");
            }));
        }
        for t in tasks {
            t.await.expect("seed");
        }
        let seed = t.elapsed();
        let (openai, size) = time_get(&client, &format!("{}/v1/tools/openai", gw.base), 21).await;
        let (search, _) = time_get(
            &client,
            &format!("{}/v1/webhooks?q=system%2042", gw.base),
            21,
        )
        .await;
        drop(gw);
        let mut starts = Vec::new();
        let mut rss = 0.0;
        for _ in 0..3 {
            let (gw, took) = start_toolgate(&data, &[]);
            starts.push(took);
            std::thread::sleep(Duration::from_millis(1500));
            rss = rss_mb(gw.proc.0.id());
            drop(gw);
        }
        starts.sort();
        report.push_str(&format!(
            "Scale with {n} webhooks and {n} linked tools (seeded through the API in {:.1} s):\n\n\
             | measure | result | target |\n|---|---|---|\n\
             | `GET /v1/tools/openai` ({:.1} MB), median of 21 | {} | ≤ 20 ms |\n\
             | `GET /v1/webhooks?q=system 42`, median of 21 | {} | ≤ 5 ms |\n\
             | cold start to healthy, median of 3 | {} | ≤ 1 s |\n\
             | RSS at idle after start | {:.1} MB | ≤ 120 MB |\n\
             | data dir size | {:.1} MB | — |\n\n",
            seed.as_secs_f64(),
            size as f64 / 1e6,
            ms(openai),
            ms(search),
            ms(starts[1]),
            rss,
            dir_size(&data) as f64 / 1e6
        ));
    }

    if only.is_empty() || only == "history" {
        let n: usize = env_or("BENCH_CALLS", 1_000_000);
        let data = tmp.path().join("data-history");
        let t = Instant::now();
        seed_history(&data, n).await;
        let seed = t.elapsed();
        let (gw, took) = start_toolgate(&data, &[]);
        let (newest, _) = time_get(&client, &format!("{}/v1/calls?limit=50", gw.base), 11).await;
        let (by_tool, _) = time_get(
            &client,
            &format!("{}/v1/calls?tool=tool_7&limit=50", gw.base),
            11,
        )
        .await;
        let (failed, _) = time_get(
            &client,
            &format!("{}/v1/calls?outcome=failed&limit=50", gw.base),
            11,
        )
        .await;
        let (one, _) = time_get(
            &client,
            &format!("{}/v1/calls/{}", gw.base, "call_missing"),
            11,
        )
        .await;
        let rss = rss_mb(gw.proc.0.id());
        drop(gw);
        let size = dir_size(&data);
        report.push_str(&format!(
            "History with {n} records (written in batches of 1,000 in {:.1} s, {:.0} records/s):\n\n\
             | measure | result |\n|---|---|\n\
             | `GET /v1/calls?limit=50` (newest), median of 11 | {} |\n\
             | `GET /v1/calls?tool=tool_7&limit=50` (1 in 10 match) | {} |\n\
             | `GET /v1/calls?outcome=failed&limit=50` (1 in 20 match) | {} |\n\
             | `GET /v1/calls/{{id}}` | {} |\n\
             | start with this history | {} |\n\
             | RSS after start | {:.1} MB |\n\
             | data dir size | {:.1} MB ({:.0} bytes per record) |\n\n",
            seed.as_secs_f64(),
            n as f64 / seed.as_secs_f64(),
            ms(newest),
            ms(by_tool),
            ms(failed),
            ms(one),
            ms(took),
            rss,
            size as f64 / 1e6,
            size as f64 / n as f64
        ));
    }
    println!("{report}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-report.md");
    let _ = std::fs::write(&out, &report);
    eprintln!("report written to {}", out.display());
}

async fn seed_history(data: &Path, n: usize) {
    use toolgate::store::HistoryStore;
    let key = toolgate::store::seal::load_or_create_key(data, None).or_else(|_| {
        std::fs::create_dir_all(data).expect("dir");
        toolgate::store::seal::load_or_create_key(data, None)
    });
    let store = toolgate::store::SledStore::open(data, &key.expect("key")).expect("store");
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        batch.push(history_record(i));
        if batch.len() == 1000 {
            store.insert_calls(&batch, 0, 0).await.expect("insert");
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert_calls(&batch, 0, 0).await.expect("insert");
    }
}

/// The `i`th record of a seeded history: ten tools, one call in twenty failed.
fn history_record(i: usize) -> toolgate::model::CallRecord {
    use toolgate::model::call::{RecordedRequest, RecordedResponse};
    use toolgate::model::{CallRecord, Outcome, Source, now_rfc3339};
    let failed = i % 20 == 0;
    CallRecord {
        id: toolgate::model::CallId::new(),
        tool: Some(format!("tool_{}", i % 10)),
        webhook_id: format!("wh_{}", i % 10),
        source: Source::Invoke,
        started_at: now_rfc3339(),
        duration_ms: 3,
        outcome: if failed {
            Outcome::HttpError
        } else {
            Outcome::Success
        },
        error: failed.then(|| "upstream answered HTTP 500".to_string()),
        arguments: json!({"order_number": format!("A-{i}")}),
        request: Some(RecordedRequest {
            method: "GET".into(),
            url: format!("https://shop.example.com/api/orders/A-{i}?format=json"),
            headers: vec![("X-Api-Key".into(), "[REDACTED]".into())],
            body: Value::Null,
        }),
        response: Some(RecordedResponse {
            status: if failed { 500 } else { 200 },
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({"order": {"number": format!("A-{i}"), "status": "shipped"}}),
        }),
        attempts: 1,
        agent: None,
        conversation_id: None,
        caller: None,
        context: None,
    }
}
