//! Config as code as a user meets it: the shipped tools and agent load at start, file-loaded
//! definitions are owned by their files, a name defined twice is a start-up error, and edits to
//! `tools/` and `prompts/` apply live.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{FakeLlm, Server, Upstream, eventually, reply};
use serde_json::{Value, json};

fn repo(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
}

fn tool_file(name: &str, url: &str, description: &str) -> String {
    format!(
        r#"[tool]
name = "{name}"
description = "{description}"

[webhook]
name = "{name} hook"
method = "GET"
url = "{url}"
"#
    )
}

async fn openai_names(s: &Server) -> Vec<String> {
    let (_, v) = s.get("/v1/tools/openai").await;
    let mut names: Vec<String> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_shipped_agent_is_loaded_and_answers() {
    let llm = FakeLlm::start().await;
    llm.always(200, reply("Hello from support"));
    let base = llm.base.clone();
    let s = Server::start_with(move |c| {
        c.tools_dir = repo("tools");
        c.prompts_dir = repo("prompts");
        c.llm_base_url = base;
    })
    .await;
    let (st, v) = s.get("/v1/agents").await;
    assert_eq!(st, 200);
    let agent = &v["items"][0];
    assert_eq!(agent["name"], "support", "{v}");
    assert_eq!(agent["managed_by"], "file");
    assert!(
        agent["managed_file"]
            .as_str()
            .unwrap()
            .ends_with("support.toml")
    );
    let (st, r) = s
        .post(
            "/v1/agents/support/chat",
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["reply"], "Hello from support");
    // The model was offered the agent's tools from tools/.
    let offered: Vec<String> = llm.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(offered.contains(&"lookup_order".to_string()), "{offered:?}");
}

#[tokio::test]
async fn file_definitions_refuse_api_edits_and_name_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    std::fs::write(
        tools.join("ping.toml"),
        tool_file("ping", "http://127.0.0.1:9/ping", "Ping"),
    )
    .unwrap();
    let t = tools.clone();
    let s = Server::start_with(move |c| c.tools_dir = t).await;
    let (_, list) = s.get("/v1/tools").await;
    let tool = list["items"][0].clone();
    assert_eq!(tool["managed_by"], "file", "{tool}");
    let id = tool["id"].as_str().unwrap();
    let wid = tool["webhook_id"].as_str().unwrap();
    let (_, hook) = s.get(&format!("/v1/webhooks/{wid}")).await;
    assert_eq!(hook["managed_by"], "file");
    let edits: Vec<(reqwest::Method, String, Option<Value>)> = vec![
        (
            reqwest::Method::PUT,
            format!("/v1/tools/{id}"),
            Some(json!({"name": "ping", "webhook_id": wid})),
        ),
        (reqwest::Method::DELETE, format!("/v1/tools/{id}"), None),
        (
            reqwest::Method::POST,
            format!("/v1/tools/{id}/unlink"),
            None,
        ),
        (
            reqwest::Method::PUT,
            format!("/v1/webhooks/{wid}"),
            Some(json!({"name": "x", "method": "GET", "url": "http://127.0.0.1:9/x"})),
        ),
        (reqwest::Method::DELETE, format!("/v1/webhooks/{wid}"), None),
    ];
    for (m, path, body) in edits {
        let (st, v) = s.send(m.clone(), &path, body).await;
        assert_eq!(st, 409, "{m} {path}: {v}");
        assert_eq!(v["error"]["code"], "managed_by_file");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("ping.toml"),
            "{v}"
        );
    }
    // The API cannot claim the marks for itself.
    let (st, v) = s
        .post(
            "/v1/tools",
            json!({"name": "mine", "managed_by": "file", "managed_file": "x.toml"}),
        )
        .await;
    assert_eq!(st, 422, "{v}");

    // A name defined through the API and then in a file is a start-up error naming both.
    let (st, w) = s
        .post(
            "/v1/webhooks",
            json!({"name": "api hook", "method": "GET", "url": "http://127.0.0.1:9/a"}),
        )
        .await;
    assert_eq!(st, 201);
    s.tool("dup", w["id"].as_str().unwrap()).await;
    let mut config = s.config.clone();
    let mut s = s;
    s.stop().await;
    std::fs::write(
        tools.join("dup.toml"),
        tool_file("dup", "http://127.0.0.1:9/other", "From the file"),
    )
    .unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    // sled's threads let go of the store's lock a moment after the server stops: wait for that
    // (as `Server::launch` does), not for anything else.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let err = loop {
        match toolgate::build_state(config.clone()).await {
            Ok(_) => panic!("start-up must fail"),
            Err(e) => {
                let e = e.to_string();
                if e.contains("could not acquire lock") && std::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                break e;
            }
        }
    };
    assert!(
        err.contains("dup.toml") && err.contains("through the API"),
        "{err}"
    );
}

