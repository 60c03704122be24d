//! The call pipeline end to end: real gateway, real upstreams that record what they received.

mod common;

use std::time::{Duration, Instant};

use common::{Server, Upstream, get_hook};
use serde_json::{Value, json};

#[tokio::test]
async fn renders_method_path_query_headers_and_typed_body() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    s.secret("tok", "T0K-value").await;
    s.secret("key", "K3Y").await;
    let wid = s
        .webhook(json!({"name": "Render", "method": "POST", "url": format!("{}/orders/{{id}}/items", up.base), "timeout_ms": 2000,
            "path_params": [
                {"name": "id", "description": "Order id", "value_type": "dynamic"},
                {"name": "seg", "data_type": "integer", "value_type": "dynamic"},
                {"name": "tail", "value_type": "static", "value": "tail end"}],
            "query_params": [
                {"name": "fmt", "value_type": "static", "value": "json"},
                {"name": "q", "value_type": "dynamic"},
                {"name": "page", "data_type": "integer", "value_type": "dynamic", "required": false}],
            "headers": [
                {"name": "Authorization", "value_type": "static", "value": "Bearer {{ secret.tok }}"},
                {"name": "X-Key", "value_type": "secret", "secret": "key"},
                {"name": "X-User", "value_type": "context", "value": "user.id"}],
            "body": [
                {"name": "customer.email", "value_type": "dynamic"},
                {"name": "customer.vip", "data_type": "boolean", "value_type": "context", "value": "user.vip"},
                {"name": "count", "data_type": "integer", "value_type": "dynamic"},
                {"name": "urgent", "data_type": "boolean", "value_type": "dynamic"},
                {"name": "price", "data_type": "number", "value_type": "dynamic"},
                {"name": "ref", "value_type": "dynamic"},
                {"name": "note", "value_type": "static", "value": "from {{ context.user.id }}"}]}))
        .await;
    s.tool("render", &wid).await;
    let (st, v) = s
        .invoke(
            "render",
            json!({"id": "a/b c é", "seg": "42", "q": "x&y=1", "customer.email": "ann@example.com",
                   "count": "7", "urgent": "true", "price": "9.5", "ref": 1001}),
            json!({"user": {"id": "u-9", "vip": true}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "success", "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(up.count(), 1);
    let r = up.last();
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.uri,
        "/orders/a%2Fb%20c%20%C3%A9/items/42/tail%20end?fmt=json&q=x%26y%3D1"
    );
    assert_eq!(r.header("authorization"), Some("Bearer T0K-value"));
    assert_eq!(r.header("x-key"), Some("K3Y"));
    assert_eq!(r.header("x-user"), Some("u-9"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"customer": {"email": "ann@example.com", "vip": true}, "count": 7, "urgent": true,
               "price": 9.5, "ref": "1001", "note": "from u-9"})
    );
    // The call result carries the parsed response and the content for the model.
    assert_eq!(v["status"], 200);
    assert_eq!(v["response"]["method"], "POST");
    assert!(
        v["content"]
            .as_str()
            .unwrap()
            .contains("\"method\":\"POST\"")
    );
    assert!(v["call_id"].as_str().unwrap().starts_with("call_"));
}

async fn typed_hook(s: &Server, up: &Upstream) {
    let wid = s
        .webhook(
            json!({"name": "Typed", "method": "POST", "url": format!("{}/typed", up.base),
            "body": [
                {"name": "s", "value_type": "dynamic"},
                {"name": "i", "data_type": "integer", "value_type": "dynamic"},
                {"name": "n", "data_type": "number", "value_type": "dynamic", "required": false},
                {"name": "b", "data_type": "boolean", "value_type": "dynamic", "required": false}],
            "headers": [{"name": "X-Tenant", "value_type": "context", "value": "tenant.id"}]}),
        )
        .await;
    s.tool("typed", &wid).await;
}

