//! `toolgate chat`: a terminal conversation with an agent of a running gateway, for trying it out.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

/// Read user lines from stdin, send each turn to `/v1/agents/{agent}/chat`, print tool calls and replies.
pub async fn run(
    base: &str,
    agent: &str,
    token: Option<&str>,
    context: &str,
) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let context: Value =
        serde_json::from_str(context).map_err(|e| format!("--context is not JSON: {e}"))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/v1/agents/{agent}/chat", base.trim_end_matches('/'));
    let mut history: Vec<Value> = Vec::new();
    let stdin = std::io::stdin();
    let interactive = std::io::IsTerminal::is_terminal(&stdin);
    loop {
        if interactive {
            print!("you> ");
            let _ = std::io::stdout().flush();
        }
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Ok(());
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        history.push(json!({"role": "user", "content": line}));
        let mut req = http
            .post(&url)
            .json(&json!({"messages": history, "context": context}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {base}: {e}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| format!("bad answer: {e}"))?;
        if !status.is_success() {
            eprintln!(
                "error {}: {}",
                status.as_u16(),
                body["error"]["message"].as_str().unwrap_or("unknown error")
            );
            history.pop();
            continue;
        }
        for c in body["tool_calls"].as_array().into_iter().flatten() {
            println!(
                "  [tool] {} → {}",
                c["tool"].as_str().unwrap_or("?"),
                c["outcome"].as_str().unwrap_or("?")
            );
        }
        println!("{}> {}", agent, body["reply"].as_str().unwrap_or(""));
        if let Some(msgs) = body["messages"].as_array() {
            history.extend(msgs.iter().cloned());
        }
    }
}
