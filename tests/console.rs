//! The web console in a real headless Chromium (Playwright driving Debian's Chromium) against a
//! real toolgate and a real upstream: the flow a new user takes, from the empty state to the
//! delete guard, test sends, history and sign-in. `tests/browser/ensure.sh` installs Chromium
//! and Playwright when missing; the flow itself is `tests/browser/console_flow.py`.

mod common;

use std::path::Path;

use common::{FakeLlm, Server, Upstream, reply, tool_calls};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ensure = tokio::process::Command::new("bash")
        .arg(root.join("tests/browser/ensure.sh"))
        .output()
        .await
        .expect("run tests/browser/ensure.sh");
    assert!(
        ensure.status.success(),
        "the browser test needs Chromium and Playwright; tests/browser/ensure.sh could not install them \
         (apt-get install chromium; pip install playwright):\n{}{}",
        String::from_utf8_lossy(&ensure.stdout),
        String::from_utf8_lossy(&ensure.stderr)
    );
    // The chat playground's model: one tool call, then the answer.
    let llm = FakeLlm::start().await;
    llm.push(
        200,
        tool_calls(&[("call_1", "lookup_order", json!({"order_number": "A-7"}))]),
    );
    llm.push(200, reply("Your order A-7 has shipped."));
    let llm_base = llm.base.clone();
    let open = Server::start_with(move |c| {
        c.llm_base_url = llm_base;
        c.llm_api_key = Some("sk-test".into());
    })
    .await;
    let guarded = Server::start_with(|c| c.admin_token = Some("console-admin-token".into())).await;
    let up = Upstream::start().await;
    let (big, _big_dir) = big_gateway().await;
    let shots = root.join("target/console-shots");
    let out = tokio::process::Command::new("python3")
        .arg(root.join("tests/browser/console_flow.py"))
        .env("TOOLGATE_BASE", &open.base)
        .env("TOOLGATE_TOKEN_BASE", &guarded.base)
        .env("TOOLGATE_TOKEN", "console-admin-token")
        .env("UPSTREAM_BASE", &up.base)
        .env("TOOLGATE_BIG_BASE", &big.base)
        .env("SHOTS_DIR", &shots)
        .output()
        .await
        .expect("run the browser flow");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the console flow failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("console flow passed"), "{stdout}");
    // What the browser did reached the real gateway and upstream.
    let (_, calls) = open.get("/v1/calls").await;
    // Test success, test failure, the replay of the success, the chat's tool call.
    let items = calls["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{calls}");
    let (first, replay) = (&items[3], &items[1]);
    assert_eq!(
        replay["arguments"], first["arguments"],
        "a replay sends the same arguments"
    );
    assert_eq!(replay["context"], first["context"], "and the same context");
    assert!(up.count() >= 4);
    assert_eq!(llm.requests().len(), 2);
}

/// The console is served by the gateway itself, small, with a strict Content-Security-Policy.
#[tokio::test]
async fn the_console_is_embedded_small_and_locked_down() {
    let s = Server::start().await;
    let mut total = 0;
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        total += r.bytes().await.unwrap().len();
    }
    assert!(total < 200 * 1024, "first load is {total} bytes");
    let index = s.get_text("/").await;
    assert!(
        !index.contains("http://") && !index.contains("https://"),
        "no CDN: {index}"
    );
}

/// A gateway holding 10,000 webhooks, written straight into its store before it starts.
async fn big_gateway() -> (Server, tempfile::TempDir) {
    use toolgate::store::DefinitionStore;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        std::fs::create_dir_all(&data).unwrap();
        let key = toolgate::store::seal::load_or_create_key(&data, None).unwrap();
        let store = std::sync::Arc::new(toolgate::store::SledStore::open(&data, &key).unwrap());
        for chunk in (0..10_000).collect::<Vec<_>>().chunks(500) {
            let writes = chunk.iter().map(|i| {
                let store = store.clone();
                let spec =
                    serde_json::from_value(json!({"name": format!("hook-{i:05}"), "method": "GET",
                    "url": format!("http://127.0.0.1:9/items/{i}")}))
                    .unwrap();
                async move { store.create_webhook(spec, true).await.unwrap() }
            });
            futures::future::join_all(writes).await;
        }
    }
    let server = Server::start_with(move |c| c.data_dir = data.clone()).await;
    (server, dir)
}
