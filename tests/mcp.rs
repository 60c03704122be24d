//! MCP over streamable HTTP (rmcp's client) and over stdio (the built binary as a child process).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Server, Upstream, get_hook};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{MaybeSendFuture, NotificationContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Counting {
    changed: Arc<AtomicUsize>,
}

impl ClientHandler for Counting {
    fn on_tool_list_changed(
        &self,
        _ctx: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.changed.fetch_add(1, Ordering::SeqCst);
        std::future::ready(())
    }
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("object expected"),
    }
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
}

async fn setup() -> (Server, Upstream, String) {
    let s = Server::start_with(|c| c.admin_token = Some("adm-token".into())).await;
    let up = Upstream::start().await;
    let mut def = get_hook("Order", &format!("{}/orders/{{order_number}}", up.base));
    def["path_params"] =
        json!([{"name": "order_number", "description": "Order number", "value_type": "dynamic"}]);
    def["headers"] =
        json!([{"name": "X-Tenant", "value_type": "context", "value": "tenant", "required": true}]);
    let wid = s.webhook(def).await;
    s.tool("lookup_order", &wid).await;
    let other = s
        .webhook(get_hook("Other", &format!("{}/other", up.base)))
        .await;
    s.tool("other_tool", &other).await;
    (s, up, wid)
}

fn transport(
    s: &Server,
    path: &str,
    context: Option<&str>,
) -> StreamableHttpClientTransport<reqwest::Client> {
    let _ = common::client();
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(format!("{}{path}", s.base))
        .auth_header("adm-token");
    if let Some(c) = context {
        let mut h = HashMap::new();
        h.insert(
            reqwest::header::HeaderName::from_static("x-toolgate-context"),
            reqwest::header::HeaderValue::from_str(c).unwrap(),
        );
        cfg = cfg.custom_headers(h);
    }
    StreamableHttpClientTransport::from_config(cfg)
}

#[tokio::test]
async fn streamable_http_lists_calls_and_notifies() {
    let (s, up, wid) = setup().await;
    let handler = Counting::default();
    let changed = handler.changed.clone();
    let client = handler
        .serve(transport(&s, "/mcp", Some(r#"{"tenant": "t-77"}"#)))
        .await
        .expect("initialize");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("toolgate")
    );

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, vec!["lookup_order", "other_tool"]);
    let (_, list) = s.get("/v1/tools").await;
    let id = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "lookup_order")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, def) = s.get(&format!("/v1/tools/{id}/schema")).await;
    assert_eq!(
        Value::Object((*tools[0].input_schema).clone()),
        def["function"]["parameters"]
    );
    assert_eq!(
        tools[0].description.as_deref(),
        def["function"]["description"].as_str()
    );

    let r = client
        .call_tool(
            CallToolRequestParams::new("lookup_order")
                .with_arguments(args(json!({"order_number": "M-1"}))),
        )
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(up.last().uri, "/orders/M-1");
    assert_eq!(
        up.last().header("x-tenant"),
        Some("t-77"),
        "context from the session header"
    );
    assert!(text(&r).contains("/orders/M-1"));
    assert_eq!(r.structured_content.as_ref().unwrap()["uri"], "/orders/M-1");
    let (_, calls) = s.get("/v1/calls?source=mcp").await;
    assert_eq!(calls["items"].as_array().unwrap().len(), 1);

    let before = up.count();
    let r = client
        .call_tool(
            CallToolRequestParams::new("lookup_order")
                .with_arguments(args(json!({"order_number": {"x": 1}}))),
        )
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("arguments are invalid"), "{}", text(&r));
    let r = client
        .call_tool(CallToolRequestParams::new("nope"))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert_eq!(up.count(), before, "refused calls send nothing");

    let mut def = get_hook("Order v2", &format!("{}/orders/{{order_number}}", up.base));
    def["path_params"] = json!([{"name": "order_number", "value_type": "dynamic"}]);
    let (st, _) = s.put(&format!("/v1/webhooks/{wid}"), def).await;
    assert_eq!(st, 200);
    common::eventually(10, || {
        let c = changed.clone();
        async move { (c.load(Ordering::SeqCst) > 0).then_some(()) }
    })
    .await;
    client.cancel().await.ok();
}

