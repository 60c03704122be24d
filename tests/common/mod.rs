//! Shared test helpers: the real server on an ephemeral loopback port with a temp data dir, and a
//! real upstream that records exactly what it received.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use toolgate::config::ServeConfig;

pub mod pg;

/// Assert `v` is the error envelope with `code` and a message for a person.
pub fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

/// The `field` of every `details` entry of an error envelope, in order.
pub fn error_fields(v: &Value) -> Vec<&str> {
    v["error"]["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default()
}

/// A loopback port free right now, for a process the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local address")
        .port()
}

/// An HTTP client for tests (installs the TLS provider reqwest needs).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A running gateway.
pub struct Server {
    pub base: String,
    pub config: ServeConfig,
    pub dir: Arc<tempfile::TempDir>,
    pub http: reqwest::Client,
    pub token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), toolgate::StartError>>>,
}

/// Default test config: temp data dir, no tools dir, loopback allowed for 127.0.0.1 upstreams.
pub fn config(dir: &tempfile::TempDir) -> ServeConfig {
    let mut c = ServeConfig::with_data_dir(dir.path().join("data"));
    c.tools_dir = dir.path().join("no-tools");
    c.prompts_dir = dir.path().join("prompts");
    c.allow_hosts = vec!["127.0.0.1".into()];
    c
}

