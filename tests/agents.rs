//! Agent conversations against a scripted OpenAI-compatible model server and real upstreams.

mod common;

use common::{FakeLlm, Server, Upstream, get_hook, reply, tool_calls};
use serde_json::{Value, json};

async fn setup(max_steps: u32) -> (Server, Upstream, FakeLlm) {
    let llm = FakeLlm::start().await;
    let base = llm.base.clone();
    let s = Server::start_with(move |c| {
        c.llm_base_url = base;
        c.llm_max_retries = 2;
        c.llm_api_key = Some("sk-test".into());
    })
    .await;
    let up = Upstream::start().await;
    let mut def = get_hook(
        "Order status",
        &format!("{}/orders/{{order_number}}", up.base),
    );
    def["path_params"] = json!([{"name": "order_number", "description": "The order number", "value_type": "dynamic"}]);
    def["response_fields"] = json!(["method", "uri"]);
    let wid = s.webhook(def).await;
    s.tool("lookup_order", &wid).await;
    let failing = s
        .webhook(get_hook("Failing", &format!("{}/status/500", up.base)))
        .await;
    s.tool("failing", &failing).await;
    let (st, v) = s
        .post(
            "/v1/agents",
            json!({"name": "support", "system_prompt": "You help customers.",
            "tools": ["lookup_order", "failing"], "max_steps": max_steps}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    (s, up, llm)
}

fn user(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn order_question_runs_the_tool_and_returns_the_reply() {
    let (s, up, llm) = setup(4).await;
    llm.push(
        200,
        tool_calls(&[("call_1", "lookup_order", json!({"order_number": "A-1001"}))]),
    );
    llm.push(200, reply("Your order A-1001 has shipped."));
    let (st, v) = s
        .post("/v1/agents/support/chat", user("Where is my order A-1001?"))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["reply"], "Your order A-1001 has shipped.");
    assert_eq!(up.last().uri, "/orders/A-1001");
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["tool_calls"][0]["id"], "call_1");
    assert_eq!(msgs[1]["role"], "tool");
    assert_eq!(msgs[1]["tool_call_id"], "call_1");
    assert_eq!(msgs[2]["content"], "Your order A-1001 has shipped.");
    let call_id = v["calls"][0].as_str().unwrap();
    let (_, rec) = s.get(&format!("/v1/calls/{call_id}")).await;
    assert_eq!(rec["source"], "chat");
    assert_eq!(rec["tool"], "lookup_order");

    let reqs = llm.requests();
    assert_eq!(reqs.len(), 2);
    // The tools offered are exactly the compiled definitions.
    let (_, tools) = s.get("/v1/tools").await;
    let mut expected = Vec::new();
    for name in ["lookup_order", "failing"] {
        let id = tools["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        expected.push(s.get(&format!("/v1/tools/{id}/schema")).await.1);
    }
    assert_eq!(reqs[0]["tools"], Value::Array(expected));
    assert_eq!(
        reqs[0]["messages"][0],
        json!({"role": "system", "content": "You help customers."})
    );
    assert_eq!(
        reqs[0]["messages"][1]["content"],
        "Where is my order A-1001?"
    );
    // The tool result went back to the model.
    let tool_msg = &reqs[1]["messages"][3];
    assert_eq!(tool_msg["role"], "tool");
    assert_eq!(tool_msg["tool_call_id"], "call_1");
    assert!(
        tool_msg["content"]
            .as_str()
            .unwrap()
            .contains("/orders/A-1001"),
        "{tool_msg}"
    );
}

#[tokio::test]
async fn parallel_failing_invalid_and_unknown_tool_calls_become_tool_messages() {
    let (s, up, llm) = setup(4).await;
    llm.push(
        200,
        tool_calls(&[
            ("c1", "lookup_order", json!({"order_number": "A-1"})),
            ("c2", "lookup_order", json!({"order_number": "A-2"})),
            ("c3", "failing", json!({})),
            ("c4", "lookup_order", json!({"wrong": 1})),
            ("c5", "no_such_tool", json!({})),
        ]),
    );
    llm.push(200, reply("Done."));
    let (st, v) = s
        .post("/v1/agents/support/chat", user("Check A-1 and A-2"))
        .await;
    assert_eq!(st, 200, "{v}");
    let uris: Vec<String> = up.received().iter().map(|r| r.uri.clone()).collect();
    assert!(
        uris.contains(&"/orders/A-1".to_string()) && uris.contains(&"/orders/A-2".to_string()),
        "{uris:?}"
    );
    assert_eq!(up.count(), 3, "invalid and unknown calls send nothing");
    let second = &llm.requests()[1]["messages"];
    let tool_msgs: Vec<&Value> = second
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_msgs.len(), 5);
    let content = |id: &str| {
        tool_msgs.iter().find(|m| m["tool_call_id"] == id).unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(content("c1").contains("/orders/A-1"));
    assert!(content("c2").contains("/orders/A-2"));
    assert!(content("c3").contains("HTTP 500"), "{}", content("c3"));
    assert!(
        content("c4").contains("arguments are invalid") && content("c4").contains("order_number"),
        "{}",
        content("c4")
    );
    assert!(
        content("c5").contains("no tool named 'no_such_tool'"),
        "{}",
        content("c5")
    );
    let outcomes: Vec<&str> = v["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        vec![
            "success",
            "success",
            "http_error",
            "invalid_arguments",
            "unknown_tool"
        ]
    );
    assert_eq!(v["calls"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn model_errors_are_retried_then_reported() {
    let (s, _up, llm) = setup(4).await;
    llm.push(500, json!({"error": {"message": "overloaded"}}));
    llm.push(200, reply("Hello after a retry."));
    let (st, v) = s.post("/v1/agents/support/chat", user("Hi")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["reply"], "Hello after a retry.");
    assert_eq!(llm.requests().len(), 2);
    assert_eq!(
        llm.requests()[0],
        llm.requests()[1],
        "the same request is retried"
    );

    llm.always(500, json!({"error": {"message": "down"}}));
    let (st, v) = s.post("/v1/agents/support/chat", user("Hi again")).await;
    assert_eq!(st, 502, "{v}");
    assert_eq!(v["error"]["code"], "llm_unavailable");
    assert_eq!(llm.requests().len(), 2 + 3, "one try and two retries");
}

#[tokio::test]
async fn max_steps_stops_a_model_that_never_stops() {
    let (s, up, llm) = setup(3).await;
    llm.always(
        200,
        tool_calls(&[("loop", "lookup_order", json!({"order_number": "A-9"}))]),
    );
    let (st, v) = s
        .post("/v1/agents/support/chat", user("Loop forever"))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["stopped"], "max_steps");
    assert!(v["reply"].as_str().unwrap().contains("3 steps"));
    assert_eq!(llm.requests().len(), 3);
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn context_reaches_the_upstream_but_never_the_model() {
    let (s, up, llm) = setup(4).await;
    let mut def = get_hook("Profile", &format!("{}/profile", up.base));
    def["headers"] = json!([{"name": "X-User", "value_type": "context", "value": "user.id"}]);
    def["response_fields"] = json!(["method"]);
    let wid = s.webhook(def).await;
    s.tool("profile", &wid).await;
    s.put(
        "/v1/agents/support",
        json!({"name": "support", "tools": ["profile"], "max_steps": 4}),
    )
    .await;
    llm.push(200, tool_calls(&[("p1", "profile", json!({}))]));
    llm.push(200, reply("Got it."));
    let mut body = user("Who am I?");
    body["context"] = json!({"user": {"id": "ctx-user-8842"}});
    let (st, v) = s.post("/v1/agents/support/chat", body).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(up.last().header("x-user"), Some("ctx-user-8842"));
    for r in llm.requests() {
        assert!(
            !r.to_string().contains("ctx-user-8842"),
            "context leaked to the model: {r}"
        );
    }
    // A missing context value is explained to the model, not sent.
    llm.push(200, tool_calls(&[("p2", "profile", json!({}))]));
    llm.push(200, reply("Sorry."));
    let before = up.count();
    let (st, _) = s.post("/v1/agents/support/chat", user("Who am I?")).await;
    assert_eq!(st, 200);
    assert_eq!(up.count(), before);
    let last = llm.requests().last().cloned().unwrap();
    assert!(
        last.to_string()
            .contains("did not supply the context value"),
        "{last}"
    );
}

#[tokio::test]
async fn conversation_completed_event_is_delivered() {
    let (s, up, llm) = setup(4).await;
    let receiver = Upstream::start().await;
    let (st, v) = s
        .post(
            "/v1/subscriptions",
            json!({"name": "conv", "url": format!("{}/events", receiver.base),
            "event_types": ["conversation.completed"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    llm.push(
        200,
        tool_calls(&[("c1", "lookup_order", json!({"order_number": "E-1"}))]),
    );
    llm.push(200, reply("E-1 shipped."));
    let mut body = user("E-1?");
    body["conversation_id"] = json!("conv-abc");
    let (st, v) = s.post("/v1/agents/support/chat", body).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["conversation_id"], "conv-abc");
    let event = common::eventually(10, || {
        let r = receiver.clone();
        async move { r.received().first().map(|x| x.json()) }
    })
    .await;
    assert_eq!(event["event_type"], "conversation.completed");
    assert_eq!(
        event["current_context"],
        json!({"agent": "support", "conversation_id": "conv-abc"})
    );
    assert_eq!(event["data"]["reply"], "E-1 shipped.");
    assert_eq!(event["data"]["calls"][0]["tool"], "lookup_order");
    let (_, calls) = s.get("/v1/calls?tool=lookup_order&limit=1").await;
    assert_eq!(calls["items"][0]["conversation_id"], "conv-abc");
    assert_eq!(calls["items"][0]["agent"], "support");
    assert_eq!(up.last().uri, "/orders/E-1");
}

#[tokio::test]
async fn agents_crud_and_validation() {
    let (s, _up, _llm) = setup(4).await;
    let (st, v) = s
        .post("/v1/agents", json!({"name": "support", "tools": []}))
        .await;
    assert_eq!(st, 409, "{v}");
    let (st, v) = s
        .post(
            "/v1/agents",
            json!({"name": "x", "tools": ["nope"], "prompt": "../etc/passwd", "max_steps": 0}),
        )
        .await;
    assert_eq!(st, 422);
    let fields = common::error_fields(&v);
    assert_eq!(fields, vec!["prompt", "tools[0]", "max_steps"]);
    let (st, v) = s.get("/v1/agents/support").await;
    assert_eq!(st, 200);
    let id = v["id"].as_str().unwrap().to_string();
    let (_, list) = s.get("/v1/agents").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(s.delete(&format!("/v1/agents/{id}")).await.0, 204);
    assert_eq!(s.get("/v1/agents/support").await.0, 404);
}

mod openai_client {
    use super::*;
    use async_openai::Client;
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessage, ChatCompletionTool, ChatCompletionTools,
        CreateChatCompletionRequestArgs, FinishReason, FunctionObject,
    };
    use futures::StreamExt;

    fn client(s: &Server) -> Client<OpenAIConfig> {
        let _ = common::client();
        Client::with_config(
            OpenAIConfig::new()
                .with_api_base(format!("{}/v1", s.base))
                .with_api_key("unused"),
        )
    }

    #[tokio::test]
    async fn chat_completions_runs_gateway_tools_for_an_unmodified_client() {
        let (s, up, llm) = setup(4).await;
        llm.push(
            200,
            tool_calls(&[("call_9", "lookup_order", json!({"order_number": "B-7"}))]),
        );
        llm.push(200, reply("B-7 is on its way."));
        let req = CreateChatCompletionRequestArgs::default()
            .model("agent:support")
            .messages(vec![
                ChatCompletionRequestUserMessage::from("Where is B-7?").into(),
            ])
            .build()
            .unwrap();
        let resp = client(&s)
            .chat()
            .create(req)
            .await
            .expect("chat.completion");
        assert_eq!(
            resp.choices[0].message.content.as_deref(),
            Some("B-7 is on its way.")
        );
        assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(up.last().uri, "/orders/B-7");
        assert_eq!(llm.requests()[0]["messages"][0]["role"], "system");

        // A plain model name offers every linked tool and passes the model through.
        llm.push(200, reply("Plain."));
        let req = CreateChatCompletionRequestArgs::default()
            .model("my-model")
            .temperature(0.2)
            .messages(vec![ChatCompletionRequestUserMessage::from("Hi").into()])
            .build()
            .unwrap();
        let resp = client(&s).chat().create(req).await.unwrap();
        assert_eq!(resp.choices[0].message.content.as_deref(), Some("Plain."));
        let sent = llm.requests().last().cloned().unwrap();
        assert_eq!(sent["model"], "my-model");
        assert_eq!(sent["temperature"], 0.2);
        assert_eq!(sent["tools"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn streaming_and_client_tools() {
        let (s, up, llm) = setup(4).await;
        llm.push(
            200,
            tool_calls(&[("s1", "lookup_order", json!({"order_number": "C-3"}))]),
        );
        llm.push(200, reply("C-3 was delivered yesterday, on time."));
        let req = CreateChatCompletionRequestArgs::default()
            .model("agent:support")
            .stream(true)
            .messages(vec![
                ChatCompletionRequestUserMessage::from("And C-3?").into(),
            ])
            .build()
            .unwrap();
        let mut stream = client(&s).chat().create_stream(req).await.expect("stream");
        let mut text = String::new();
        let mut finish = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk");
            for c in chunk.choices {
                text.push_str(c.delta.content.as_deref().unwrap_or(""));
                finish = c.finish_reason.or(finish);
            }
        }
        assert_eq!(text, "C-3 was delivered yesterday, on time.");
        assert_eq!(finish, Some(FinishReason::Stop));
        assert_eq!(up.last().uri, "/orders/C-3");

        // A tool the client defines is offered but not executed: its call goes back to the client.
        let weather = ChatCompletionTools::Function(ChatCompletionTool {
            function: FunctionObject {
                name: "get_weather".into(),
                description: Some("Weather".into()),
                parameters: Some(
                    json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                ),
                strict: None,
            },
        });
        llm.push(
            200,
            tool_calls(&[("w1", "get_weather", json!({"city": "Oslo"}))]),
        );
        let before = up.count();
        let req = CreateChatCompletionRequestArgs::default()
            .model("agent:support")
            .tools(vec![weather])
            .messages(vec![
                ChatCompletionRequestUserMessage::from("Weather in Oslo?").into(),
            ])
            .build()
            .unwrap();
        let resp = client(&s).chat().create(req).await.unwrap();
        assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        let calls = resp.choices[0].message.tool_calls.clone().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            up.count(),
            before,
            "client tools are not executed by the gateway"
        );
        let offered = llm.requests().last().cloned().unwrap();
        let names: Vec<&str> = offered["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["lookup_order", "failing", "get_weather"]);
    }
}