#[tokio::test]
async fn agent_endpoint_and_auth() {
    let (s, _up, _) = setup().await;
    let (st, v) = s
        .post(
            "/v1/agents",
            json!({"name": "support", "tools": ["lookup_order"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let client = ().serve(transport(&s, "/mcp/agents/support", None)).await.expect("initialize");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(
        tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>(),
        vec!["lookup_order"]
    );
    let r = client
        .call_tool(CallToolRequestParams::new("other_tool"))
        .await
        .unwrap();
    assert_eq!(
        r.is_error,
        Some(true),
        "tools outside the agent are not callable there"
    );
    let r = client
        .call_tool(
            CallToolRequestParams::new("lookup_order")
                .with_arguments(args(json!({"order_number": "A-7"}))),
        )
        .await
        .unwrap();
    // Refused for the missing context, but recorded: the history says which agent's endpoint
    // made the call.
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let (_, calls) = s.get("/v1/calls?source=mcp").await;
    assert_eq!(calls["items"][0]["agent"], "support", "{calls}");
    client.cancel().await.ok();

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    for token in [None, Some("wrong")] {
        let mut req = s
            .http
            .post(format!("{}/mcp", s.base))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

#[tokio::test]
async fn stdio_server_from_the_binary() {
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
    let s = Server::start().await;
    let up = Upstream::start().await;
    let mut def = get_hook("Order", &format!("{}/orders/{{order_number}}", up.base));
    def["path_params"] = json!([{"name": "order_number", "value_type": "dynamic"}]);
    let wid = s.webhook(def).await;
    s.tool("lookup_order", &wid).await;
    let data = s.data_dir();
    let tools_dir = s.config.tools_dir.clone();
    let prompts_dir = s.config.prompts_dir.clone();
    let mut s = s;
    s.stop().await; // stdio mode opens the data dir itself
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolgate")).configure(|c| {
        c.arg("mcp")
            .arg("--data-dir")
            .arg(&data)
            .arg("--tools-dir")
            .arg(&tools_dir)
            .arg("--prompts-dir")
            .arg(&prompts_dir)
            .args(["--allow-hosts", "127.0.0.1", "--context", r#"{"k": 1}"#])
            .env_remove("TOOLGATE_ADMIN_TOKEN")
            .stderr(std::process::Stdio::null());
    });
    let client =
        ().serve(TokioChildProcess::new(cmd).expect("spawn"))
            .await
            .expect("initialize over stdio");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "lookup_order");
    let r = client
        .call_tool(
            CallToolRequestParams::new("lookup_order")
                .with_arguments(args(json!({"order_number": "S-5"}))),
        )
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(up.last().uri, "/orders/S-5");
    let r = client
        .call_tool(CallToolRequestParams::new("lookup_order"))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "missing argument is a tool error");
    client.cancel().await.ok();
}

#[tokio::test]
async fn echoed_secrets_reach_neither_tool_results_nor_debug_logs() {
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    std::fs::write(
        tools.join("echo.toml"),
        format!(
            "[tool]\nname = \"echo\"\n[webhook]\nname = \"Echo\"\nmethod = \"POST\"\nurl = \"{}/echo\"\n\
             body = [{{ name = \"key\", value_type = \"secret\", secret = \"api_pw\" }},\n\
                     {{ name = \"note\", value_type = \"dynamic\" }}]\n",
            up.base
        ),
    )
    .unwrap();
    let secret = "hunter2\"x-log-check";
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolgate")).configure(|c| {
        c.arg("mcp")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--tools-dir")
            .arg(&tools)
            .arg("--prompts-dir")
            .arg(dir.path().join("prompts"))
            .args(["--allow-hosts", "127.0.0.1"])
            .env_remove("TOOLGATE_ADMIN_TOKEN")
            .env("TOOLGATE_SECRET_API_PW", secret)
            .env("TOOLGATE_LOG", "trace");
    });
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(log)
        .spawn()
        .expect("spawn");
    let client = ().serve(transport).await.expect("initialize over stdio");
    let r = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args(json!({"note": "n"}))))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(
        up.last().json()["key"],
        secret,
        "the upstream got the secret"
    );
    let shown = text(&r);
    assert!(shown.contains("[REDACTED]"), "{shown}");
    client.cancel().await.ok();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("tool call finished"),
        "trace logs were captured: {logs}"
    );
    for piece in ["hunter2", "x-log-check", "log-ch"] {
        assert!(!shown.contains(piece), "{piece} in result: {shown}");
        assert!(!logs.contains(piece), "{piece} in logs:\n{logs}");
    }
}

#[tokio::test]
async fn input_schema_carries_enums_arrays_and_objects() {
    let s = Server::start_with(|c| c.admin_token = Some("adm-token".into())).await;
    let up = Upstream::start().await;
    let wid = s
        .webhook(
            json!({"name": "Rich", "method": "POST", "url": format!("{}/rich", up.base),
            "body": [{"name": "status", "value_type": "dynamic", "enum": ["open", "closed"]},
                     {"name": "items", "data_type": "array", "value_type": "dynamic",
                      "schema": {"type": "array", "items": {"type": "object",
                          "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}}]}),
        )
        .await;
    s.tool("rich", &wid).await;
    let client = ().serve(transport(&s, "/mcp", None)).await.expect("initialize");
    let tools = client.list_all_tools().await.unwrap();
    let schema = Value::Object((*tools[0].input_schema).clone());
    assert_eq!(
        schema["properties"]["status"]["enum"],
        json!(["open", "closed"])
    );
    assert_eq!(
        schema["properties"]["items"]["items"]["required"],
        json!(["sku"])
    );
    let r = client
        .call_tool(CallToolRequestParams::new("rich").with_arguments(args(
            json!({"status": "open", "items": "[{\"sku\": \"A\"}]"}),
        )))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(
        up.last().json(),
        json!({"status": "open", "items": [{"sku": "A"}]})
    );
    client.cancel().await.ok();
}