#[tokio::test]
async fn tools_and_prompts_reload_live() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    let prompts = dir.path().join("prompts");
    std::fs::create_dir(&tools).unwrap();
    std::fs::create_dir(&prompts).unwrap();
    std::fs::write(
        tools.join("alpha.toml"),
        tool_file("alpha", &format!("{}/alpha", up.base), "First"),
    )
    .unwrap();
    let (t, p) = (tools.clone(), prompts.clone());
    let s = Server::start_with(move |c| {
        c.tools_dir = t;
        c.prompts_dir = p;
    })
    .await;
    assert_eq!(openai_names(&s).await, ["alpha"]);

    // Added: callable within a second.
    let start = Instant::now();
    std::fs::write(
        tools.join("beta.toml"),
        tool_file("beta", &format!("{}/beta", up.base), "Second"),
    )
    .unwrap();
    eventually(5, || async {
        (openai_names(&s).await == ["alpha", "beta"]).then_some(())
    })
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let (_, r) = s.invoke("beta", json!({}), json!({})).await;
    assert_eq!(r["outcome"], "success", "{r}");
    assert_eq!(up.last().uri, "/beta");

    // Changed: the new URL is used by the next call.
    std::fs::write(
        tools.join("beta.toml"),
        tool_file("beta", &format!("{}/beta2", up.base), "Second, changed"),
    )
    .unwrap();
    eventually(5, || async {
        let (_, v) = s.get("/v1/tools/openai").await;
        v.to_string().contains("Second, changed").then_some(())
    })
    .await;
    s.invoke("beta", json!({}), json!({})).await;
    assert_eq!(up.last().uri, "/beta2");

    // Broken: refused, the previous definition stays live.
    std::fs::write(
        tools.join("beta.toml"),
        "[tool]\nname = \"beta\"\n[webhook]\nmethod = 1\n",
    )
    .unwrap();
    std::fs::write(
        tools.join("gamma.toml"),
        tool_file("gamma", &format!("{}/gamma", up.base), "Third"),
    )
    .unwrap();
    eventually(5, || async {
        openai_names(&s)
            .await
            .contains(&"gamma".to_string())
            .then_some(())
    })
    .await;
    s.invoke("beta", json!({}), json!({})).await;
    assert_eq!(
        up.last().uri,
        "/beta2",
        "the broken file replaced a live tool"
    );

    // An agent file in prompts/, then its prompt edited: both live.
    std::fs::write(prompts.join("helper.md"), "You help.").unwrap();
    std::fs::write(
        prompts.join("helper.toml"),
        "[agent]\nname = \"helper\"\nprompt = \"helper.md\"\ntools = [\"alpha\"]\n",
    )
    .unwrap();
    eventually(5, || async {
        let (st, _) = s.get("/v1/agents/helper").await;
        (st == 200).then_some(())
    })
    .await;

    // Removed: gone from every list, and its webhook with it. The reload deletes the tool, then
    // the webhooks no tool links any more: two writes, so a reader may see the first alone for
    // a moment (a clean-clone CI run did); both must be gone in the end.
    std::fs::remove_file(tools.join("gamma.toml")).unwrap();
    eventually(5, || async {
        let tool_gone = !openai_names(&s).await.contains(&"gamma".to_string());
        let (_, hooks) = s.get("/v1/webhooks").await;
        (tool_gone && !hooks.to_string().contains("gamma hook")).then_some(())
    })
    .await;
    let (_, hooks) = s.get("/v1/webhooks").await;
    assert!(!hooks.to_string().contains("gamma hook"), "{hooks}");
    assert!(!openai_names(&s).await.contains(&"gamma".to_string()));
    std::fs::remove_file(prompts.join("helper.toml")).unwrap();
    eventually(5, || async {
        let (st, _) = s.get("/v1/agents/helper").await;
        (st == 404).then_some(())
    })
    .await;
}
