//! The `toolgate` binary as a user runs it: start-up checks, `validate`, durability across
//! `kill -9`, graceful shutdown draining history, env secrets, and logs that never hold a secret.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Upstream, client, eventually, free_port};
use serde_json::{Value, json};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_toolgate"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TOOLGATE_") {
            c.env_remove(k);
        }
    }
    c
}

struct Proc {
    child: Child,
    base: String,
}

fn spawn_serve(data: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let mut c = bin();
    c.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(data)
    .args(["--tools-dir"])
    .arg(data.join("no-tools"))
    .args(["--prompts-dir"])
    .arg(data.join("no-prompts"))
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    Proc {
        child: c.spawn().expect("spawn toolgate"),
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_healthy(p: &Proc) {
    let http = client();
    let url = format!("{}/healthz", p.base);
    eventually(20, || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.get(&url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        }
    })
    .await;
}

fn stderr_of(mut p: Proc) -> String {
    let mut s = String::new();
    if let Some(mut e) = p.child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    let _ = p.child.wait();
    s
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("post");
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("get");
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// What `toolgate serve` with `args` (and a fresh data dir) says on stderr, having failed.
fn refused_serve(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_refuses_a_public_address_without_a_token() {
    let err = refused_serve(&["--listen", "0.0.0.0:0"]);
    assert!(err.contains("without an admin token"), "{err}");
}

#[test]
fn serve_refuses_a_busy_poll_longer_than_a_sleep_is_worth() {
    let err = refused_serve(&["--listen", "127.0.0.1:0", "--busy-poll-us", "10001"]);
    assert!(err.contains("--busy-poll-us 10001"), "{err}");
}

#[test]
fn serve_refuses_a_history_linger_outside_its_range() {
    for linger in ["0", "51"] {
        let err = refused_serve(&["--listen", "127.0.0.1:0", "--history-linger-ms", linger]);
        assert!(
            err.contains(&format!("--history-linger-ms {linger}")),
            "{err}"
        );
    }
}

#[test]
fn serve_refuses_client_and_queue_settings_outside_their_ranges() {
    for (flag, value) in [
        ("--client-timeout-secs", "0"),
        ("--client-timeout-secs", "3601"),
        ("--history-queue-records", "63"),
        ("--history-queue-records", "1048577"),
    ] {
        let err = refused_serve(&["--listen", "127.0.0.1:0", flag, value]);
        assert!(err.contains(&format!("{flag} {value}")), "{err}");
    }
}

/// The scheduling policy (`/proc`'s field 41) of the history writer's thread in process `pid`.
fn history_writer_policy(pid: u32) -> Option<u32> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "toolgate-histor" {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after the command's closing parenthesis start at field 3.
            let rest = stat.rsplit_once(')')?.1;
            return rest.split_whitespace().nth(41 - 3)?.parse().ok();
        }
    }
    None
}

/// The history writer runs in Linux's idle class (`SCHED_IDLE`, 5) unless
/// `--history-writer-normal-priority` (or its variable) keeps it at normal priority (0).
#[tokio::test]
async fn the_history_writer_runs_in_the_idle_class_unless_told_otherwise() {
    for (extra, envs, want) in [
        (&[][..], &[][..], 5),
        (&["--history-writer-normal-priority"][..], &[][..], 0),
        (
            &[][..],
            &[("TOOLGATE_HISTORY_WRITER_NORMAL_PRIORITY", "true")][..],
            0,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = spawn_serve(dir.path(), extra, envs);
        wait_healthy(&p).await;
        // A history read waits for the writer's loop (its class is set before the loop begins).
        assert_eq!(get(&p.base, "/v1/calls").await.0, 200);
        let pid = p.child.id();
        let policy = eventually(10, || async move { history_writer_policy(pid) }).await;
        assert_eq!(policy, want, "{extra:?} {envs:?}");
        let mut p = p;
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}

#[test]
fn validate_lists_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    w("a_syntax.toml", "[tool\nname = ");
    w(
        "b_fields.toml",
        r#"
[tool]
name = "bad name"
[webhook]
name = "X"
method = "GET"
url = "ftp://example.com/{id}"
timeout_ms = 0
[[webhook.body]]
name = "a"
value_type = "dynamic"
"#,
    );
    w(
        "c_unknown.toml",
        "[tool]\nname = \"ok\"\nsurprise = 1\n[webhook]\nname = \"X\"\nmethod = \"GET\"\nurl = \"https://a.example\"\n",
    );
    w(
        "d_dup.toml",
        "[tool]\nname = \"dup\"\n[webhook]\nname = \"X\"\nmethod = \"GET\"\nurl = \"https://a.example\"\n",
    );
    w(
        "e_dup.toml",
        "[tool]\nname = \"dup\"\n[webhook]\nname = \"X\"\nmethod = \"GET\"\nurl = \"https://a.example\"\n",
    );
    w("notes.txt", "ignored");
    let out = bin().arg("validate").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "a_syntax.toml: toml:",
        "b_fields.toml: webhook.url:",
        "b_fields.toml: webhook.timeout_ms:",
        "b_fields.toml: webhook.body[0]:",
        "b_fields.toml: tool.name:",
        "c_unknown.toml: tool.surprise:",
        "e_dup.toml: tool.name: 'dup' is already defined",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // The shipped examples pass.
    let ok = bin()
        .arg("validate")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // And serve refuses to start on the broken directory, listing the errors.
    let data = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--tools-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("b_fields.toml: webhook.url:"));
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn_serve(dir.path(), &[], &[]);
    wait_healthy(&p).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (st, v) = post(
            &p.base,
            "/v1/webhooks",
            json!({"name": format!("K{i}"), "method": "GET", "url": "https://a.example/k"}),
        )
        .await;
        assert_eq!(st, 201);
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let (st, _) = post(&p.base, "/v1/secrets", json!({"name": "k9", "value": "v"})).await;
    assert_eq!(st, 201);
    let mut p = p;
    p.child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
    let _ = p.child.wait();
    let p = spawn_serve(dir.path(), &[], &[]);
    wait_healthy(&p).await;
    for id in &ids {
        assert_eq!(
            get(&p.base, &format!("/v1/webhooks/{id}")).await.0,
            200,
            "{id} lost"
        );
    }
    assert_eq!(
        get(&p.base, "/v1/secrets").await.1["items"][0]["name"],
        "k9"
    );
    let mut p = p;
    let _ = p.child.kill();
    let _ = p.child.wait();
}

#[tokio::test]
async fn env_secrets_reach_upstream_never_logs_and_sigterm_drains_history() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let secret = "ENV-secret-7Hq2";
    let envs = [
        ("TOOLGATE_SECRET_API_TOKEN", secret),
        ("TOOLGATE_LOG", "debug"),
    ];
    let p = spawn_serve(dir.path(), &["--allow-hosts", "127.0.0.1"], &envs);
    wait_healthy(&p).await;
    let (st, w) = post(&p.base, "/v1/webhooks", json!({"name": "Env", "method": "POST", "url": format!("{}/echo", up.base),
        "headers": [{"name": "Authorization", "value_type": "static", "value": "Bearer {{ secret.api_token }}"}],
        "query_params": [{"name": "k", "value_type": "secret", "secret": "api_token"}]}))
    .await;
    assert_eq!(st, 201, "{w}");
    let (st, _) = post(
        &p.base,
        "/v1/tools",
        json!({"name": "env_tool", "webhook_id": w["id"]}),
    )
    .await;
    assert_eq!(st, 201);
    let (st, r) = post(
        &p.base,
        "/v1/tools/env_tool/invoke",
        json!({"arguments": {}}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(r["outcome"], "success", "{r}");
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
    let call_id = r["call_id"].as_str().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let logs = stderr_of(p);
    assert!(
        logs.contains("tool call finished"),
        "logs were captured:\n{logs}"
    );
    assert!(logs.contains("env_tool"));
    assert!(
        !logs.contains(secret) && !logs.contains("7Hq2"),
        "secret in logs:\n{logs}"
    );

    // History written before the graceful stop is there after a restart (without the env secret).
    let p = spawn_serve(dir.path(), &[], &[]);
    wait_healthy(&p).await;
    let (st, rec) = get(&p.base, &format!("/v1/calls/{call_id}")).await;
    assert_eq!(st, 200);
    assert!(!rec.to_string().contains("7Hq2"));
    let mut p = p;
    let _ = p.child.kill();
    let _ = p.child.wait();
}

#[tokio::test]
async fn a_different_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_a = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let key_b = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    let p = spawn_serve(dir.path(), &[], &[("TOOLGATE_MASTER_KEY", key_a)]);
    wait_healthy(&p).await;
    assert!(
        !dir.path().join("master.key").exists(),
        "an env key is not written to disk"
    );
    let mut p = p;
    let _ = p.child.kill();
    let _ = p.child.wait();
    let p = spawn_serve(dir.path(), &[], &[("TOOLGATE_MASTER_KEY", key_b)]);
    let mut p = p;
    let status = tokio::task::spawn_blocking(move || {
        let s = p.child.wait();
        (s, p)
    });
    let (s, p) = tokio::time::timeout(Duration::from_secs(20), status)
        .await
        .expect("exits")
        .unwrap();
    assert!(!s.unwrap().success());
    let err = stderr_of(p);
    assert!(err.contains("master key"), "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn generated_master_key_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = spawn_serve(dir.path(), &[], &[]);
    wait_healthy(&p).await;
    let mode = std::fs::metadata(dir.path().join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut p = p;
    let _ = p.child.kill();
    let _ = p.child.wait();
}

#[tokio::test]
async fn pending_deliveries_resume_after_kill_9() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let ok = Arc::new(AtomicBool::new(false));
    let (hits, successes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let (o, h, su) = (ok.clone(), hits.clone(), successes.clone());
    let app = axum::Router::new().fallback(move || {
        let (o, h, su) = (o.clone(), h.clone(), su.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            if o.load(Ordering::SeqCst) {
                su.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--allow-hosts",
        "127.0.0.1",
        "--event-retry-schedule",
        "0s,2s,2s",
    ];
    let p = spawn_serve(dir.path(), &flags, &[]);
    wait_healthy(&p).await;
    let (st, v) = post(
        &p.base,
        "/v1/subscriptions",
        json!({"name": "r", "url": url, "event_types": ["webhook.created"]}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (st, _) = post(
        &p.base,
        "/v1/webhooks",
        json!({"name": "K", "method": "GET", "url": "https://a.example/k"}),
    )
    .await;
    assert_eq!(st, 201);
    // Killed once the failed first attempt is stored (the receiver seeing it is not enough:
    // the gateway records the attempt after the answer arrives).
    let base = p.base.clone();
    eventually(10, || {
        let base = base.clone();
        async move {
            let (_, v) = get(&base, "/v1/deliveries?status=pending").await;
            let attempts = v["items"][0]["attempts"].as_array().map(Vec::len);
            (attempts == Some(1)).then_some(())
        }
    })
    .await;
    // Seen is not yet durable: the attempt is visible once written and on disk only when the
    // worker's flush returns. A later acknowledged write is flushed by a flush that covers the
    // attempt too, so it marks the point where the kill cannot lose the attempt.
    let (st, v) = post(
        &p.base,
        "/v1/secrets",
        json!({"name": "barrier", "value": "not-an-event"}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let mut p = p;
    p.child.kill().unwrap();
    let _ = p.child.wait();
    assert_eq!(successes.load(Ordering::SeqCst), 0);
    ok.store(true, Ordering::SeqCst);
    let p = spawn_serve(dir.path(), &flags, &[]);
    wait_healthy(&p).await;
    let base = p.base.clone();
    let d = eventually(15, || {
        let base = base.clone();
        async move {
            let (_, v) = get(&base, "/v1/deliveries?status=succeeded").await;
            v["items"].as_array().and_then(|a| a.first().cloned())
        }
    })
    .await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 2, "{d}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        successes.load(Ordering::SeqCst),
        1,
        "delivered exactly once"
    );
    let mut p = p;
    let _ = p.child.kill();
    let _ = p.child.wait();
}

#[tokio::test]
async fn retention_stays_exact_across_kill_9_during_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let cap = ["--history-max-records", "40", "--allow-hosts", "127.0.0.1"];
    let p = spawn_serve(dir.path(), &cap, &[]);
    wait_healthy(&p).await;
    let (st, w) = post(
        &p.base,
        "/v1/webhooks",
        json!({"name": "Kept", "method": "GET", "url": format!("{}/k", up.base)}),
    )
    .await;
    assert_eq!(st, 201, "{w}");
    let (st, _) = post(
        &p.base,
        "/v1/tools",
        json!({"name": "kept", "webhook_id": w["id"]}),
    )
    .await;
    assert_eq!(st, 201);
    // Calls in flight, well past the cap (so every batch prunes), when the process is killed.
    let base = p.base.clone();
    let load = tokio::spawn(async move {
        for _ in 0..400 {
            if post(&base, "/v1/tools/kept/invoke", json!({"arguments": {}}))
                .await
                .0
                != 200
            {
                break;
            }
        }
    });
    eventually(20, || {
        let up = up.clone();
        async move { (up.count() >= 150).then_some(()) }
    })
    .await;
    let mut p = p;
    p.child.kill().expect("SIGKILL");
    let _ = p.child.wait();
    let _ = load.await;

    let p = spawn_serve(dir.path(), &cap, &[]);
    wait_healthy(&p).await;
    let (_, before) = get(&p.base, "/v1/calls?limit=500").await;
    let survived = before["items"].as_array().unwrap().len();
    assert!(survived <= 40, "{survived} records kept over a cap of 40");
    assert!(survived > 0, "the history survived");
    // The count loaded at start is exact: once 40 more calls are recorded, exactly the cap is
    // kept (a count too low would keep more, too high would keep fewer).
    let mut last = String::new();
    for _ in 0..40 {
        let (_, r) = post(&p.base, "/v1/tools/kept/invoke", json!({"arguments": {}})).await;
        last = r["call_id"].as_str().unwrap().to_string();
    }
    let (_, after) = get(&p.base, "/v1/calls?limit=500").await;
    let items = after["items"].as_array().unwrap();
    assert_eq!(items.len(), 40);
    assert_eq!(items[0]["id"], last);
    let mut p = p;
    let _ = p.child.kill();
    let _ = p.child.wait();
}