impl Server {
    /// Start with the default test config.
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    /// Start with a config tweak.
    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut c = config(&dir);
        tweak(&mut c);
        Self::launch(c, dir).await
    }

    async fn launch(config: ServeConfig, dir: Arc<tempfile::TempDir>) -> Server {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let (tx, rx) = oneshot::channel::<()>();
            let c = config.clone();
            let handle = tokio::spawn(async move {
                toolgate::run(c, listener, async move {
                    let _ = rx.await;
                })
                .await
            });
            let base = format!("http://{addr}");
            let http = client();
            // Poll until healthy, or until the server task ends (e.g. the sled lock is still held).
            loop {
                if handle.is_finished() {
                    break;
                }
                if let Ok(r) = http.get(format!("{base}/healthz")).send().await
                    && r.status().is_success()
                {
                    return Server {
                        base,
                        token: config.admin_token.clone(),
                        config,
                        dir,
                        http,
                        stop: Some(tx),
                        handle: Some(handle),
                    };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let err = handle.await.expect("join");
            if tokio::time::Instant::now() > deadline {
                panic!("server did not start: {err:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Graceful stop (drains history, flushes the store).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("server ended with an error");
        }
    }

    /// Stop and start again on the same data dir.
    pub async fn restart(mut self) -> Server {
        self.stop().await;
        let config = self.config.clone();
        let dir = self.dir.clone();
        Self::launch(config, dir).await
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut b = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            b = b.bearer_auth(t);
        }
        b
    }

    /// Send and return status and JSON body (Null when empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut b = self.req(method, path);
        if let Some(v) = body {
            b = b.json(&v);
        }
        let r = b.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    /// Raw body variant of `send`.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let r = self
            .req(method, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The body of `GET path` as text (Prometheus metrics, a page), whatever its status.
    pub async fn get_text(&self, path: &str) -> String {
        self.req(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Create a secret and return its id.
    pub async fn secret(&self, name: &str, value: &str) -> String {
        let (st, v) = self
            .post("/v1/secrets", json!({"name": name, "value": value}))
            .await;
        assert_eq!(st, 201, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// Create a webhook and return its id.
    pub async fn webhook(&self, def: Value) -> String {
        let (st, v) = self.post("/v1/webhooks", def).await;
        assert_eq!(st, 201, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// Create a tool linked to `webhook_id` and return its id.
    pub async fn tool(&self, name: &str, webhook_id: &str) -> String {
        let (st, v) = self
            .post("/v1/tools", json!({"name": name, "webhook_id": webhook_id}))
            .await;
        assert_eq!(st, 201, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// Invoke a tool by name.
    pub async fn invoke(&self, name: &str, arguments: Value, context: Value) -> (u16, Value) {
        self.post(
            &format!("/v1/tools/{name}/invoke"),
            json!({"arguments": arguments, "context": context}),
        )
        .await
    }

    /// The history record of the call `answer` (an invoke's answer) reports.
    pub async fn record_of(&self, answer: &Value) -> Value {
        let id = answer["call_id"]
            .as_str()
            .expect("the answer has a call_id");
        let (st, rec) = self.get(&format!("/v1/calls/{id}")).await;
        assert_eq!(st, 200, "the record of {id}: {rec}");
        rec
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// What an upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query exactly as sent (still percent-encoded).
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// A real HTTP upstream on 127.0.0.1 that records every request. Behaviour by path:
/// `/status/{code}`, `/slow/{ms}`, `/flaky/{n}` (503 for the first n calls, with Retry-After: 0),
/// `/big/{bytes}`, `/redirect?to=URL[&code=307]`, `/text`; anything else echoes the request as JSON.
#[derive(Clone)]
pub struct Upstream {
    pub base: String,
    pub port: u16,
    log: Arc<Mutex<Vec<Received>>>,
    counter: Arc<Mutex<u32>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(Mutex::new(0));
        let (l, c) = (log.clone(), counter.clone());
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (l, c) = (l.clone(), c.clone());
                async move { handle(l, c, method, uri, headers, body).await }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream {
            base: format!("http://127.0.0.1:{port}"),
            port,
            log,
            counter,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().expect("lock").len()
    }

    pub fn last(&self) -> Received {
        self.received()
            .last()
            .cloned()
            .expect("upstream received nothing")
    }
}

async fn handle(
    log: Arc<Mutex<Vec<Received>>>,
    counter: Arc<Mutex<u32>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_q = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let rec = Received {
        method: method.to_string(),
        uri: path_q.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    log.lock().expect("lock").push(rec.clone());
    let path = uri.path();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["status", code, ..] => {
            let code: u16 = code.parse().unwrap_or(500);
            let st = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (st, axum::Json(json!({"error": format!("upstream says {code}")}))).into_response()
        }
        ["slow", ms, ..] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(2000))).await;
            axum::Json(json!({"slow": true})).into_response()
        }
        ["flaky", n, ..] => {
            let n: u32 = n.parse().unwrap_or(1);
            let mut c = counter.lock().expect("lock");
            *c += 1;
            if *c <= n {
                (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")], "busy").into_response()
            } else {
                axum::Json(json!({"ok": true, "attempt": *c})).into_response()
            }
        }
        ["big", n, ..] => {
            let n: usize = n.parse().unwrap_or(100_000);
            axum::Json(json!({"data": "x".repeat(n)})).into_response()
        }
        ["redirect", ..] => {
            let to = uri
                .query()
                .and_then(|q| url_param(q, "to"))
                .unwrap_or_else(|| "/".to_string());
            let code = uri
                .query()
                .and_then(|q| url_param(q, "code"))
                .and_then(|c| c.parse().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::FOUND);
            (code, [("location", to)], "").into_response()
        }
        ["text", ..] => "plain words".into_response(),
        // `?body=…` answered byte for byte as JSON (key order, spacing and escapes as given).
        ["raw", ..] => (
            [("content-type", "application/json")],
            uri.query()
                .and_then(|q| url_param(q, "body"))
                .unwrap_or_default(),
        )
            .into_response(),
        _ => axum::Json(json!({
            "method": rec.method, "uri": path_q, "headers": headers_json(&rec.headers), "body": rec.text()
        }))
        .into_response(),
    }
}

fn headers_json(h: &[(String, String)]) -> Value {
    Value::Object(
        h.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn url_param(q: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.to_string())
}

/// A simple GET webhook definition against `url`.
pub fn get_hook(name: &str, url: &str) -> Value {
    json!({"name": name, "description": format!("{name} test"), "method": "GET", "url": url, "timeout_ms": 2000})
}

/// Poll `f` until it returns Some, or panic after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A scripted OpenAI-compatible model server: answers `POST /v1/chat/completions` from a queue
/// (then from a fallback) and records every request body.
#[derive(Clone)]
pub struct FakeLlm {
    pub base: String,
    requests: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<std::collections::VecDeque<(u16, Value)>>>,
    fallback: Arc<Mutex<Option<(u16, Value)>>>,
}

/// A realistic `chat.completion` around `message`.
pub fn completion(message: Value, finish: &str) -> Value {
    json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000u64, "model": "fake-model",
           "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
}

/// An assistant message asking for tool calls `(id, name, arguments)`; arguments sent as a JSON string.
pub fn tool_calls(calls: &[(&str, &str, Value)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
        .collect();
    completion(
        json!({"role": "assistant", "content": null, "tool_calls": calls}),
        "tool_calls",
    )
}

/// A plain assistant answer.
pub fn reply(text: &str) -> Value {
    completion(json!({"role": "assistant", "content": text}), "stop")
}

impl FakeLlm {
    pub async fn start() -> FakeLlm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind llm");
        let port = listener.local_addr().expect("addr").port();
        let fake = FakeLlm {
            base: format!("http://127.0.0.1:{port}/v1"),
            requests: Default::default(),
            script: Default::default(),
            fallback: Default::default(),
        };
        let f = fake.clone();
        let app = Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |body: Bytes| {
                let f = f.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    f.requests.lock().expect("lock").push(v);
                    let next = f.script.lock().expect("lock").pop_front();
                    let (status, body) = next
                        .or_else(|| f.fallback.lock().expect("lock").clone())
                        .unwrap_or((500, json!({"error": {"message": "script exhausted"}})));
                    (
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        axum::Json(body),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    pub fn push(&self, status: u16, body: Value) {
        self.script.lock().expect("lock").push_back((status, body));
    }

    pub fn always(&self, status: u16, body: Value) {
        *self.fallback.lock().expect("lock") = Some((status, body));
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().expect("lock").clone()
    }
}
