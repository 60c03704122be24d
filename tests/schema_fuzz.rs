//! Schema-driven fuzzing: schemathesis (from PyPI, installed here when missing) runs every
//! operation of `/openapi.json` against a real toolgate with a bounded number of examples and
//! checks that nothing answers 5xx, every answer matches its documented schema, and every error
//! is the envelope.
//!
//! The gateway under test reaches no network but the scripted model on loopback
//! (`egress_only_allowed` with an empty allow list): generated webhooks and subscriptions may
//! name any address, and none of them may be contacted.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{FakeLlm, Server, reply};

/// The pinned schemathesis version (its CLI flags are used below).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The schemathesis command (`python3 -m schemathesis.cli`, which works wherever pip put its
/// scripts), installing the pinned version with pip when it is missing.
fn schemathesis() -> Command {
    let works = |python: &str, args: &[&str]| {
        Command::new(python)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| works(p, &["--version"]))
        .expect("schemathesis needs Python 3 with pip: install python3 and python3-pip");
    let cli = ["-m", "schemathesis.cli"];
    if !works(python, &[cli[0], cli[1], "--version"]) {
        let out = Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                SCHEMATHESIS,
            ])
            .output()
            .expect("run pip");
        assert!(
            out.status.success(),
            "could not install {SCHEMATHESIS} from PyPI (pip install {SCHEMATHESIS}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut cmd = Command::new(python);
    cmd.args(cli);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_and_no_schema_violations() {
    // A scripted model, so chat routes answer as they would with a real one.
    let llm = FakeLlm::start().await;
    llm.always(200, reply("Noted."));
    let model = llm.base.clone();
    let s = Server::start_with(move |c| {
        c.allow_hosts = Vec::new();
        c.egress_only_allowed = true;
        c.llm_base_url = model;
        c.llm_max_retries = 0;
        c.llm_timeout_secs = 5;
    })
    .await;
    let mut cmd = schemathesis();
    let base = s.base.clone();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        cmd.arg("--no-color")
            .args(["run", &format!("{base}/openapi.json")])
            .args(["--url", &base])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
            ])
            .args(["--max-examples", "12"])
            .args(["--phases", "examples,coverage,fuzzing"])
            // MCP speaks JSON-RPC over streams; its own tests drive it with a real client.
            .args(["--exclude-path-regex", "^/mcp"])
            .args(["--request-timeout", "10"])
            .args(["--workers", "2"])
            .args(["--seed", "42"])
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("join");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "the fuzzing run took {:?}; keep it under 3 minutes",
        started.elapsed()
    );
    // "N generated, N passed": enough cases ran for the run to mean something.
    let generated: usize = report
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(" generated, ")?;
            rest.ends_with(" passed").then(|| n.parse().ok())?
        })
        .unwrap_or(0);
    assert!(
        generated >= 500,
        "only {generated} test cases ran:\n{report}"
    );
}
