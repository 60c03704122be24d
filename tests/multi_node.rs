//! Several real toolgate processes on one PostgreSQL database: a change through one node is used
//! by the other within a second, delete guards hold across nodes, MCP sessions move between
//! nodes, each event is delivered once by whichever node claims it (also when one is killed
//! mid-delivery), config files applied by two nodes starting together give one copy, and a node
//! that loses its database says so and recovers by itself.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use common::pg::TestDb;
use common::{Upstream, client, eventually, free_port};
use serde_json::{Value, json};

const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// One toolgate process.
struct Node {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Wait (5 s at most) until this node can call `tool`: it has reached its catalog.
    async fn until_it_invokes(&self, tool: &str) {
        eventually(5, || async {
            let (st, _) = self
                .post(
                    &format!("/v1/tools/{tool}/invoke"),
                    json!({"arguments": {}}),
                )
                .await;
            (st == 200).then_some(())
        })
        .await;
    }

    /// Start a node on `db_url` with its own data dir; `files` is the tools/prompts root.
    fn spawn(db_url: &str, files: Option<&Path>, extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (tools, prompts): (PathBuf, PathBuf) = match files {
            Some(root) => (root.join("tools"), root.join("prompts")),
            None => (dir.path().join("no-tools"), dir.path().join("no-prompts")),
        };
        let mut c = Command::new(env!("CARGO_BIN_EXE_toolgate"));
        for (k, _) in std::env::vars() {
            if k.starts_with("TOOLGATE_") {
                c.env_remove(k);
            }
        }
        c.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--tools-dir")
            .arg(tools)
            .arg("--prompts-dir")
            .arg(prompts)
            .args(["--database-url", db_url, "--allow-hosts", "127.0.0.1"])
            .args(extra)
            .env("TOOLGATE_MASTER_KEY", MASTER_KEY)
            .env("TOOLGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Node {
            child: c.spawn().expect("spawn toolgate"),
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn ready(self) -> Node {
        let url = format!("{}/healthz", self.base);
        eventually(30, || {
            let url = url.clone();
            async move {
                client()
                    .get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        self
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = client().request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

async fn two_nodes(db: &TestDb) -> (Node, Node) {
    let (a, b) = (
        Node::spawn(&db.url, None, &[]),
        Node::spawn(&db.url, None, &[]),
    );
    (a.ready().await, b.ready().await)
}

#[tokio::test]
async fn a_change_through_one_node_is_used_by_the_other_within_a_second() {
    let db = TestDb::create().await;
    let (a, b) = two_nodes(&db).await;
    let up = Upstream::start().await;
    let (st, secret) = a
        .post(
            "/v1/secrets",
            json!({"name": "api_key", "value": "first-value"}),
        )
        .await;
    assert_eq!(st, 201, "{secret}");
    let (st, hook) = a
        .post(
            "/v1/webhooks",
            json!({"name": "Echo", "method": "GET", "url": format!("{}/echo", up.base),
                   "headers": [{"name": "X-Key", "value_type": "secret", "secret": "api_key"}]}),
        )
        .await;
    assert_eq!(st, 201, "{hook}");
    let (st, t) = a
        .post(
            "/v1/tools",
            json!({"name": "echo", "webhook_id": hook["id"]}),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let made = Instant::now();
    b.until_it_invokes("echo").await;
    let seen_after = made.elapsed();
    assert!(
        seen_after <= Duration::from_secs(1),
        "node B used the new tool only after {seen_after:?}"
    );
    assert_eq!(up.last().header("x-key"), Some("first-value"));

    // A secret rotated through A is what B sends next.
    let (st, _) = a
        .put(
            &format!("/v1/secrets/{}", secret["id"].as_str().unwrap()),
            json!({"value": "second-value"}),
        )
        .await;
    assert_eq!(st, 200);
    eventually(2, || async {
        b.post("/v1/tools/echo/invoke", json!({"arguments": {}}))
            .await;
        (up.last().header("x-key") == Some("second-value")).then_some(())
    })
    .await;

    // A tool deleted through B is gone on A.
    let (st, _) = b
        .delete(&format!("/v1/tools/{}", t["id"].as_str().unwrap()))
        .await;
    assert_eq!(st, 204);
    eventually(2, || async {
        let (st, _) = a
            .post("/v1/tools/echo/invoke", json!({"arguments": {}}))
            .await;
        (st == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_webhook_delete_guard_holds_against_a_link_through_the_other_node() {
    let db = TestDb::create().await;
    let (a, b) = two_nodes(&db).await;
    for i in 0..10 {
        let (_, hook) = a
            .post(
                "/v1/webhooks",
                json!({"name": format!("w{i}"), "method": "GET", "url": "http://127.0.0.1:9/x"}),
            )
            .await;
        let id = hook["id"].as_str().unwrap().to_string();
        let path = format!("/v1/webhooks/{id}");
        let ((del, _), (link, _)) = tokio::join!(
            a.delete(&path),
            b.post(
                "/v1/tools",
                json!({"name": format!("t{i}"), "webhook_id": id})
            )
        );
        assert!(
            matches!((del, link), (204, 422) | (409, 201)),
            "round {i}: delete {del}, link {link}"
        );
    }
    let (_, tools) = b.get("/v1/tools").await;
    for t in tools["items"].as_array().unwrap() {
        let (st, _) = a
            .get(&format!(
                "/v1/webhooks/{}",
                t["webhook_id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(st, 200, "tool {} links a deleted webhook", t["name"]);
    }
}

/// The JSON-RPC message with `id` in an MCP response (plain JSON or an SSE stream).
fn rpc_result(body: &str, id: u64) -> Value {
    let candidates: Vec<Value> = if body.trim_start().starts_with('{') {
        serde_json::from_str(body).into_iter().collect()
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    candidates
        .into_iter()
        .find(|m: &Value| m["id"] == json!(id))
        .unwrap_or_else(|| panic!("no answer to request {id} in {body}"))
}

async fn mcp_post(node: &Node, session: Option<&str>, msg: Value) -> (u16, HeaderMap, String) {
    let mut r = client()
        .post(format!("{}/mcp", node.base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&msg);
    if let Some(s) = session {
        r = r.header("mcp-session-id", s);
    }
    let resp = r.send().await.expect("mcp request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

/// One MCP session whose requests alternate between the nodes, as a round-robin load balancer
/// without sticky sessions would send them.
#[tokio::test]
async fn one_mcp_session_is_served_by_either_node() {
    let db = TestDb::create().await;
    let (a, b) = two_nodes(&db).await;
    let up = Upstream::start().await;
    let (_, hook) = a
        .post(
            "/v1/webhooks",
            json!({"name": "Echo", "method": "GET", "url": format!("{}/echo", up.base)}),
        )
        .await;
    a.post(
        "/v1/tools",
        json!({"name": "echo", "webhook_id": hook["id"]}),
    )
    .await;
    // The tool reaches B's catalog through the change feed, a moment after A stored it: the
    // session starts once both nodes have it, so that every request may go to either.
    b.until_it_invokes("echo").await;
    let (st, headers, body) = mcp_post(
        &a,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "round-robin-test", "version": "1"}}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(
        rpc_result(&body, 1)["result"]["serverInfo"].is_object(),
        "{body}"
    );
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_string();
    let (st, _, body) = mcp_post(
        &b,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(st == 202 || st == 200, "{st} {body}");
    let nodes = [&b, &a, &b, &a];
    for (i, node) in nodes.iter().enumerate() {
        let id = 2 + i as u64;
        let (st, _, body) = mcp_post(
            node,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}}),
        )
        .await;
        assert_eq!(st, 200, "request {id} on {}: {body}", node.base);
        let tools = &rpc_result(&body, id)["result"]["tools"];
        assert_eq!(tools[0]["name"], "echo", "{body}");
    }
    let (st, _, body) = mcp_post(
        &b,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
               "params": {"name": "echo", "arguments": {}}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(rpc_result(&body, 10)["result"]["isError"], false, "{body}");
    assert!(up.count() >= 1);
}

/// An rmcp client on node B hears `tools/list_changed` when a tool is linked through node A.
#[tokio::test]
async fn mcp_sessions_on_the_other_node_hear_list_changed() {
    use rmcp::service::{MaybeSendFuture, NotificationContext};
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::{ClientHandler, RoleClient, ServiceExt};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone, Default)]
    struct Counting(Arc<AtomicUsize>);
    impl ClientHandler for Counting {
        fn on_tool_list_changed(
            &self,
            _ctx: NotificationContext<RoleClient>,
        ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        }
    }

    let db = TestDb::create().await;
    let (a, b) = two_nodes(&db).await;
    let _ = client();
    let counting = Counting::default();
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", b.base));
    let session = counting.clone().serve(transport).await.expect("connect");
    assert!(session.list_all_tools().await.unwrap().is_empty());
    let (_, hook) = a
        .post(
            "/v1/webhooks",
            json!({"name": "Echo", "method": "GET", "url": "http://127.0.0.1:9/echo"}),
        )
        .await;
    a.post(
        "/v1/tools",
        json!({"name": "echo", "webhook_id": hook["id"]}),
    )
    .await;
    eventually(5, || async {
        (counting.0.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    // The webhook and the tool may arrive as two changes: the list has the tool by the time the
    // notifications have settled.
    let tools = eventually(5, || async {
        let t = session.list_all_tools().await.unwrap();
        (t.len() == 1).then_some(t)
    })
    .await;
    assert_eq!(tools[0].name, "echo");
    let _ = session.cancel().await;
}

/// Records every delivery it receives: the event id and when.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Receiver {
    async fn start(delay: Duration) -> (Receiver, String) {
        let rec = Receiver::default();
        let r = rec.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let r = r.clone();
            async move {
                tokio::time::sleep(delay).await;
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                    r.got.lock().unwrap().push((id.to_string(), Instant::now()));
                }
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (rec, url)
    }

    fn counts(&self) -> HashMap<String, Vec<Instant>> {
        let mut m: HashMap<String, Vec<Instant>> = HashMap::new();
        for (id, at) in self.got.lock().unwrap().iter() {
            m.entry(id.clone()).or_default().push(*at);
        }
        m
    }
}

/// Create `n` webhooks, alternating between the nodes, 16 at a time: `n` `webhook.created` events.
async fn make_events(nodes: &[&Node], n: usize) {
    use futures::StreamExt;
    let results: Vec<u16> = futures::stream::iter(0..n)
        .map(|i| {
            let node = nodes[i % nodes.len()];
            async move {
                node.post(
                    "/v1/webhooks",
                    json!({"name": format!("w{i}"), "method": "GET", "url": "http://127.0.0.1:9/x"}),
                )
                .await
                .0
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(results.iter().all(|s| *s == 201), "{results:?}");
}

async fn subscribe(node: &Node, url: &str) {
    let (st, body) = node
        .post(
            "/v1/subscriptions",
            json!({"name": "recorder", "url": url, "event_types": ["webhook.created"]}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
}

#[tokio::test]
async fn a_thousand_events_with_two_nodes_are_each_received_once() {
    let db = TestDb::create().await;
    let (a, b) = two_nodes(&db).await;
    let (rec, url) = Receiver::start(Duration::ZERO).await;
    subscribe(&a, &url).await;
    make_events(&[&a, &b], 1000).await;
    eventually(120, || async { (rec.counts().len() >= 1000).then_some(()) }).await;
    // Let any duplicate arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = rec.counts();
    assert_eq!(counts.len(), 1000);
    let twice: Vec<_> = counts.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    // Both nodes took part: each node's history of deliveries is in the shared log.
    let (_, page) = b.get("/v1/deliveries?status=succeeded&limit=5").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5), "{page}");
}

#[tokio::test]
async fn a_node_killed_mid_delivery_loses_nothing_and_resends_nothing_answered() {
    let db = TestDb::create().await;
    // A short attempt timeout makes the lease 5 s, so the survivor takes over quickly.
    let extra = ["--event-timeout-ms", "1000"];
    let a = Node::spawn(&db.url, None, &extra).ready().await;
    let mut b = Node::spawn(&db.url, None, &extra).ready().await;
    let (rec, url) = Receiver::start(Duration::from_millis(20)).await;
    subscribe(&a, &url).await;
    make_events(&[&a, &b], 300).await;
    eventually(60, || async { (rec.counts().len() >= 60).then_some(()) }).await;
    b.child.kill().expect("kill -9 node B");
    let killed_at = Instant::now();
    let _ = b.child.wait();
    eventually(60, || async { (rec.counts().len() >= 300).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = rec.counts();
    assert_eq!(counts.len(), 300, "events lost");
    for (id, times) in &counts {
        if times.len() > 1 {
            // Only a delivery that was in flight on the killed node may arrive again: its 2xx
            // was never recorded. Anything answered before that stays answered.
            assert_eq!(times.len(), 2, "{id} delivered {} times", times.len());
            assert!(
                times[0] <= killed_at + Duration::from_millis(50) && times[1] > killed_at,
                "{id} delivered twice, not across the kill"
            );
        }
    }
    let resent = counts.values().filter(|t| t.len() > 1).count();
    assert!(resent <= 32, "{resent} resent: more than one claim batch");
}

/// Two nodes starting at once with the same `tools/` and `prompts/` give one copy of each.
#[tokio::test]
async fn two_nodes_starting_together_apply_config_files_once() {
    let db = TestDb::create().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let a = Node::spawn(&db.url, Some(root), &[]);
    let b = Node::spawn(&db.url, Some(root), &[]);
    let (a, b) = (a.ready().await, b.ready().await);
    let shipped = std::fs::read_dir(root.join("tools")).unwrap().count();
    for node in [&a, &b] {
        let (_, tools) = node.get("/v1/tools").await;
        assert_eq!(tools["items"].as_array().unwrap().len(), shipped, "{tools}");
        let (_, hooks) = node.get("/v1/webhooks").await;
        assert_eq!(hooks["items"].as_array().unwrap().len(), shipped, "{hooks}");
        let (_, agents) = node.get("/v1/agents").await;
        assert_eq!(agents["items"].as_array().unwrap().len(), 1, "{agents}");
    }
}

/// A TCP proxy in front of PostgreSQL that the test can cut and restore, standing in for a
/// database restart without touching the shared server.
struct DbProxy {
    addr: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DbProxy {
    async fn start(addr: Option<std::net::SocketAddr>) -> DbProxy {
        let listener = match addr {
            Some(a) => {
                let mut tries = 0;
                loop {
                    match tokio::net::TcpListener::bind(a).await {
                        Ok(l) => break l,
                        Err(e) if tries < 50 => {
                            tries += 1;
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => panic!("rebind proxy: {e}"),
                    }
                }
            }
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        DbProxy {
            addr,
            task: Some(task),
        }
    }

    /// Close the listener and every open connection.
    fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[tokio::test]
async fn a_node_that_loses_its_database_reports_it_keeps_calling_and_recovers() {
    let db = TestDb::create().await;
    let mut proxy = DbProxy::start(None).await;
    let node = Node::spawn(&db.url_via(proxy.addr), None, &[])
        .ready()
        .await;
    let up = Upstream::start().await;
    node.post(
        "/v1/secrets",
        json!({"name": "api_key", "value": "cached-value"}),
    )
    .await;
    let (_, hook) = node
        .post(
            "/v1/webhooks",
            json!({"name": "Echo", "method": "GET", "url": format!("{}/echo", up.base),
                   "headers": [{"name": "X-Key", "value_type": "secret", "secret": "api_key"}]}),
        )
        .await;
    node.post(
        "/v1/tools",
        json!({"name": "echo", "webhook_id": hook["id"]}),
    )
    .await;
    let (st, _) = node
        .post("/v1/tools/echo/invoke", json!({"arguments": {}}))
        .await;
    assert_eq!(st, 200);

    proxy.cut();
    let (st, body) = eventually(15, || async {
        let r = node.get("/healthz").await;
        (r.0 == 503).then_some(r)
    })
    .await;
    assert_eq!(st, 503);
    common::assert_error(&body, "store_unavailable");
    // Calls to cached tools keep working (secret included); writes fail with a clear 503.
    let (st, res) = node
        .post("/v1/tools/echo/invoke", json!({"arguments": {}}))
        .await;
    assert_eq!(st, 200, "{res}");
    assert_eq!(up.last().header("x-key"), Some("cached-value"));
    let (st, body) = node
        .post(
            "/v1/webhooks",
            json!({"name": "During", "method": "GET", "url": "http://127.0.0.1:9/x"}),
        )
        .await;
    assert_eq!(st, 503, "{body}");
    common::assert_error(&body, "store_unavailable");

    let _proxy = DbProxy::start(Some(proxy.addr)).await;
    eventually(20, || async {
        (node.get("/healthz").await.0 == 200).then_some(())
    })
    .await;
    let (st, body) = node
        .post(
            "/v1/webhooks",
            json!({"name": "After", "method": "GET", "url": "http://127.0.0.1:9/x"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
}

/// `toolgate mcp` (stdio) runs beside `serve` on the same database: it sees what `serve` holds
/// and calls it.
#[tokio::test]
async fn stdio_mcp_runs_beside_serve_on_the_shared_store() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
    let db = TestDb::create().await;
    let node = Node::spawn(&db.url, None, &[]).ready().await;
    let up = Upstream::start().await;
    let (_, hook) = node
        .post(
            "/v1/webhooks",
            json!({"name": "Echo", "method": "GET", "url": format!("{}/echo", up.base)}),
        )
        .await;
    node.post(
        "/v1/tools",
        json!({"name": "echo", "webhook_id": hook["id"]}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = db.url.clone();
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolgate")).configure(|c| {
        c.arg("mcp")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--tools-dir")
            .arg(dir.path().join("no-tools"))
            .arg("--prompts-dir")
            .arg(dir.path().join("no-prompts"))
            .args(["--database-url", &url, "--allow-hosts", "127.0.0.1"])
            .env("TOOLGATE_MASTER_KEY", MASTER_KEY)
            .env_remove("TOOLGATE_ADMIN_TOKEN")
            .stderr(Stdio::null());
    });
    let mcp =
        ().serve(TokioChildProcess::new(cmd).expect("spawn"))
            .await
            .expect("initialize over stdio");
    let tools = mcp.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    let r = mcp
        .call_tool(CallToolRequestParams::new("echo"))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(up.count(), 1);
    // The stdio process's call is in the shared history, seen through `serve`.
    eventually(5, || async {
        let (_, calls) = node.get("/v1/calls?source=mcp").await;
        (calls["items"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    mcp.cancel().await.ok();
}

/// A key made through one node works on the other; revoked through that other node, it is
/// refused by the first on its next request.
#[tokio::test]
async fn a_key_revoked_through_one_node_is_refused_by_the_other() {
    let db = TestDb::create().await;
    let (a, b) = two_nodes(&db).await;
    let (st, k) = a
        .post("/v1/keys", json!({"name": "bot", "role": "viewer"}))
        .await;
    assert_eq!(st, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    let with_key = |node: &Node| {
        client()
            .get(format!("{}/v1/webhooks", node.base))
            .bearer_auth(&key)
            .send()
    };
    eventually(2, || async {
        let r = with_key(&b).await.ok()?;
        (r.status().as_u16() == 200).then_some(())
    })
    .await;
    let (st, _) = b
        .delete(&format!("/v1/keys/{}", k["id"].as_str().unwrap()))
        .await;
    assert_eq!(st, 204);
    eventually(2, || async {
        let r = with_key(&a).await.ok()?;
        (r.status().as_u16() == 401).then_some(())
    })
    .await;
}
