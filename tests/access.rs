//! Access control: API keys and roles on every route (a matrix over the whole router), tools
//! authorized for selected keys on every surface, tenant-bound context, rate limits, revocation
//! while an MCP session is open, and the audit log.

mod common;

use std::collections::BTreeSet;

use common::{FakeLlm, Server, Upstream, get_hook, reply, tool_calls};
use serde_json::{Value, json};

const ADMIN: &str = "bootstrap-admin-token";

async fn server_with_llm(llm: Option<&FakeLlm>) -> Server {
    let base = llm.map(|l| l.base.clone());
    Server::start_with(move |c| {
        c.admin_token = Some(ADMIN.into());
        if let Some(b) = base {
            c.llm_base_url = b;
            c.llm_api_key = Some("sk-test".into());
            c.llm_max_retries = 0;
        }
    })
    .await
}

/// Send with `Authorization: Bearer <token>`.
async fn send(
    s: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut r = s
        .http
        .request(method, format!("{}{path}", s.base))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

async fn get(s: &Server, token: &str, path: &str) -> (u16, Value) {
    let (st, v, _) = send(s, token, reqwest::Method::GET, path, None).await;
    (st, v)
}

async fn post(s: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    let (st, v, _) = send(s, token, reqwest::Method::POST, path, Some(body)).await;
    (st, v)
}

/// Create a key through the admin token; returns (id, key).
async fn key(s: &Server, spec: Value) -> (String, String) {
    let (st, v) = post(s, ADMIN, "/v1/keys", spec).await;
    assert_eq!(st, 201, "{v}");
    let k = v["key"].as_str().expect("the key, once").to_string();
    assert!(k.starts_with("tg_"));
    (v["id"].as_str().unwrap().to_string(), k)
}

/// Which roles may use a route: written out here, independently of the server's table, so a
/// route added without a decision fails this test.
fn allowed(method: &str, path: &str) -> BTreeSet<&'static str> {
    let set = |r: &[&'static str]| r.iter().copied().collect::<BTreeSet<_>>();
    let read = method == "get";
    match path {
        "/v1/keys" | "/v1/keys/{id}" | "/v1/keys/{id}/explain" | "/v1/audit" => set(&["admin"]),
        "/v1/secrets/{id}/values/{subject}" => set(&["admin", "editor"]),
        "/v1/tools/openai"
        | "/v1/tools/{id}/invoke"
        | "/v1/agents/{id}/chat"
        | "/v1/chat/completions"
        | "/mcp"
        | "/mcp/agents/{name}" => set(&["admin", "invoker"]),
        "/v1/webhooks/{id}/test" | "/v1/subscriptions/{id}/test" | "/v1/deliveries/{id}/retry" => {
            set(&["admin", "editor"])
        }
        "/v1/calls" | "/v1/calls/{id}" => set(&["admin", "editor", "viewer"]),
        "/v1/secrets"
        | "/v1/secrets/{id}"
        | "/v1/secrets/{id}/values"
        | "/v1/webhooks"
        | "/v1/webhooks/{id}"
        | "/v1/tools"
        | "/v1/tools/{id}"
        | "/v1/tools/{id}/schema"
        | "/v1/tools/{id}/unlink"
        | "/v1/agents"
        | "/v1/agents/{id}"
        | "/v1/subscriptions"
        | "/v1/subscriptions/{id}"
        | "/v1/subscriptions/{id}/rotate-secret"
        | "/v1/deliveries"
        | "/v1/deliveries/{id}"
        | "/v1/openapi/import" => {
            if read {
                set(&["admin", "editor", "viewer"])
            } else {
                set(&["admin", "editor"])
            }
        }
        other => panic!(
            "{method} {other} has no entry in the role × route matrix: decide who may use it"
        ),
    }
}

/// Every route of the router (the OpenAPI document, itself checked complete against the
/// router's source by `openapi_doc`), with every role: refused with 403 `forbidden` naming the
/// permission exactly when the matrix says so, never 401 with a valid key.
#[tokio::test]
async fn every_route_answers_each_role_as_the_matrix_says() {
    let s = server_with_llm(None).await;
    let mut keys = Vec::new();
    for role in ["admin", "editor", "invoker", "viewer"] {
        let (_, k) = key(&s, json!({"name": format!("{role}-key"), "role": role})).await;
        keys.push((role, k));
    }
    let (_, doc) = s.get("/openapi.json").await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !(path.starts_with("/v1/") || path.starts_with("/mcp")) {
            continue; // /healthz, /metrics, /openapi.json are public
        }
        for method in item.as_object().unwrap().keys() {
            let who = allowed(method, path);
            let url = path
                .replace("{id}", "nope")
                .replace("{name}", "nope")
                .replace("{subject}", "nope");
            for (role, k) in &keys {
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let body = (method == "post" || method == "put").then(|| json!({}));
                let mut r = s
                    .http
                    .request(m, format!("{}{url}", s.base))
                    .bearer_auth(k)
                    .header("accept", "application/json, text/event-stream");
                if let Some(b) = body {
                    r = r.json(&b);
                }
                // The MCP GET stream would stay open: only its status line matters.
                let resp = tokio::time::timeout(std::time::Duration::from_secs(5), r.send())
                    .await
                    .expect("answer in time")
                    .expect("request");
                let status = resp.status().as_u16();
                let text = if status == 403 {
                    resp.text().await.unwrap_or_default()
                } else {
                    String::new()
                };
                assert_ne!(status, 401, "{role} on {method} {path}");
                if who.contains(role) {
                    assert_ne!(status, 403, "{role} refused on {method} {path}");
                } else {
                    assert_eq!(status, 403, "{role} allowed on {method} {path}");
                    let v: Value = serde_json::from_str(&text).unwrap();
                    common::assert_error(&v, "forbidden");
                    assert!(
                        v["error"]["message"].as_str().unwrap().contains(':'),
                        "names the permission: {v}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 150, "only {checked} route × role checks");
    // No key, a revoked-looking key: 401.
    let (st, v) = get(&s, "tg_not_a_real_key", "/v1/webhooks").await;
    assert_eq!(st, 401, "{v}");
    common::assert_error(&v, "unauthorized");
}

#[tokio::test]
async fn keys_are_shown_once_stored_as_hashes_and_refused_once_revoked_or_expired() {
    let s = server_with_llm(None).await;
    let (id, k) = key(&s, json!({"name": "ops", "role": "viewer"})).await;
    let (st, list) = get(&s, ADMIN, "/v1/keys").await;
    assert_eq!(st, 200);
    let text = list.to_string();
    assert!(!text.contains(&k), "the key is listed: {text}");
    assert_eq!(list["items"][0]["prefix"], k[..10]);
    assert_eq!(list["items"][0]["role"], "viewer");
    let (st, _) = get(&s, &k, "/v1/webhooks").await;
    assert_eq!(st, 200);
    let (_, rec) = get(&s, ADMIN, &format!("/v1/keys/{id}")).await;
    assert!(rec["last_used_at"].is_string(), "{rec}");

    // Neither the key nor its random part is anywhere in the data dir.
    s.post("/v1/webhooks", get_hook("Flush", "http://127.0.0.1:9/x"))
        .await;
    let secret_part = &k[3..];
    for entry in walk(&s.data_dir()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(
            !hay.contains(secret_part),
            "{} holds the key in clear",
            entry.display()
        );
    }

    let (st, _, _) = send(
        &s,
        ADMIN,
        reqwest::Method::DELETE,
        &format!("/v1/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, v) = get(&s, &k, "/v1/webhooks").await;
    assert_eq!(st, 401, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("revoked"));

    let (_, old) = key(
        &s,
        json!({"name": "temp", "role": "admin", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    let (st, v) = get(&s, &old, "/v1/webhooks").await;
    assert_eq!(st, 401);
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));

    // Bad specs are 422 at their field.
    let (st, v) = post(
        &s,
        ADMIN,
        "/v1/keys",
        json!({"name": "x y", "role": "viewer", "expires_at": "soon", "rate_limit_per_minute": 0}),
    )
    .await;
    assert_eq!(st, 422);
    assert_eq!(
        common::error_fields(&v),
        vec!["name", "expires_at", "rate_limit_per_minute"]
    );
    let (st, _) = post(
        &s,
        ADMIN,
        "/v1/keys",
        json!({"name": "ops2", "role": "root"}),
    )
    .await;
    assert_eq!(st, 422);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Two tools: `open_tool` for all, `vip_tool` for the key `bot-b` only; an agent with both.
async fn two_tools(s: &Server, up: &Upstream) {
    let open = s
        .webhook(get_hook("Open", &format!("{}/open", up.base)))
        .await;
    let vip = s
        .webhook(get_hook("Vip", &format!("{}/vip", up.base)))
        .await;
    let (st, v) = s
        .post(
            "/v1/tools",
            json!({"name": "open_tool", "webhook_id": open}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = s
        .post(
            "/v1/tools",
            json!({"name": "vip_tool", "webhook_id": vip, "authorized": ["bot-b"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["authorized"], json!(["bot-b"]));
    let (st, v) = s
        .post(
            "/v1/agents",
            json!({"name": "helper", "system_prompt": "Help.", "tools": ["open_tool", "vip_tool"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x["function"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_invoker_sees_and_calls_only_its_tools_on_every_surface() {
    let llm = FakeLlm::start().await;
    let s = server_with_llm(Some(&llm)).await;
    let up = Upstream::start().await;
    two_tools(&s, &up).await;
    let (_, a) = key(&s, json!({"name": "bot-a", "role": "invoker"})).await;
    let (_, b) = key(&s, json!({"name": "bot-b", "role": "invoker"})).await;

    // OpenAI export.
    let names = |v: &Value| -> Vec<String> {
        v["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = get(&s, &a, "/v1/tools/openai").await;
    assert_eq!(names(&v), vec!["open_tool"]);
    let (_, v) = get(&s, &b, "/v1/tools/openai").await;
    assert_eq!(names(&v), vec!["open_tool", "vip_tool"]);
    let (_, v) = get(&s, &a, "/v1/tools/openai?dialect=gemini").await;
    assert_eq!(names(&v), vec!["open_tool"]);

    // REST invoke: refused in words, recorded as forbidden with the caller.
    let (st, v) = post(
        &s,
        &a,
        "/v1/tools/vip_tool/invoke",
        json!({"arguments": {}}),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not allowed to use the tool vip_tool")
    );
    let (st, _) = post(
        &s,
        &b,
        "/v1/tools/vip_tool/invoke",
        json!({"arguments": {}}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, calls) = s.get("/v1/calls?outcome=forbidden").await;
    assert_eq!(calls["items"][0]["tool"], "vip_tool");
    assert_eq!(calls["items"][0]["caller"], "bot-a");
    assert_eq!(up.received().iter().filter(|r| r.uri == "/vip").count(), 1);

    // Agent chat: only the authorized tool is offered; a call of the other is refused.
    llm.push(200, tool_calls(&[("c1", "vip_tool", json!({}))]));
    llm.push(200, reply("Sorry."));
    let (st, v) = post(
        &s,
        &a,
        "/v1/agents/helper/chat",
        json!({"messages": [{"role": "user", "content": "vip please"}]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let reqs = llm.requests();
    assert_eq!(offered(&reqs[0]), vec!["open_tool"]);
    assert!(
        v["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("You are not allowed to use the tool vip_tool"),
        "{v}"
    );
    assert_eq!(v["tool_calls"][0]["outcome"], "forbidden");

    // /v1/chat/completions with the key as the API key.
    llm.push(200, reply("Hello."));
    let (st, v) = post(
        &s,
        &a,
        "/v1/chat/completions",
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let reqs = llm.requests();
    assert_eq!(offered(reqs.last().unwrap()), vec!["open_tool"]);
    llm.push(200, reply("Hello."));
    post(
        &s,
        &b,
        "/v1/chat/completions",
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let reqs = llm.requests();
    assert_eq!(offered(reqs.last().unwrap()), vec!["open_tool", "vip_tool"]);

    // MCP over HTTP with the key.
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let cfg = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", s.base))
        .auth_header(a.clone());
    let mcp = ().serve(StreamableHttpClientTransport::from_config(cfg)).await.expect("mcp");
    let tools: Vec<String> = mcp
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(tools, vec!["open_tool"]);
    let r = mcp
        .call_tool(CallToolRequestParams::new("vip_tool"))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    let text: String = r
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    assert!(text.contains("not allowed"), "{text}");
    mcp.cancel().await.ok();
    assert_eq!(
        up.received().iter().filter(|r| r.uri == "/vip").count(),
        1,
        "nothing more sent"
    );

    // Explain says why.
    let (_, keys) = get(&s, ADMIN, "/v1/keys").await;
    let id_of = |name: &str| {
        keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (_, e) = get(
        &s,
        ADMIN,
        &format!("/v1/keys/{}/explain?tool=vip_tool", id_of("bot-a")),
    )
    .await;
    assert_eq!(e["allowed"], false, "{e}");
    assert!(e["reason"].as_str().unwrap().contains("not one of them"));
    let (_, e) = get(
        &s,
        ADMIN,
        &format!("/v1/keys/{}/explain?tool=vip_tool", id_of("bot-b")),
    )
    .await;
    assert_eq!(e["allowed"], true, "{e}");
}

/// A key bound to tenant A sends A's tenant id whatever the request says, in the body context
/// and in the `X-Toolgate-Context` header alike.
#[tokio::test]
async fn a_tenant_bound_key_cannot_speak_for_another_tenant() {
    let llm = FakeLlm::start().await;
    let s = server_with_llm(Some(&llm)).await;
    let up = Upstream::start().await;
    let mut def = get_hook("Orders", &format!("{}/orders", up.base));
    def["headers"] =
        json!([{"name": "X-Tenant", "value_type": "context", "value": "tenant", "required": true}]);
    let w = s.webhook(def).await;
    s.tool("orders", &w).await;
    let (_, k) = key(
        &s,
        json!({"name": "tenant-a-bot", "role": "invoker", "context": {"tenant": "A"}}),
    )
    .await;
    let (st, v) = post(
        &s,
        &k,
        "/v1/tools/orders/invoke",
        json!({"arguments": {}, "context": {"tenant": "B"}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(up.last().header("x-tenant"), Some("A"));
    // Through /v1/chat/completions with the context header naming tenant B.
    llm.push(200, tool_calls(&[("c1", "orders", json!({}))]));
    llm.push(200, reply("Done."));
    let resp = s
        .http
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&k)
        .header("x-toolgate-context", r#"{"tenant": "B"}"#)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "orders"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(up.count(), 2);
    assert_eq!(up.last().header("x-tenant"), Some("A"));
    // The admin token is bound to nothing: its context is its own.
    s.post(
        "/v1/tools/orders/invoke",
        json!({"arguments": {}, "context": {"tenant": "C"}}),
    )
    .await;
    assert_eq!(up.last().header("x-tenant"), Some("C"));
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let s = server_with_llm(None).await;
    let (_, k) = key(
        &s,
        json!({"name": "slow", "role": "viewer", "rate_limit_per_minute": 2}),
    )
    .await;
    assert_eq!(get(&s, &k, "/v1/webhooks").await.0, 200);
    assert_eq!(get(&s, &k, "/v1/webhooks").await.0, 200);
    let (st, v, headers) = send(&s, &k, reqwest::Method::GET, "/v1/webhooks", None).await;
    assert_eq!(st, 429, "{v}");
    common::assert_error(&v, "rate_limited");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Others are not slowed down.
    assert_eq!(s.get("/v1/webhooks").await.0, 200);
}

/// A raw `POST` with a key, a content type and a body.
async fn post_raw(s: &Server, token: &str, path: &str, ctype: &str, body: &str) -> (u16, Value) {
    let resp = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(token)
        .header("content-type", ctype)
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The tool-call route is answered by the serving front (`api::front`) in the common case and
/// by the router otherwise: every refusal is still the router's, and a request the front
/// authenticated, then handed over, counts once against its key's rate limit.
#[tokio::test]
async fn an_invoke_handed_from_the_front_to_the_router_is_refused_alike_and_counted_once() {
    let s = server_with_llm(None).await;
    let up = Upstream::start().await;
    let w = s
        .webhook(get_hook("Echo", &format!("{}/echo", up.base)))
        .await;
    let tool_id = s.tool("echo", &w).await;
    let (_, k) = key(
        &s,
        json!({"name": "limited", "role": "invoker", "rate_limit_per_minute": 4}),
    )
    .await;
    let path = "/v1/tools/echo/invoke";
    // 1: the common case, answered by the front.
    let (st, v) = post(&s, &k, path, json!({"arguments": {}})).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("success")), "{v}");
    // 2: authenticated by the front, then a malformed body: the router's 400.
    let (st, v) = post_raw(&s, &k, path, "application/json", "{\"arguments\": ").await;
    assert_eq!(st, 400, "{v}");
    common::assert_error(&v, "bad_request");
    // 3: the tool's id instead of its name: the router looks it up in the store.
    let (st, v) = post(&s, &k, &format!("/v1/tools/{tool_id}/invoke"), json!({})).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("success")), "{v}");
    // 4: a context that is not an object: the router's 422 naming the field.
    let (st, v) = post(&s, &k, path, json!({"context": [1]})).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(common::error_fields(&v), vec!["context"]);
    // 5: four requests were counted, not seven.
    let (st, v) = post(&s, &k, path, json!({})).await;
    assert_eq!(st, 429, "{v}");
    common::assert_error(&v, "rate_limited");
    assert_eq!(
        up.count(),
        2,
        "only the two plain calls reached the upstream"
    );

    // Refusals of a request the front hands over before authenticating, as the router makes them.
    let (st, v) = post_raw(&s, ADMIN, path, "text/plain", "{}").await;
    assert_eq!(st, 415, "{v}");
    common::assert_error(&v, "unsupported_media_type");
    let (st, v) = post_raw(&s, "wrong-token", path, "application/json", "{}").await;
    assert_eq!(st, 401, "{v}");
    common::assert_error(&v, "unauthorized");
    let (_, viewer) = key(&s, json!({"name": "reader", "role": "viewer"})).await;
    let (st, v) = post(&s, &viewer, path, json!({})).await;
    assert_eq!(st, 403, "{v}");
    common::assert_error(&v, "forbidden");
    let (st, v) = post(&s, ADMIN, "/v1/tools/no_such_tool/invoke", json!({})).await;
    assert_eq!(st, 404, "{v}");
    common::assert_error(&v, "not_found");
    let big = format!(
        "{{\"arguments\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(3 * 1024 * 1024)
    );
    let (st, v) = post_raw(&s, ADMIN, path, "application/json", &big).await;
    assert_eq!(st, 413, "{v}");
    common::assert_error(&v, "payload_too_large");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_its_open_mcp_session() {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let s = server_with_llm(None).await;
    let up = Upstream::start().await;
    let w = s
        .webhook(get_hook("Echo", &format!("{}/echo", up.base)))
        .await;
    s.tool("echo", &w).await;
    let (id, k) = key(&s, json!({"name": "mcp-bot", "role": "invoker"})).await;
    let cfg =
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", s.base)).auth_header(k);
    let mcp = ().serve(StreamableHttpClientTransport::from_config(cfg)).await.expect("mcp");
    assert_eq!(mcp.list_all_tools().await.unwrap().len(), 1);
    let (st, _, _) = send(
        &s,
        ADMIN,
        reqwest::Method::DELETE,
        &format!("/v1/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    assert!(
        mcp.list_all_tools().await.is_err(),
        "the session still works after revocation"
    );
    mcp.cancel().await.ok();
    // A viewer key may not open MCP at all.
    let (_, viewer) = key(&s, json!({"name": "v", "role": "viewer"})).await;
    let (st, _) = post(
        &s,
        &viewer,
        "/mcp",
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    )
    .await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn every_write_is_in_the_audit_log_and_editors_see_no_history_bodies() {
    let s = server_with_llm(None).await;
    let up = Upstream::start().await;
    let (_, editor) = key(&s, json!({"name": "dev", "role": "editor"})).await;
    let (_, viewer) = key(&s, json!({"name": "oncall", "role": "viewer"})).await;
    let (st, w) = post(
        &s,
        &editor,
        "/v1/webhooks",
        get_hook("Echo", &format!("{}/echo", up.base)),
    )
    .await;
    assert_eq!(st, 201);
    let wid = w["id"].as_str().unwrap().to_string();
    let (st, _) = post(
        &s,
        &viewer,
        "/v1/webhooks",
        get_hook("Nope", "http://127.0.0.1:9/x"),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = post(
        &s,
        &editor,
        &format!("/v1/webhooks/{wid}/test"),
        json!({"arguments": {}}),
    )
    .await;
    assert_eq!(st, 200);

    let (st, log) = get(&s, ADMIN, "/v1/audit?actor=dev").await;
    assert_eq!(st, 200);
    let entries = log["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log}");
    assert_eq!(entries[1]["route"], "/v1/webhooks");
    assert_eq!(entries[1]["method"], "POST");
    assert_eq!(entries[1]["resource"], wid.as_str());
    assert_eq!(entries[1]["status"], 201);
    assert_eq!(entries[0]["route"], "/v1/webhooks/{id}/test");
    let (_, log) = get(&s, ADMIN, "/v1/audit?actor=oncall").await;
    assert_eq!(log["items"][0]["status"], 403);
    let (_, log) = get(&s, ADMIN, &format!("/v1/audit?resource={wid}")).await;
    assert_eq!(log["items"].as_array().unwrap().len(), 2);
    let (_, log) = get(&s, ADMIN, "/v1/audit?actor=bootstrap").await;
    assert!(log["items"].as_array().unwrap().is_empty());
    let (_, log) = get(&s, ADMIN, "/v1/audit?actor=admin-token").await;
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["route"] == "/v1/keys")
    );

    // History: the viewer reads bodies, the editor does not.
    let (_, calls) = get(&s, &viewer, "/v1/calls").await;
    assert!(calls["items"][0]["request"].is_object(), "{calls}");
    assert_eq!(calls["items"][0]["caller"], "dev");
    let (_, calls) = get(&s, &editor, "/v1/calls").await;
    assert!(calls["items"][0]["request"].is_null(), "{calls}");
    assert!(calls["items"][0]["response"].is_null());
}

/// A context field marked sensitive (the end user's own token) reaches the upstream and is
/// redacted like a secret in the result and in history.
#[tokio::test]
async fn a_sensitive_context_value_is_redacted_like_a_secret() {
    let s = server_with_llm(None).await;
    let up = Upstream::start().await;
    let mut def = get_hook("Profile", &format!("{}/echo", up.base));
    def["headers"] = json!([{"name": "X-User-Token", "value_type": "context", "value": "user.token", "sensitive": true}]);
    let w = s.webhook(def).await;
    s.tool("profile", &w).await;
    let token = "user-oauth-token-5f1c9a";
    let (st, v) = s
        .post(
            "/v1/tools/profile/invoke",
            json!({"arguments": {}, "context": {"user": {"token": token}}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(up.last().header("x-user-token"), Some(token));
    assert!(
        !v.to_string().contains(token),
        "result leaks the token: {v}"
    );
    assert!(v.to_string().contains("[REDACTED]"), "{v}");
    let (_, calls) = s.get("/v1/calls").await;
    assert!(
        !calls.to_string().contains(token),
        "history leaks the token"
    );
    // Only context fields may be sensitive.
    let mut bad = get_hook("Bad", "http://127.0.0.1:9/x");
    bad["headers"] =
        json!([{"name": "X", "value_type": "static", "value": "v", "sensitive": true}]);
    let (st, v) = s.post("/v1/webhooks", bad).await;
    assert_eq!(st, 422);
    assert_eq!(common::error_fields(&v), vec!["headers[0].sensitive"]);
}

/// A secret with one value per end user: the call uses the value of the subject the context
/// names, fails clearly for a subject without one, and never falls back to another's.
#[tokio::test]
async fn per_user_secret_values_follow_the_subject_in_the_context() {
    let s = server_with_llm(None).await;
    let up = Upstream::start().await;
    let secret = s.secret("crm_token", "shared-value").await;
    for (subject, value) in [("u1", "token-of-user-one"), ("u2", "token-of-user-two")] {
        let (st, v, _) = send(
            &s,
            ADMIN,
            reqwest::Method::PUT,
            &format!("/v1/secrets/{secret}/values/{subject}"),
            Some(json!({"value": value})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert!(!v.to_string().contains(value));
    }
    let mut def = get_hook("Crm", &format!("{}/echo", up.base));
    def["headers"] = json!([{"name": "X-Token", "value_type": "secret", "secret": "crm_token", "subject": "user.id"}]);
    let w = s.webhook(def).await;
    s.tool("crm", &w).await;
    let call = |user: Value| {
        let s = &s;
        async move {
            s.post(
                "/v1/tools/crm/invoke",
                json!({"arguments": {}, "context": {"user": {"id": user}}}),
            )
            .await
        }
    };
    let (st, v) = call(json!("u1")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(up.last().header("x-token"), Some("token-of-user-one"));
    assert!(!v.to_string().contains("token-of-user-one"), "{v}");
    call(json!("u2")).await;
    assert_eq!(up.last().header("x-token"), Some("token-of-user-two"));
    let sent = up.count();
    let (st, v) = call(json!("u3")).await;
    assert_eq!(st, 200);
    assert_eq!(v["outcome"], "config_error", "{v}");
    assert!(
        v["content"]
            .as_str()
            .unwrap()
            .contains("no value for the subject 'u3'"),
        "{v}"
    );
    assert_eq!(
        up.count(),
        sent,
        "nothing sent for a subject without a value"
    );
    let (_, v) = s
        .post(
            "/v1/tools/crm/invoke",
            json!({"arguments": {}, "context": {}}),
        )
        .await;
    assert_ne!(v["outcome"], "success", "{v}");
    assert_eq!(up.count(), sent);
    assert!(
        up.received()
            .iter()
            .all(|r| r.header("x-token") != Some("shared-value"))
    );

    let (_, list) = s.get(&format!("/v1/secrets/{secret}/values")).await;
    let subjects: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, vec!["u1", "u2"]);
    assert!(!list.to_string().contains("token-of"));
    let (st, _) = s.delete(&format!("/v1/secrets/{secret}/values/u1")).await;
    assert_eq!(st, 204);
    let (_, v) = call(json!("u1")).await;
    assert_eq!(
        v["outcome"], "config_error",
        "a removed value is not used: {v}"
    );
    let (_, calls) = s.get("/v1/calls").await;
    assert!(
        !calls.to_string().contains("token-of-user"),
        "history leaks a user's token"
    );
    // `subject` belongs to secret fields only.
    let mut bad = get_hook("Bad", "http://127.0.0.1:9/x");
    bad["headers"] =
        json!([{"name": "X", "value_type": "static", "value": "v", "subject": "user.id"}]);
    let (st, v) = s.post("/v1/webhooks", bad).await;
    assert_eq!(st, 422);
    assert_eq!(common::error_fields(&v), vec!["headers[0].subject"]);
}

/// Mid-conversation, the tool calls of a chat turn take from the key's bucket too: past the
/// limit the model is told to wait instead of the call being made.
#[tokio::test]
async fn a_rate_limited_agent_is_told_to_wait() {
    let llm = FakeLlm::start().await;
    let s = server_with_llm(Some(&llm)).await;
    let up = Upstream::start().await;
    two_tools(&s, &up).await;
    let (_, k) = key(
        &s,
        json!({"name": "chatty", "role": "invoker", "rate_limit_per_minute": 2}),
    )
    .await;
    llm.push(
        200,
        tool_calls(&[
            ("c1", "open_tool", json!({})),
            ("c2", "open_tool", json!({})),
        ]),
    );
    llm.push(200, reply("One moment."));
    let (st, v) = post(
        &s,
        &k,
        "/v1/agents/helper/chat",
        json!({"messages": [{"role": "user", "content": "twice"}]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let outcomes: Vec<&str> = v["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "success").count(),
        1,
        "{v}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "forbidden").count(),
        1,
        "{v}"
    );
    let told = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .any(|c| c.contains("rate limit") && c.contains("Wait"));
    assert!(told, "{v}");
    assert_eq!(up.count(), 1);
}