#[tokio::test]
async fn coercion_table_and_refusals_send_nothing() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    typed_hook(&s, &up).await;
    let ctx = json!({"tenant": {"id": "t1"}});
    let good = [
        (json!({"s": "x", "i": 1}), json!({"s": "x", "i": 1})),
        (json!({"s": 1001, "i": "42"}), json!({"s": "1001", "i": 42})),
        (
            json!({"s": true, "i": 3.0, "n": "2.5", "b": "false"}),
            json!({"s": "true", "i": 3, "n": 2.5, "b": false}),
        ),
        (
            json!({"s": "x", "i": -1, "n": 7, "b": true}),
            json!({"s": "x", "i": -1, "n": 7, "b": true}),
        ),
        (
            json!("{\"s\": \"from string\", \"i\": \"5\"}"),
            json!({"s": "from string", "i": 5}),
        ),
        (
            json!({"s": "x", "i": 1, "n": null}),
            json!({"s": "x", "i": 1}),
        ),
    ];
    for (i, (args, sent)) in good.iter().enumerate() {
        let (st, v) = s.invoke("typed", args.clone(), ctx.clone()).await;
        assert_eq!(st, 200, "{args}: {v}");
        assert_eq!(up.count(), i + 1);
        assert_eq!(up.last().json(), *sent, "{args}");
    }
    let sent_before = up.count();
    let bad = [
        (json!({"i": 1}), "s"),
        (json!({"s": "x"}), "i"),
        (json!({"s": "x", "i": "4.5"}), "i"),
        (json!({"s": "x", "i": true}), "i"),
        (json!({"s": {"nested": 1}, "i": 1}), "s"),
        (json!({"s": "x", "i": 1, "n": "lots"}), "n"),
        (json!({"s": "x", "i": 1, "b": "yes"}), "b"),
        (json!({"s": "x", "i": 1, "extra": 1}), "extra"),
        (json!("{\"s\": "), "arguments"),
        (json!([1, 2]), "arguments"),
    ];
    for (args, field) in bad {
        let (st, v) = s.invoke("typed", args.clone(), ctx.clone()).await;
        assert_eq!(st, 422, "{args}: {v}");
        assert_eq!(v["error"]["code"], "invalid_arguments");
        let details = v["error"]["details"].as_array().unwrap();
        assert!(
            details.iter().any(|d| d["field"] == field),
            "{args}: expected {field} in {v}"
        );
        assert!(v["error"]["call_id"].is_string());
    }
    // Missing context refuses too.
    let (st, v) = s
        .invoke("typed", json!({"s": "x", "i": 1}), json!({}))
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "context.tenant.id");
    assert_eq!(up.count(), sent_before, "a refused call sends nothing");
    // Refusals are recorded.
    let (_, calls) = s.get("/v1/calls?outcome=invalid_arguments").await;
    assert_eq!(calls["items"].as_array().unwrap().len(), 11);
    assert!(
        calls["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["request"].is_null())
    );
}

#[tokio::test]
async fn slow_upstream_times_out_promptly() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let mut def = get_hook("Slow", &format!("{}/slow/3000", up.base));
    def["timeout_ms"] = json!(300);
    let wid = s.webhook(def).await;
    s.tool("slow", &wid).await;
    let start = Instant::now();
    let (st, v) = s.invoke("slow", json!({}), json!({})).await;
    let took = start.elapsed();
    assert_eq!(st, 200);
    assert_eq!(v["outcome"], "timeout", "{v}");
    assert_eq!(v["ok"], false);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        took >= Duration::from_millis(300),
        "gave up early: {took:?}"
    );
    assert!(v["content"].as_str().unwrap().contains("300 ms"), "{v}");
}

#[tokio::test]
async fn http_errors_and_refused_connections_are_results() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    for code in [404, 500] {
        let wid = s
            .webhook(get_hook(
                &format!("E{code}"),
                &format!("{}/status/{code}", up.base),
            ))
            .await;
        s.tool(&format!("e{code}"), &wid).await;
        let (st, v) = s.invoke(&format!("e{code}"), json!({}), json!({})).await;
        assert_eq!(st, 200);
        assert_eq!(v["outcome"], "http_error", "{v}");
        assert_eq!(v["status"], code);
        let content = v["content"].as_str().unwrap();
        assert!(
            content.contains(&code.to_string()) && content.starts_with("The tool call failed"),
            "{content}"
        );
    }
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let wid = s
        .webhook(get_hook("Closed", &format!("http://127.0.0.1:{closed}/x")))
        .await;
    s.tool("closed", &wid).await;
    let (st, v) = s.invoke("closed", json!({}), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(v["outcome"], "network_error", "{v}");
    assert!(
        v["content"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{v}"
    );
    // An upstream that sends a whole head, then closes halfway through the body it announced.
    let cut = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cut_port = cut.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = cut.accept().unwrap();
        let mut req = [0u8; 4096];
        let _ = conn.read(&mut req).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
            .unwrap();
    });
    let wid = s
        .webhook(get_hook("Cut", &format!("http://127.0.0.1:{cut_port}/x")))
        .await;
    s.tool("cut", &wid).await;
    let (st, v) = s.invoke("cut", json!({}), json!({})).await;
    server.join().unwrap();
    assert_eq!(
        (st, v["outcome"].as_str()),
        (200, Some("network_error")),
        "{v}"
    );
    let rec = s.record_of(&v).await;
    assert_eq!(
        rec["error"],
        "the response body could not be read: the connection closed before the response was complete",
        "{rec}"
    );
}

#[tokio::test]
async fn secret_rotation_and_webhook_edits_apply_on_the_next_call() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let sid = s.secret("rot", "first-value").await;
    let mut def = get_hook("Rotating", &format!("{}/r", up.base));
    def["headers"] = json!([{"name": "X-Key", "value_type": "secret", "secret": "rot"}]);
    let wid = s.webhook(def.clone()).await;
    s.tool("rotating", &wid).await;
    s.invoke("rotating", json!({}), json!({})).await;
    assert_eq!(up.last().header("x-key"), Some("first-value"));
    s.put(
        &format!("/v1/secrets/{sid}"),
        json!({"value": "second-value"}),
    )
    .await;
    s.invoke("rotating", json!({}), json!({})).await;
    assert_eq!(up.last().header("x-key"), Some("second-value"));
    def["headers"] = json!([{"name": "X-Other", "value_type": "static", "value": "edited"}]);
    def["url"] = json!(format!("{}/edited", up.base));
    let (st, _) = s.put(&format!("/v1/webhooks/{wid}"), def).await;
    assert_eq!(st, 200);
    s.invoke("rotating", json!({}), json!({})).await;
    let r = up.last();
    assert_eq!(r.uri, "/edited");
    assert_eq!(r.header("x-other"), Some("edited"));
    assert_eq!(r.header("x-key"), None);
}

