//! Admin API over real HTTP: CRUD, search, validation, delete guards, auth, limits, restart, races.

mod common;

use common::{Server, Upstream, assert_error, get_hook};
use serde_json::{Value, json};

#[tokio::test]
async fn crud_round_trips_search_and_unlink() {
    let s = Server::start().await;
    // secrets
    let sid = s.secret("crm_token", "tok-123").await;
    let (st, v) = s.get("/v1/secrets").await;
    assert_eq!(st, 200);
    assert_eq!(v["items"][0]["name"], "crm_token");
    let (st, v) = s
        .post("/v1/secrets", json!({"name": "crm_token", "value": "x"}))
        .await;
    assert_eq!(st, 409);
    assert_error(&v, "name_taken");
    let (st, v) = s
        .put(&format!("/v1/secrets/{sid}"), json!({"value": "tok-456"}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["id"], sid);
    assert!(v.get("value").is_none());

    // webhooks
    let def = json!({"name": "Order status", "description": "Look up an order by number", "method": "GET",
        "url": "https://shop.example.com/api/orders/{order_number}", "timeout_ms": 5000,
        "headers": [{"name": "Authorization", "value_type": "static", "value": "Bearer {{ secret.crm_token }}"}],
        "path_params": [{"name": "order_number", "description": "The order number", "data_type": "string", "value_type": "dynamic"}],
        "query_params": [{"name": "verbose", "data_type": "boolean", "value_type": "dynamic", "required": false}]});
    let (st, created) = s.post("/v1/webhooks", def.clone()).await;
    assert_eq!(st, 201, "{created}");
    let wid = created["id"].as_str().unwrap().to_string();
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let (st, got) = s.get(&format!("/v1/webhooks/{wid}")).await;
    assert_eq!(st, 200);
    assert_eq!(got, created);
    s.webhook(json!({"name": "Weather", "description": "Forecast", "method": "GET", "url": "https://wx.example/api"})).await;

    for (q, n) in [
        ("ORDER", 1),
        ("wx.example", 1),
        ("forecast", 1),
        ("example", 2),
        ("nothing", 0),
    ] {
        let (st, v) = s.get(&format!("/v1/webhooks?q={q}")).await;
        assert_eq!(st, 200);
        assert_eq!(v["items"].as_array().unwrap().len(), n, "q={q}: {v}");
    }
    let (_, v) = s.get("/v1/webhooks?q=order").await;
    let item = &v["items"][0];
    for k in ["id", "name", "url", "method", "created_at"] {
        assert!(item.get(k).is_some(), "list item lacks {k}: {item}");
    }

    let mut edited = def.clone();
    edited["timeout_ms"] = json!(7000);
    let (st, v) = s.put(&format!("/v1/webhooks/{wid}"), edited).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["timeout_ms"], 7000);
    assert_eq!(v["created_at"], created["created_at"]);

    // tools
    let (st, tool) = s
        .post(
            "/v1/tools",
            json!({"name": "lookup_order", "webhook_id": wid}),
        )
        .await;
    assert_eq!(st, 201, "{tool}");
    let tid = tool["id"].as_str().unwrap().to_string();
    let (st, v) = s
        .post(
            "/v1/tools",
            json!({"name": "lookup_order", "webhook_id": wid}),
        )
        .await;
    assert_eq!(st, 409);
    assert_error(&v, "name_taken");
    let (st, v) = s.get(&format!("/v1/tools/{tid}")).await;
    assert_eq!((st, &v["name"]), (200, &json!("lookup_order")));
    let (st, v) = s.get("/v1/tools?q=LOOKUP").await;
    assert_eq!((st, v["items"].as_array().unwrap().len()), (200, 1));
    let (st, v) = s
        .put(
            &format!("/v1/tools/{tid}"),
            json!({"name": "find_order", "description": "Find an order", "webhook_id": wid}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["name"], "find_order");
    let (st, v) = s.get(&format!("/v1/tools/{tid}/schema")).await;
    assert_eq!(st, 200);
    assert_eq!(v["function"]["name"], "find_order");
    assert_eq!(v["function"]["description"], "Find an order");

    let (st, v) = s.post(&format!("/v1/tools/{tid}/unlink"), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(v["webhook_id"], Value::Null);
    let (_, v) = s.get("/v1/tools/openai").await;
    assert_eq!(
        v["tools"],
        json!([]),
        "an unlinked tool is offered to no model"
    );
    let (st, v) = s.get(&format!("/v1/tools/{tid}/schema")).await;
    assert_eq!(st, 409, "{v}");

    let (st, _) = s.delete(&format!("/v1/tools/{tid}")).await;
    assert_eq!(st, 204);
    let (st, v) = s.get(&format!("/v1/tools/{tid}")).await;
    assert_eq!(st, 404);
    assert_error(&v, "not_found");
    let (st, _) = s.delete(&format!("/v1/webhooks/{wid}")).await;
    assert_eq!(st, 204);
    let (st, _) = s.delete(&format!("/v1/secrets/{sid}")).await;
    assert_eq!(st, 204);
    let (_, v) = s.get("/v1/secrets").await;
    assert_eq!(v["items"], json!([]));
}

#[tokio::test]
async fn invalid_definitions_name_the_field() {
    let s = Server::start().await;
    let base = || json!({"name": "T", "method": "POST", "url": "https://api.example/x"});
    let with = |k: &str, v: Value| {
        let mut d = base();
        d[k] = v;
        d
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("method", json!("FETCH")), "method"),
        (with("url", json!("ftp://api.example/x")), "url"),
        (with("url", json!("https://")), "url"),
        (with("url", json!("https://api.example/o/{id}")), "url"),
        (with("url", json!("https://{host}/o")), "url"),
        (with("timeout_ms", json!(0)), "timeout_ms"),
        (with("timeout_ms", json!(120_001)), "timeout_ms"),
        (with("name", json!("  ")), "name"),
        (
            with(
                "query_params",
                json!([{"name": "1bad", "value_type": "dynamic"}]),
            ),
            "query_params[0].name",
        ),
        (
            with(
                "query_params",
                json!([{"name": "n", "data_type": "float", "value_type": "dynamic"}]),
            ),
            "query_params[0].data_type",
        ),
        (
            with(
                "query_params",
                json!([{"name": "n", "data_type": "integer", "value_type": "static", "value": "abc"}]),
            ),
            "query_params[0].value",
        ),
        (
            with(
                "query_params",
                json!([{"name": "n", "value_type": "static"}]),
            ),
            "query_params[0].value",
        ),
        (
            with(
                "headers",
                json!([{"name": "Authorization", "value_type": "secret", "secret": "nope"}]),
            ),
            "headers[0].secret",
        ),
        (
            with(
                "headers",
                json!([{"name": "Bad Header", "value_type": "static", "value": "x"}]),
            ),
            "headers[0].name",
        ),
        (
            with(
                "headers",
                json!([{"name": "X-User", "value_type": "context", "value": "user..id"}]),
            ),
            "headers[0].value",
        ),
        (
            with(
                "headers",
                json!([{"name": "Authorization", "value_type": "static", "value": "Bearer {{ secret.x"}]),
            ),
            "headers[0].value",
        ),
        (
            with(
                "headers",
                json!([{"name": "Authorization", "value_type": "static", "value": "Bearer {{ secret.missing }}"}]),
            ),
            "headers[0].value",
        ),
        (
            with("retry", json!({"max_attempts": 9})),
            "retry.max_attempts",
        ),
        (
            with("response_fields", json!(["order..status"])),
            "response_fields[0]",
        ),
        (
            with(
                "path_params",
                json!([{"name": "id", "value_type": "dynamic", "required": false}]),
            ),
            "path_params[0].required",
        ),
        (
            json!({"name": "T", "method": "GET", "url": "https://api.example/x",
                "body": [{"name": "a", "value_type": "dynamic"}]}),
            "body[0]",
        ),
        (
            json!({"name": "T", "method": "POST", "url": "https://api.example/x",
                "query_params": [{"name": "a", "value_type": "dynamic"}], "body": [{"name": "a", "value_type": "dynamic"}]}),
            "body[0].name",
        ),
        (with("surprise", json!(1)), "surprise"),
    ];
    assert!(cases.len() >= 12);
    for (def, field) in cases {
        let (st, v) = s.post("/v1/webhooks", def.clone()).await;
        assert_eq!(st, 422, "{def} → {v}");
        assert_error(&v, "invalid_definition");
        let details = v["error"]["details"].as_array().expect("details");
        assert!(
            details.iter().any(|d| d["field"] == field),
            "expected field {field} for {def}, got {v}"
        );
    }
    // Every problem at once.
    let (st, v) = s
        .post(
            "/v1/webhooks",
            json!({"name": "", "method": "GET", "url": "ftp://x", "timeout_ms": 0,
            "body": [{"name": "a", "value_type": "dynamic"}]}),
        )
        .await;
    assert_eq!(st, 422);
    assert!(v["error"]["details"].as_array().unwrap().len() >= 4, "{v}");

    // Tools.
    let (st, v) = s
        .post(
            "/v1/tools",
            json!({"name": "bad name!", "webhook_id": null}),
        )
        .await;
    assert_eq!(st, 422);
    assert_eq!(v["error"]["details"][0]["field"], "name");
    let (st, v) = s
        .post(
            "/v1/tools",
            json!({"name": "ok", "webhook_id": "wh_missing"}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "webhook_id");
    // Secrets.
    let (st, v) = s
        .post("/v1/secrets", json!({"name": "has-dash", "value": "x"}))
        .await;
    assert_eq!(st, 422);
    assert_eq!(v["error"]["details"][0]["field"], "name");
}

#[tokio::test]
async fn delete_guards_list_dependants() {
    let s = Server::start().await;
    let sid = s.secret("api_key", "k-1").await;
    let mut def = get_hook("Guarded", "https://api.example/x");
    def["headers"] = json!([{"name": "X-Key", "value_type": "secret", "secret": "api_key"}]);
    let wid = s.webhook(def).await;
    let tid = s.tool("guarded_tool", &wid).await;

    let (st, v) = s.delete(&format!("/v1/webhooks/{wid}")).await;
    assert_eq!(st, 409);
    assert_error(&v, "in_use");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("This webhook is currently in use")
    );
    assert_eq!(
        v["error"]["details"],
        json!([{"tool_id": tid, "tool_name": "guarded_tool"}])
    );

    let (st, v) = s.delete(&format!("/v1/secrets/{sid}")).await;
    assert_eq!(st, 409);
    assert_error(&v, "in_use");
    assert_eq!(v["error"]["details"][0]["webhook_id"], wid);

    let (st, _) = s.post(&format!("/v1/tools/{tid}/unlink"), json!({})).await;
    assert_eq!(st, 200);
    let (st, _) = s.delete(&format!("/v1/webhooks/{wid}")).await;
    assert_eq!(st, 204);
    let (st, _) = s.delete(&format!("/v1/secrets/{sid}")).await;
    assert_eq!(st, 204);
    let (st, _) = s.delete(&format!("/v1/webhooks/{wid}")).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn no_route_returns_a_secret_value() {
    let s = Server::start().await;
    let up = common::Upstream::start().await;
    let secret = "sv-Zq8!unique-secret-value";
    let mut bodies = Vec::new();
    let mut record = |v: &Value| bodies.push(v.to_string());
    let (_, v) = s
        .post("/v1/secrets", json!({"name": "tok", "value": secret}))
        .await;
    record(&v);
    let sid = v["id"].as_str().unwrap().to_string();
    let (_, v) = s.get("/v1/secrets").await;
    record(&v);
    let (_, v) = s.get(&format!("/v1/secrets/{sid}")).await;
    record(&v);
    let (_, v) = s
        .put(&format!("/v1/secrets/{sid}"), json!({"value": secret}))
        .await;
    record(&v);
    let (_, v) = s
        .post("/v1/secrets", json!({"name": "tok", "value": secret}))
        .await;
    record(&v);
    let (_, v) = s
        .post("/v1/secrets", json!({"name": "bad name", "value": secret}))
        .await;
    record(&v);
    let (_, v) = s
        .put(&format!("/v1/secrets/{sid}"), json!({"value": 12345}))
        .await;
    record(&v);
    let mut def = get_hook("Echo", &format!("{}/echo", up.base));
    def["headers"] = json!([{"name": "Authorization", "value_type": "static", "value": "Bearer {{ secret.tok }}"}]);
    def["query_params"] = json!([{"name": "key", "value_type": "secret", "secret": "tok"}]);
    let (_, v) = s.post("/v1/webhooks", def).await;
    record(&v);
    let wid = v["id"].as_str().unwrap().to_string();
    let (_, v) = s.get(&format!("/v1/webhooks/{wid}")).await;
    record(&v);
    let tid = s.tool("echo", &wid).await;
    let (_, v) = s.invoke("echo", json!({}), json!({})).await;
    record(&v);
    assert_eq!(v["outcome"], "success", "{v}");
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {secret}").as_str()),
        "the secret reaches the upstream"
    );
    let call_id = v["call_id"].as_str().unwrap().to_string();
    let (_, v) = s.get(&format!("/v1/calls/{call_id}")).await;
    record(&v);
    let (_, v) = s.get("/v1/calls").await;
    record(&v);
    let (_, v) = s.post(&format!("/v1/webhooks/{wid}/test"), json!({})).await;
    record(&v);
    let (_, v) = s.get(&format!("/v1/tools/{tid}")).await;
    record(&v);
    let (_, v) = s.delete(&format!("/v1/secrets/{sid}")).await;
    record(&v);
    let (_, v) = s.get("/v1/tools/openai").await;
    record(&v);
    let metrics = s.get_text("/metrics").await;
    bodies.push(metrics);
    for b in &bodies {
        assert!(!b.contains(secret), "secret leaked in a response: {b}");
        assert!(!b.contains("Zq8"), "part of the secret leaked: {b}");
    }
    // Nor in any file under the data dir (encrypted at rest, redacted in history).
    s.post("/v1/secrets", json!({"name": "flushme", "value": "x"}))
        .await;
    for entry in walk(&s.data_dir()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "plaintext secret found in {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[tokio::test]
async fn data_survives_a_restart() {
    let s = Server::start().await;
    let sid = s.secret("kept", "v1").await;
    let wid = s
        .webhook(get_hook("Kept hook", "https://api.example/kept"))
        .await;
    let tid = s.tool("kept_tool", &wid).await;
    let (_, before_hooks) = s.get("/v1/webhooks").await;
    let (_, before_tools) = s.get("/v1/tools").await;
    let (_, before_secrets) = s.get("/v1/secrets").await;
    let (_, before_schema) = s.get(&format!("/v1/tools/{tid}/schema")).await;
    let s = s.restart().await;
    assert_eq!(s.get("/v1/webhooks").await.1, before_hooks);
    assert_eq!(s.get("/v1/tools").await.1, before_tools);
    assert_eq!(s.get("/v1/secrets").await.1, before_secrets);
    assert_eq!(
        s.get(&format!("/v1/tools/{tid}/schema")).await.1,
        before_schema
    );
    assert_eq!(s.get(&format!("/v1/secrets/{sid}")).await.0, 200);
}

#[tokio::test]
async fn a_stopped_server_has_let_go_of_its_data_dir() {
    // What `toolgate mcp` started on the same data dir right after needs (tests/mcp.rs): the
    // store's lock is released by the time the server has stopped, though its serving threads
    // and history threads were busy with calls just before.
    let up = Upstream::start().await;
    for round in 0..3 {
        let mut s = Server::start().await;
        let wid = s
            .webhook(get_hook("Order", &format!("{}/orders/1", up.base)))
            .await;
        s.tool("order", &wid).await;
        for _ in 0..5 {
            let (status, body) = s.invoke("order", json!({}), json!({})).await;
            assert_eq!(status, 200, "{body}");
        }
        let data = s.data_dir();
        s.stop().await;
        let db = sled::open(data.join("db"));
        assert!(db.is_ok(), "round {round}: {:?}", db.err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linking_races_deleting_without_dangling_references() {
    let s = std::sync::Arc::new(Server::start().await);
    for round in 0..8 {
        let wid = s
            .webhook(get_hook(&format!("Race {round}"), "https://api.example/r"))
            .await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (s2, wid2) = (s.clone(), wid.clone());
            tasks.push(tokio::spawn(async move {
                let (st, _) = s2
                    .post(
                        "/v1/tools",
                        json!({"name": format!("race_{round}_{i}"), "webhook_id": wid2}),
                    )
                    .await;
                st
            }));
            if i == 3 {
                let (s3, wid3) = (s.clone(), wid.clone());
                tasks.push(tokio::spawn(async move {
                    s3.delete(&format!("/v1/webhooks/{wid3}")).await.0
                }));
            }
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert!(
            statuses.iter().all(|st| [201, 204, 409, 422].contains(st)),
            "{statuses:?}"
        );
    }
    let (_, tools) = s.get("/v1/tools").await;
    let tools = tools["items"].as_array().unwrap().clone();
    assert!(!tools.is_empty());
    for t in &tools {
        if let Some(w) = t["webhook_id"].as_str() {
            let (st, _) = s.get(&format!("/v1/webhooks/{w}")).await;
            assert_eq!(st, 200, "tool {} points at missing webhook {w}", t["name"]);
        }
    }
    // Every surviving webhook with tools refuses deletion; the catalog matches the store.
    let (_, openai) = s.get("/v1/tools/openai").await;
    assert_eq!(
        openai["tools"].as_array().unwrap().len(),
        tools.iter().filter(|t| !t["webhook_id"].is_null()).count()
    );
}

#[tokio::test]
async fn admin_token_is_required_when_configured() {
    let s = Server::start_with(|c| c.admin_token = Some("s3cret-admin".into())).await;
    let h = &s.http;
    let r = h
        .get(format!("{}/v1/webhooks", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_error(&v, "unauthorized");
    let r = h
        .get(format!("{}/v1/webhooks", s.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .post(format!("{}/v1/secrets", s.base))
        .json(&json!({"name": "a", "value": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (st, _) = s.get("/v1/webhooks").await; // with the right token
    assert_eq!(st, 200);
    let r = h.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_oversized_and_unknown_requests_get_the_envelope() {
    let s = Server::start_with(|c| c.max_body_bytes = 4096).await;
    let (st, v) = s
        .send_raw(
            reqwest::Method::POST,
            "/v1/webhooks",
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_eq!(st, 400);
    assert_error(&v, "bad_request");
    let big = json!({"name": "x", "value": "y".repeat(10_000)})
        .to_string()
        .into_bytes();
    let (st, v) = s.send_raw(reqwest::Method::POST, "/v1/secrets", big).await;
    assert_eq!(st, 413);
    assert_error(&v, "payload_too_large");
    let (st, v) = s
        .post(
            "/v1/webhooks",
            json!({"name": "x", "method": "GET", "url": "https://a.example", "timeout_ms": "soon"}),
        )
        .await;
    assert_eq!(st, 422);
    assert_eq!(v["error"]["details"][0]["field"], "timeout_ms");
    let (st, v) = s.get("/v1/nothing-here").await;
    assert_eq!(st, 404);
    assert_error(&v, "not_found");
    let (st, v) = s.send(reqwest::Method::PATCH, "/v1/webhooks", None).await;
    assert_eq!(st, 405);
    assert_error(&v, "method_not_allowed");
    // Nothing was lost: the server still works.
    let (st, _) = s
        .post("/v1/secrets", json!({"name": "after", "value": "ok"}))
        .await;
    assert_eq!(st, 201);
}
