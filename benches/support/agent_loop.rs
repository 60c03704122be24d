//! The agent loop's own overhead: a chat turn with one tool call against a scripted
//! OpenAI-compatible model, minus the model's and the upstream's time. Each turn is timed beside
//! a direct round trip to the model (twice: the tool-call answer and the final answer) and one
//! to the upstream, from the same client, so the noise of the moment hits both sides alike.

use super::*;

/// The scripted model: a tool call for `bench_order` until the conversation holds a tool
/// result, then a final answer.
async fn start_model() -> u16 {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind model");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|body: axum::body::Bytes| async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answered = v["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
            let message = if answered {
                json!({"role": "assistant", "content": "Order A-1001 has shipped."})
            } else {
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "bench_order", "arguments": "{\"order_number\":\"A-1001\"}"}}]})
            };
            let finish = if answered { "stop" } else { "tool_calls" };
            axum::Json(json!({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000u64,
                "model": "bench-model", "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}))
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

fn p50(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn timed(req: reqwest::RequestBuilder) -> f64 {
    let t = Instant::now();
    let r = req.send().await.expect("send");
    assert!(r.status().is_success(), "{}", r.status());
    r.bytes().await.expect("body");
    t.elapsed().as_secs_f64() * 1e6
}

/// Run the measurement and return its report section.
pub async fn run(tmp: &Path, client: &reqwest::Client) -> String {
    let turns: usize = env_or("BENCH_TURNS", 500);
    let (_upstream, up_port) = upstream(tmp, "agent-upstream");
    let model_port = start_model().await;
    let model = format!("http://127.0.0.1:{model_port}/v1");
    let (gw, _) = start_toolgate(
        &tmp.join("data-agent"),
        &["--llm-base-url", &model, "--llm-api-key", "bench"],
    );
    setup_tool(client, &gw.base, up_port).await;
    let r = client
        .post(format!("{}/v1/agents", gw.base))
        .json(&json!({"name": "bench", "system_prompt": "You look up orders.", "tools": ["bench_order"], "max_steps": 4}))
        .send()
        .await
        .expect("agent");
    assert!(r.status().is_success(), "agent creation failed");
    let chat_url = format!("{}/v1/agents/bench/chat", gw.base);
    let user = json!({"messages": [{"role": "user", "content": "Where is order A-1001?"}]});
    let first = json!({"model": "bench-model", "messages": [{"role": "system", "content": "You look up orders."},
        {"role": "user", "content": "Where is order A-1001?"}]});
    let second = json!({"model": "bench-model", "messages": [{"role": "system", "content": "You look up orders."},
        {"role": "user", "content": "Where is order A-1001?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "bench_order", "arguments": "{\"order_number\":\"A-1001\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": BODY}]});
    let check: Value = client
        .post(&chat_url)
        .json(&user)
        .send()
        .await
        .expect("chat")
        .json()
        .await
        .expect("json");
    assert_eq!(
        check["reply"], "Order A-1001 has shipped.",
        "the benchmark agent must run its tool: {check}"
    );
    let (mut chat, mut model_t, mut up_t, mut overhead) = (vec![], vec![], vec![], vec![]);
    let up_url = format!("http://127.0.0.1:{up_port}/api/orders/A-1001?format=json");
    for i in 0..turns + 50 {
        let c = timed(client.post(&chat_url).json(&user)).await;
        let m = timed(
            client
                .post(format!("{model}/chat/completions"))
                .json(&first),
        )
        .await
            + timed(
                client
                    .post(format!("{model}/chat/completions"))
                    .json(&second),
            )
            .await;
        let u = timed(client.get(&up_url)).await;
        if i >= 50 {
            chat.push(c);
            model_t.push(m);
            up_t.push(u);
            overhead.push(c - m - u);
        }
    }
    drop(gw);
    format!(
        "Agent loop: {turns} chat turns, each one tool call against a scripted model (p50):\n\n\
         | chat turn | model round trips (2) | upstream round trip | the loop's own overhead | target |\n\
         |---|---|---|---|---|\n\
         | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | ≤ 1,000 µs |\n\n",
        p50(&mut chat),
        p50(&mut model_t),
        p50(&mut up_t),
        p50(&mut overhead),
    )
}