#[tokio::test]
async fn response_fields_size_cut_and_form_bodies() {
    let s = Server::start_with(|c| c.max_content_bytes = 2000).await;
    let up = Upstream::start().await;
    let mut def = get_hook("Fields", &format!("{}/echo", up.base));
    def["response_fields"] = json!(["method", "headers.x-a"]);
    def["headers"] = json!([{"name": "X-A", "value_type": "static", "value": "kept"}]);
    let wid = s.webhook(def).await;
    s.tool("fields", &wid).await;
    let (_, v) = s.invoke("fields", json!({}), json!({})).await;
    let content: Value = serde_json::from_str(v["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        content,
        json!({"method": "GET", "headers": {"x-a": "kept"}})
    );
    assert!(
        v["response"]["uri"].is_string(),
        "the result keeps the whole response"
    );

    let wid = s
        .webhook(get_hook("Big", &format!("{}/big/100000", up.base)))
        .await;
    s.tool("big", &wid).await;
    let (_, v) = s.invoke("big", json!({}), json!({})).await;
    assert_eq!(v["outcome"], "success");
    let content = v["content"].as_str().unwrap();
    assert!(content.len() < 2300, "content is cut: {}", content.len());
    assert!(
        content.contains("[truncated: the response was"),
        "and says so"
    );
    let resp = v["response"]
        .as_str()
        .expect("over 64 KiB the response is kept as cut text");
    assert_eq!(resp.len(), 64 * 1024);

    let wid = s
        .webhook(json!({"name": "Form", "method": "POST", "url": format!("{}/form", up.base), "body_encoding": "form",
            "body": [{"name": "a", "data_type": "integer", "value_type": "dynamic"}, {"name": "b", "value_type": "dynamic"}]}))
        .await;
    s.tool("form", &wid).await;
    let (_, v) = s
        .invoke("form", json!({"a": "1", "b": "x y&z"}), json!({}))
        .await;
    assert_eq!(v["outcome"], "success");
    let r = up.last();
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(r.text(), "a=1&b=x+y%26z");
}

#[tokio::test]
async fn retry_retries_transient_failures_only() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let mut def = get_hook("Flaky", &format!("{}/flaky/1", up.base));
    def["retry"] = json!({"max_attempts": 3});
    let wid = s.webhook(def).await;
    s.tool("flaky", &wid).await;
    let (_, v) = s.invoke("flaky", json!({}), json!({})).await;
    assert_eq!(v["outcome"], "success", "{v}");
    assert_eq!(up.count(), 2, "one 503, then success");
    let rec = s.record_of(&v).await;
    assert_eq!(rec["attempts"], 2);

    let up2 = Upstream::start().await;
    let mut def = get_hook("Bad", &format!("{}/status/400", up2.base));
    def["retry"] = json!({"max_attempts": 4});
    let wid = s.webhook(def).await;
    s.tool("bad", &wid).await;
    let (_, v) = s.invoke("bad", json!({}), json!({})).await;
    assert_eq!(v["outcome"], "http_error");
    assert_eq!(up2.count(), 1, "a 400 is never retried");

    let up3 = Upstream::start().await;
    let wid = s
        .webhook(get_hook("NoRetry", &format!("{}/flaky/1", up3.base)))
        .await;
    s.tool("noretry", &wid).await;
    let (_, v) = s.invoke("noretry", json!({}), json!({})).await;
    assert_eq!(v["status"], 503);
    assert_eq!(up3.count(), 1, "no retry policy, no retry");
}

#[tokio::test]
async fn secrets_are_redacted_even_when_echoed() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let secret = "pa ss/w+rd&=Zx91";
    s.secret("pw", secret).await;
    let mut def = get_hook("Echo", &format!("{}/echo", up.base));
    def["method"] = json!("POST");
    def["headers"] = json!([{"name": "Authorization", "value_type": "static", "value": "Basic {{ secret.pw }}"}]);
    def["query_params"] = json!([{"name": "key", "value_type": "secret", "secret": "pw"}]);
    def["body"] = json!([{"name": "password", "value_type": "secret", "secret": "pw"}]);
    let wid = s.webhook(def).await;
    s.tool("echo", &wid).await;
    let (_, v) = s.invoke("echo", json!({}), json!({})).await;
    assert_eq!(v["outcome"], "success", "{v}");
    assert!(
        up.last().text().contains(secret),
        "the upstream got the real value"
    );
    let rec = s.record_of(&v).await;
    for text in [v.to_string(), rec.to_string()] {
        assert!(!text.contains("Zx91"), "secret leaked: {text}");
        assert!(!text.contains("w%2Brd"), "encoded secret leaked: {text}");
    }
    assert!(
        rec["request"]["url"]
            .as_str()
            .unwrap()
            .contains("key=[REDACTED]"),
        "{rec}"
    );
    assert_eq!(rec["request"]["body"]["password"], "[REDACTED]");
    assert!(rec["response"]["body"].to_string().contains("[REDACTED]"));
}

/// A JSON body handed on as text (no tree built) answers, records and reads back as its parsed
/// value; one that holds a secret in any form takes the redacting path instead.
#[tokio::test]
async fn a_json_body_is_handed_on_whole_and_recorded_as_its_value() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let secret = "k3y-9f8e7d6c";
    s.secret("key", secret).await;
    let body = r#"{ "zeta": [1, 2.50, -3e2, 18446744073709551615, null, true],
        "alpha": {"q\"uote": "\u00e9\n\t<\/x>", "empty": {}},
        "mid": "plain" }"#;
    let mut def = get_hook("Raw", &format!("{}/raw", up.base));
    def["query_params"] = json!([
        {"name": "body", "value_type": "dynamic", "description": "the body to answer"},
        {"name": "k", "value_type": "secret", "secret": "key"}
    ]);
    let wid = s.webhook(def).await;
    s.tool("raw", &wid).await;
    let parsed: Value = serde_json::from_str(body).unwrap();
    let (st, v) = s.invoke("raw", json!({"body": body}), json!({})).await;
    assert_eq!((st, &v["outcome"]), (200, &json!("success")), "{v}");
    assert_eq!(v["response"], parsed, "{v}");
    let content = v["content"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(content).unwrap(), parsed);
    assert!(
        content.starts_with(r#"{"zeta":[1,2.5,-300.0,18446744073709551615,null,true],"alpha""#),
        "compact, in the upstream's key order: {content}"
    );
    let rec = s.record_of(&v).await;
    assert_eq!(rec["response"]["status"], 200);
    assert_eq!(rec["response"]["body"], parsed, "{rec}");

    // The secret echoed back, raw and escaped: redacted everywhere, as before.
    for echoed in [
        format!(r#"{{"echo": "{secret}"}}"#),
        format!(r#"{{"{secret}": 1}}"#),
        r#"{"echo": "\u006b3y-9f8e7d6c"}"#.to_string(),
    ] {
        let (_, v) = s.invoke("raw", json!({"body": echoed}), json!({})).await;
        assert_eq!(v["outcome"], "success", "{v}");
        let rec = s.record_of(&v).await;
        // (The arguments hold the escaped form as the caller wrote it; the body's is decoded.)
        for text in [&v["response"], &v["content"], &rec["response"]] {
            assert!(
                !text.to_string().contains("9f8e7d6c"),
                "secret leaked: {text}"
            );
        }
        assert!(v["content"].as_str().unwrap().contains("[REDACTED]"), "{v}");
        assert!(
            rec["response"]["body"].to_string().contains("[REDACTED]"),
            "{rec}"
        );
    }
}

#[tokio::test]
async fn network_policy_blocks_internal_destinations() {
    let s = Server::start_with(|c| c.allow_hosts = vec![]).await;
    let up = Upstream::start().await;
    let p = up.port;
    let urls = [
        format!("http://127.0.0.1:{p}/x"),
        format!("http://localhost:{p}/x"),
        format!("http://[::1]:{p}/x"),
        format!("http://[::ffff:127.0.0.1]:{p}/x"),
        format!("http://2130706433:{p}/x"),
        format!("http://0x7f000001:{p}/x"),
        format!("http://127.1:{p}/x"),
        format!("http://0.0.0.0:{p}/x"),
    ];
    for (i, u) in urls.iter().enumerate() {
        let wid = s.webhook(get_hook(&format!("B{i}"), u)).await;
        s.tool(&format!("b{i}"), &wid).await;
        let (st, v) = s.invoke(&format!("b{i}"), json!({}), json!({})).await;
        assert_eq!(st, 200);
        assert_eq!(v["outcome"], "blocked", "{u}: {v}");
        assert!(v["content"].as_str().unwrap().contains("network policy"));
    }
    assert_eq!(up.count(), 0, "no blocked request reached the upstream");
}

#[tokio::test]
async fn redirects_to_internal_addresses_are_blocked() {
    let s = Server::start().await; // allows 127.0.0.1 only
    let up = Upstream::start().await;
    for (i, target) in [
        format!("http://127.0.0.2:{}/x", up.port),
        format!("http://[::1]:{}/x", up.port),
    ]
    .iter()
    .enumerate()
    {
        let url = format!("{}/redirect?to={}", up.base, urlencode(target));
        let wid = s.webhook(get_hook(&format!("R{i}"), &url)).await;
        s.tool(&format!("r{i}"), &wid).await;
        let (_, v) = s.invoke(&format!("r{i}"), json!({}), json!({})).await;
        assert_eq!(v["outcome"], "blocked", "{target}: {v}");
    }
    assert_eq!(up.count(), 2, "only the allowed first hops arrived");
    // An allowed redirect is followed.
    let url = format!(
        "{}/redirect?to={}",
        up.base,
        urlencode(&format!("{}/landed", up.base))
    );
    let wid = s.webhook(get_hook("Ok redirect", &url)).await;
    s.tool("ok_redirect", &wid).await;
    let (_, v) = s.invoke("ok_redirect", json!({}), json!({})).await;
    assert_eq!(v["outcome"], "success", "{v}");
    assert_eq!(up.last().uri, "/landed");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn history_filters_pages_and_survives_restart() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let ok = s.webhook(get_hook("Ok", &format!("{}/ok", up.base))).await;
    let bad = s
        .webhook(get_hook("Bad", &format!("{}/status/500", up.base)))
        .await;
    s.tool("ok", &ok).await;
    s.tool("bad", &bad).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            s.invoke("ok", json!({}), json!({})).await.1["call_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids.push(
        s.invoke("bad", json!({}), json!({})).await.1["call_id"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let (_, t) = s
        .post(&format!("/v1/webhooks/{ok}/test"), json!({"arguments": {}}))
        .await;
    assert_eq!(t["outcome"], "success");
    ids.push(t["call_id"].as_str().unwrap().to_string());

    let count = |v: &Value| v["items"].as_array().unwrap().len();
    let s = s.restart().await;
    let (_, all) = s.get("/v1/calls").await;
    assert_eq!(count(&all), 5);
    let newest_first: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(newest_first, expected);
    assert_eq!(count(&s.get("/v1/calls?tool=ok").await.1), 3);
    assert_eq!(count(&s.get("/v1/calls?outcome=failed").await.1), 1);
    assert_eq!(count(&s.get("/v1/calls?outcome=http_error").await.1), 1);
    assert_eq!(count(&s.get("/v1/calls?outcome=success").await.1), 4);
    assert_eq!(count(&s.get("/v1/calls?source=test").await.1), 1);
    assert_eq!(
        count(&s.get(&format!("/v1/calls?webhook_id={ok}")).await.1),
        4
    );
    let (_, page1) = s.get("/v1/calls?limit=2").await;
    assert_eq!(count(&page1), 2);
    let next = page1["next_before"].as_str().unwrap();
    let (_, page2) = s.get(&format!("/v1/calls?limit=2&before={next}")).await;
    let (_, page3) = s
        .get(&format!(
            "/v1/calls?limit=2&before={}",
            page2["next_before"].as_str().unwrap()
        ))
        .await;
    let paged: Vec<&str> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| {
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        paged,
        newest_first.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let (st, rec) = s.get(&format!("/v1/calls/{}", ids[3])).await;
    assert_eq!(st, 200);
    assert_eq!(rec["tool"], "bad");
    assert_eq!(rec["response"]["status"], 500);
    assert_eq!(rec["source"], "invoke");
    assert_eq!(s.get("/v1/calls?outcome=nope").await.0, 400);
    // The same kind of mistake answers the same status on every filter.
    assert_eq!(s.get("/v1/calls?source=nope").await.0, 400);
    let metrics = s.get_text("/metrics").await;
    assert!(metrics.contains("# TYPE toolgate_calls_total counter"));
}

#[tokio::test]
async fn metrics_count_calls_by_tool_and_outcome() {
    // A history queue larger than the default (`--history-queue-records`), told in the metrics.
    let s = Server::start_with(|c| c.history_queue_records = 20_000).await;
    let up = Upstream::start().await;
    let wid = s.webhook(get_hook("M", &format!("{}/m", up.base))).await;
    s.tool("measured", &wid).await;
    s.invoke("measured", json!({}), json!({})).await;
    s.invoke("measured", json!({}), json!({})).await;
    s.invoke("measured", json!({"nope": 1}), json!({})).await;
    let m = s.get_text("/metrics").await;
    assert!(
        m.contains("toolgate_calls_total{tool=\"measured\",outcome=\"success\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("toolgate_calls_total{tool=\"measured\",outcome=\"invalid_arguments\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("toolgate_call_duration_seconds_count{tool=\"measured\"} 3"),
        "{m}"
    );
    // The history recorder's own counters: reading the history waits for the records queued.
    let (st, _) = s.get("/v1/calls").await;
    assert_eq!(st, 200);
    let m = s.get_text("/metrics").await;
    let sample = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    assert_eq!(sample("toolgate_history_records_total"), 3.0, "{m}");
    assert_eq!(sample("toolgate_history_queued_records"), 0.0);
    assert_eq!(sample("toolgate_history_queue_capacity_records"), 20_000.0);
    assert_eq!(sample("toolgate_history_room_waits_total"), 0.0);
    assert_eq!(sample("toolgate_history_failed_batches_total"), 0.0);
    assert!(sample("toolgate_history_batches_total") >= 1.0);
}

#[tokio::test]
async fn shipped_tools_compile_to_valid_schemas_matching_golden_files() {
    let tools_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
    let s = Server::start_with(|c| c.tools_dir = tools_dir).await;
    let (st, v) = s.get("/v1/tools/openai").await;
    assert_eq!(st, 200);
    let tools = v["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 4);
    let (_, list) = s.get("/v1/tools").await;
    for t in list["items"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        for strict in [false, true] {
            let (st, def) = s
                .get(&format!("/v1/tools/{id}/schema?strict={strict}"))
                .await;
            assert_eq!(st, 200);
            let params = &def["function"]["parameters"];
            assert!(jsonschema::meta::is_valid(params), "{params}");
            assert_eq!(params["additionalProperties"], false);
            if strict {
                assert_eq!(def["function"]["strict"], true);
                let props: Vec<&String> =
                    params["properties"].as_object().unwrap().keys().collect();
                assert_eq!(params["required"].as_array().unwrap().len(), props.len());
            }
        }
    }
    let golden_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/openai_tools.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(
            &golden_path,
            serde_json::to_string_pretty(&v).unwrap() + "\n",
        )
        .unwrap();
    }
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).expect("golden file")).unwrap();
    assert_eq!(
        v, golden,
        "compiled schemas changed; rerun with UPDATE_GOLDEN=1 if intended"
    );
    // Loading is an idempotent upsert: a restart keeps the same ids.
    let s = s.restart().await;
    let (_, again) = s.get("/v1/tools").await;
    assert_eq!(again, list);
    // A tool whose secret is not set fails clearly, without sending anything.
    let (st, r) = s
        .invoke("send_notification", json!({"Message": "hello"}), json!({}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(r["outcome"], "config_error", "{r}");
    assert!(r["content"].as_str().unwrap().contains("notify_access_key"));
}

#[tokio::test]
async fn history_retention_keeps_the_newest_records() {
    let s = Server::start_with(|c| c.history_max_records = 3).await;
    let up = Upstream::start().await;
    let wid = s.webhook(get_hook("Kept", &format!("{}/k", up.base))).await;
    s.tool("kept", &wid).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            s.invoke("kept", json!({}), json!({})).await.1["call_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (_, v) = s.get("/v1/calls").await;
    let got: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[5].as_str(), ids[4].as_str(), ids[3].as_str()]);
    assert_eq!(s.get(&format!("/v1/calls/{}", ids[0])).await.0, 404);
}

#[tokio::test]
async fn templated_bodies_stay_valid_json() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    s.secret("sms_key", "sms-k3y").await;
    let wid = s
        .webhook(json!({"name": "SMS", "method": "POST", "url": format!("{}/sms", up.base),
            "headers": [{"name": "X-Secret-Key", "value_type": "secret", "secret": "sms_key"}],
            "body": [{"name": "count", "data_type": "integer", "value_type": "dynamic", "required": false}],
            "body_template": {"body": "{{ args.text }}", "n": "{{ args.count }}", "sig": "key={{ secret.sms_key }}",
                              "recipientList": [{"recipientNo": "{{ context.tags.phone_number }}"}]}}))
        .await;
    s.tool("sms", &wid).await;
    let (_, schema) = s.get("/v1/tools/openai").await;
    let params = &schema["tools"][0]["function"]["parameters"];
    assert_eq!(params["properties"]["text"]["type"], "string");
    assert_eq!(params["properties"]["count"]["type"], "integer");
    assert_eq!(params["required"], json!(["text"]));
    let nasty = "Quote \" back\\slash\nnewline\t tab }, \"injected\": true, é ü 日本 😀";
    let (st, v) = s
        .invoke(
            "sms",
            json!({"text": nasty, "count": "3"}),
            json!({"tags": {"phone_number": "+49 151 1234"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "success", "{v}");
    let r = up.last();
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&r.body).expect("valid JSON arrived");
    assert_eq!(
        body,
        json!({"body": nasty, "n": 3, "sig": "key=sms-k3y", "recipientList": [{"recipientNo": "+49 151 1234"}]})
    );
    let rec = s.record_of(&v).await;
    assert_eq!(rec["request"]["body"]["sig"], "key=[REDACTED]");
    // Missing required argument and invalid template definitions are refused.
    let (st, _) = s
        .invoke("sms", json!({}), json!({"tags": {"phone_number": "1"}}))
        .await;
    assert_eq!(st, 422);
    let (st, v) = s
        .post(
            "/v1/webhooks",
            json!({"name": "Bad", "method": "GET", "url": "https://a.example/x",
            "body_template": {"a": "{{ args.1x }}", "b": "{{ secret.nope }}"}}),
        )
        .await;
    assert_eq!(st, 422);
    assert!(v["error"]["details"].as_array().unwrap().len() >= 3, "{v}");
}

/// `dry_run: true` shows the exact request as a curl command, secrets redacted, and sends and
/// records nothing.
#[tokio::test]
async fn a_dry_run_shows_the_request_without_sending_it() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    s.secret("api_key", "dry-run-secret-4411").await;
    let hook = s
        .webhook(json!({"name": "Create", "method": "POST", "url": format!("{}/orders/{{id}}", up.base),
            "path_params": [{"name": "id", "value_type": "dynamic"}],
            "headers": [{"name": "X-Api-Key", "value_type": "secret", "secret": "api_key"}],
            "body": [{"name": "note", "value_type": "dynamic"}, {"name": "key", "value_type": "static", "value": "it's {{ secret.api_key }}"}]}))
        .await;
    let (st, v) = s
        .post(
            &format!("/v1/webhooks/{hook}/test"),
            json!({"arguments": {"id": "A 1", "note": "hi"}, "dry_run": true}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["ok"], true);
    let curl = v["curl"].as_str().unwrap();
    assert!(curl.starts_with("curl -X POST '"), "{curl}");
    assert!(curl.contains("/orders/A%201'"), "{curl}");
    assert!(curl.contains("-H 'X-Api-Key: [REDACTED]'"), "{curl}");
    assert!(curl.contains("--data-binary"), "{curl}");
    assert!(
        curl.contains(r"it'\''s [REDACTED]"),
        "quotes survive the shell: {curl}"
    );
    assert!(!v.to_string().contains("dry-run-secret-4411"), "{v}");
    assert_eq!(up.count(), 0, "a dry run sends nothing");
    let (_, calls) = s.get("/v1/calls").await;
    assert!(
        calls["items"].as_array().unwrap().is_empty(),
        "and records nothing"
    );
    let (st, v) = s
        .post(
            &format!("/v1/webhooks/{hook}/test"),
            json!({"arguments": {}, "dry_run": true}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["ok"], false);
    assert_eq!(v["outcome"], "invalid_arguments", "{v}");
}

/// A slow call recorded among fast ones: every call's record is found by its id, and paging
/// through the history newest first lists each record once, in id order. A call's record is
/// written when it ends, so a slow call lands in a later write batch than calls that started
/// after it; the history must not lose it between pages or lookups.
#[tokio::test]
async fn a_slow_call_among_fast_ones_is_found_by_id_and_listed_once_in_order() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let slow = s
        .webhook(get_hook("Slow", &format!("{}/slow/300", up.base)))
        .await;
    let fast = s.webhook(get_hook("Fast", &format!("{}/f", up.base))).await;
    s.tool("slow", &slow).await;
    s.tool("fast", &fast).await;
    let id_of = |v: &Value| v["call_id"].as_str().expect("call_id").to_string();
    let slow_call = async {
        let (st, v) = s.invoke("slow", json!({}), json!({})).await;
        assert_eq!(v["outcome"], "success", "{st} {v}");
        vec![id_of(&v)]
    };
    // Fast calls before, during and after the slow one, spread over several write batches.
    let fast_calls = async {
        let mut ids = Vec::new();
        let end = Instant::now() + Duration::from_millis(450);
        while Instant::now() < end {
            let (_, v) = s.invoke("fast", json!({}), json!({})).await;
            ids.push(id_of(&v));
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        ids
    };
    let (slow_ids, fast_ids) = tokio::join!(slow_call, fast_calls);
    assert!(fast_ids.len() >= 10, "only {} fast calls", fast_ids.len());
    let mut all: Vec<String> = slow_ids.into_iter().chain(fast_ids).collect();
    for id in &all {
        let (st, rec) = s.get(&format!("/v1/calls/{id}")).await;
        assert_eq!(st, 200, "the record of {id} is not found: {rec}");
        assert_eq!(rec["id"], id.as_str());
    }
    let mut paged = Vec::new();
    let mut before = String::new();
    loop {
        let path = if before.is_empty() {
            "/v1/calls?limit=3".to_string()
        } else {
            format!("/v1/calls?limit=3&before={before}")
        };
        let (st, page) = s.get(&path).await;
        assert_eq!(st, 200, "{page}");
        let items = page["items"].as_array().expect("items");
        paged.extend(items.iter().map(|c| c["id"].as_str().unwrap().to_string()));
        match page["next_before"].as_str() {
            Some(n) if !items.is_empty() => before = n.to_string(),
            _ => break,
        }
    }
    all.sort();
    all.reverse();
    assert_eq!(paged, all, "pages, newest first, list every call once");
}

/// A raw HTTP/1.1 upstream on loopback that answers every request with `{"ok":true}` and counts
/// the connections it accepted; with `close_after_answer` it closes each connection after its
/// first answer without saying so (as a server whose keep-alive timeout ran out does).
async fn raw_upstream(
    close_after_answer: bool,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Requests here are GETs without a body: each ends with a blank line.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
                        if sock.write_all(answer).await.is_err() || close_after_answer {
                            return;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (base, accepted)
}

#[tokio::test]
async fn plain_http_calls_reuse_one_kept_alive_connection() {
    let s = Server::start_with(|c| c.http_threads = 1).await;
    let (base, accepted) = raw_upstream(false).await;
    let w = s.webhook(get_hook("Kept", &format!("{base}/x"))).await;
    s.tool("kept", &w).await;
    for _ in 0..5 {
        let (st, v) = s.invoke("kept", json!({}), json!({})).await;
        assert_eq!((st, v["outcome"].as_str()), (200, Some("success")), "{v}");
        assert_eq!(v["response"], json!({"ok": true}));
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_reused() {
    let s = Server::start_with(|c| c.http_threads = 1).await;
    let (base, accepted) = raw_upstream(true).await;
    let w = s.webhook(get_hook("Closing", &format!("{base}/x"))).await;
    s.tool("closing", &w).await;
    for _ in 0..3 {
        let (st, v) = s.invoke("closing", json!({}), json!({})).await;
        assert_eq!((st, v["outcome"].as_str()), (200, Some("success")), "{v}");
        // Time for the upstream's close to arrive, as it does on a connection left idle.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// Plain-HTTP upstreams are called on the gateway's own connection pool, with the default
/// headers reqwest sent before; `https://` ones still go through reqwest (here: a TLS handshake
/// with a plain-HTTP server fails as a classified network error that quotes no URL).
#[tokio::test]
async fn plain_calls_send_the_default_headers_and_https_goes_through_reqwest() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let host = up.base.trim_start_matches("http://").to_string();
    let plain = s
        .webhook(get_hook("Plain", &format!("{}/plain", up.base)))
        .await;
    s.tool("plain", &plain).await;
    let (st, v) = s.invoke("plain", json!({}), json!({})).await;
    assert_eq!((st, v["outcome"].as_str()), (200, Some("success")), "{v}");
    let got = up.last();
    let ua = format!("toolgate/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(got.header("user-agent"), Some(ua.as_str()));
    assert_eq!(got.header("accept"), Some("*/*"));
    assert_eq!(got.header("host"), Some(host.as_str()));

    let tls = s
        .webhook(get_hook("Tls", &format!("https://{host}/tls?k=v")))
        .await;
    s.tool("tls", &tls).await;
    let (st, v) = s.invoke("tls", json!({}), json!({})).await;
    assert_eq!(
        (st, v["outcome"].as_str()),
        (200, Some("network_error")),
        "{v}"
    );
    let text = v.to_string();
    assert!(!text.contains("https://"), "{text}");
    assert_eq!(up.count(), 1, "the TLS attempt never reached the handler");
}

#[tokio::test]
async fn the_body_is_framed_by_toolgate_whatever_framing_headers_a_definition_sets() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let wid = s
        .webhook(
            json!({"name": "Framed", "method": "POST", "url": format!("{}/framed", up.base),
            "headers": [{"name": "Content-Length", "value_type": "static", "value": "999"},
                        {"name": "Transfer-Encoding", "value_type": "static", "value": "chunked"},
                        {"name": "X-Kept", "value_type": "static", "value": "yes"}],
            "body": [{"name": "note", "value_type": "dynamic"}]}),
        )
        .await;
    s.tool("framed", &wid).await;
    for round in 0..3 {
        let note = "n".repeat(round * 40);
        let (status, v) = s.invoke("framed", json!({"note": note}), json!({})).await;
        assert_eq!((status, &v["outcome"]), (200, &json!("success")), "{v}");
        let r = up.last();
        let sent = serde_json::to_vec(&json!({"note": note})).expect("json");
        assert_eq!(r.body, sent, "round {round}: the whole body arrived");
        assert_eq!(
            r.header("content-length"),
            Some(sent.len().to_string().as_str())
        );
        assert_eq!(r.header("transfer-encoding"), None);
        assert_eq!(r.header("x-kept"), Some("yes"));
        // The next round goes over the same kept-alive connection: it was left clean.
    }
    assert_eq!(up.count(), 3);
}

/// Stopping the gateway answers the call in flight, and closes idle kept-alive connections
/// rather than waiting for their clients to.
#[tokio::test]
async fn stopping_answers_the_call_in_flight_and_closes_idle_connections() {
    let mut s = Server::start().await;
    let up = Upstream::start().await;
    let wid = s
        .webhook(get_hook("Slow", &format!("{}/slow/700", up.base)))
        .await;
    s.tool("slow", &wid).await;
    // An idle kept-alive connection: opened by a request, then left open.
    let idle = common::client();
    let health = idle.get(format!("{}/healthz", s.base)).send().await;
    assert!(health.expect("health").status().is_success());
    let (base, http) = (s.base.clone(), common::client());
    let in_flight = tokio::spawn(async move {
        http.post(format!("{base}/v1/tools/slow/invoke"))
            .json(&json!({"arguments": {}}))
            .send()
            .await
    });
    common::eventually(5, || {
        let up = up.clone();
        async move { (up.count() == 1).then_some(()) }
    })
    .await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), s.stop())
        .await
        .expect("the stop waited on a client's idle kept-alive connection");
    let stopped_after = started.elapsed();
    let answer = in_flight
        .await
        .expect("task")
        .expect("the call in flight was answered");
    assert_eq!(answer.status(), 200);
    let v: Value = answer.json().await.expect("json");
    assert_eq!(v["outcome"], "success", "{v}");
    assert!(
        stopped_after >= Duration::from_millis(400),
        "the stop waited for the call in flight ({stopped_after:?})"
    );
    drop(idle);
}

/// A tool call's answer says what it is: JSON, with its length (the front builds it directly).
#[tokio::test]
async fn a_tool_call_answer_is_json_with_its_length() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let wid = s.webhook(get_hook("J", &format!("{}/j", up.base))).await;
    s.tool("answered", &wid).await;
    let r = s
        .http
        .post(format!("{}/v1/tools/answered/invoke", s.base))
        .json(&json!({"arguments": {}}))
        .send()
        .await
        .expect("invoke");
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["outcome"], "success", "{v}");
}
