//! Outbound event webhooks: signing, retries, auth, delivery rules, durability and the log.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::{Server, Upstream, eventually, get_hook};
use serde_json::{Value, json};
use toolgate::events::sign::verify;

#[derive(Clone, Debug)]
struct Hit {
    headers: Vec<(String, String)>,
    body: Value,
    status: u16,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One scripted answer: status and an optional extra header.
type Step = (u16, Option<(&'static str, &'static str)>);

/// A receiver answering from a script of `(status, extra header)` (then 200), recording every hit.
#[derive(Clone)]
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Step>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let r = Receiver {
            url,
            hits: Default::default(),
            script: Default::default(),
        };
        let rr = r.clone();
        let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let rr = rr.clone();
            async move {
                let (status, extra) = rr.script.lock().unwrap().pop_front().unwrap_or((200, None));
                rr.hits.lock().unwrap().push(Hit {
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    status,
                });
                let mut resp = (StatusCode::from_u16(status).unwrap(), "ok").into_response();
                if let Some((k, v)) = extra {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        r
    }

    fn script(&self, steps: &[Step]) {
        self.script.lock().unwrap().extend(steps.iter().cloned());
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

async fn fast_server() -> Server {
    Server::start_with(|c| c.event_retry_schedule = "0s,100ms,100ms,100ms".into()).await
}

async fn subscribe(s: &Server, url: &str, types: Value, auth: Value) -> (String, String) {
    let (st, v) = s
        .post(
            "/v1/subscriptions",
            json!({"name": "receiver", "url": url, "event_types": types, "auth": auth}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["signing_secret"].as_str().unwrap().to_string(),
    )
}

async fn wait_delivery(s: &Server, sub: &str, status: &str) -> Value {
    eventually(15, || async {
        let (_, v) = s
            .get(&format!(
                "/v1/deliveries?subscription_id={sub}&status={status}"
            ))
            .await;
        v["items"].as_array().and_then(|a| a.first().cloned())
    })
    .await
}

#[tokio::test]
async fn fails_twice_then_succeeds_once_with_valid_signatures() {
    let s = fast_server().await;
    let rx = Receiver::start().await;
    rx.script(&[(500, None), (503, None)]);
    let (sub, secret) = subscribe(
        &s,
        &rx.url,
        json!(["webhook.created"]),
        json!({"type": "none"}),
    )
    .await;
    let (_, got) = s.get(&format!("/v1/subscriptions/{sub}")).await;
    assert!(
        got.get("signing_secret").is_none(),
        "the signing secret is shown once only"
    );
    let wid = s
        .webhook(get_hook("Evented", "https://api.example/e"))
        .await;

    let d = wait_delivery(&s, &sub, "succeeded").await;
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![500, 503, 200]
    );
    let hits = rx.hits();
    assert_eq!(hits.len(), 3);
    assert_eq!(
        hits.iter().filter(|h| h.status == 200).count(),
        1,
        "exactly one success"
    );
    for h in &hits {
        let id = h.header("webhook-id").unwrap();
        let ts: i64 = h.header("webhook-timestamp").unwrap().parse().unwrap();
        let sig = h.header("webhook-signature").unwrap();
        assert!(
            verify(&secret, id, ts, &h.body.to_string(), sig),
            "signature verifies"
        );
        assert_eq!(id, h.body["event_id"]);
    }
    let body = &hits[0].body;
    assert_eq!(body["event_type"], "webhook.created");
    assert_eq!(body["data"]["webhook_id"], wid);
    for k in [
        "event_id",
        "event_time",
        "event_type",
        "current_context",
        "data",
    ] {
        assert!(body.get(k).is_some(), "envelope lacks {k}");
    }
    // Nothing more arrives: the success is final.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(rx.hits().len(), 3);
}

#[tokio::test]
async fn emits_change_call_and_conversation_events() {
    let s = fast_server().await;
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let (sub, _) = subscribe(&s, &rx.url, json!(["*"]), json!({"type": "none"})).await;
    let wid = s.webhook(get_hook("Ok", &format!("{}/ok", up.base))).await;
    let tid = s.tool("ok_tool", &wid).await;
    s.invoke("ok_tool", json!({}), json!({})).await;
    s.invoke("ok_tool", json!({"bad": 1}), json!({})).await;
    s.post(&format!("/v1/tools/{tid}/unlink"), json!({})).await;
    let mut def = get_hook("Ok2", &format!("{}/ok", up.base));
    def["description"] = json!("edited");
    s.put(&format!("/v1/webhooks/{wid}"), def).await;
    s.delete(&format!("/v1/webhooks/{wid}")).await;
    let want = [
        "webhook.created",
        "tool.linked",
        "call.succeeded",
        "call.failed",
        "tool.unlinked",
        "webhook.updated",
        "webhook.deleted",
    ];
    let types = eventually(15, || async {
        let types: Vec<String> = rx
            .hits()
            .iter()
            .map(|h| h.body["event_type"].as_str().unwrap_or("").to_string())
            .collect();
        want.iter()
            .all(|w| types.iter().any(|t| t == w))
            .then_some(types)
    })
    .await;
    let hits = rx.hits();
    let call = hits
        .iter()
        .find(|h| h.body["event_type"] == "call.succeeded")
        .unwrap();
    assert_eq!(call.body["data"]["tool"], "ok_tool");
    assert_eq!(call.body["current_context"]["tool"], "ok_tool");
    assert!(types.len() >= want.len());
    // A delivery is marked succeeded after the receiver has answered: the last ones a moment
    // after their hits arrived.
    let delivered = eventually(15, || async {
        let (_, list) = s
            .get(&format!(
                "/v1/deliveries?subscription_id={sub}&status=succeeded"
            ))
            .await;
        let n = list["items"].as_array().map_or(0, Vec::len);
        (n >= want.len()).then_some(n)
    })
    .await;
    assert!(delivered >= want.len());
}

#[tokio::test]
async fn auth_kinds_arrive_and_are_redacted_in_the_log() {
    let s = fast_server().await;
    s.secret("rx_pass", "pa55-word-Q1").await;
    s.secret("rx_key", "key-value-Q2").await;
    s.secret("rx_client", "client-secret-Q3").await;
    let rx_basic = Receiver::start().await;
    let rx_key = Receiver::start().await;
    let rx_client = Receiver::start().await;
    let (b, _) = subscribe(
        &s,
        &rx_basic.url,
        json!(["ping"]),
        json!({"type": "basic", "username": "toolgate", "password_secret": "rx_pass"}),
    )
    .await;
    let (k, _) = subscribe(
        &s,
        &rx_key.url,
        json!(["ping"]),
        json!({"type": "api_key", "header": "AccessKey", "secret": "rx_key"}),
    )
    .await;
    let (c, _) = subscribe(
        &s,
        &rx_client.url,
        json!(["ping"]),
        json!({"type": "client_secret", "secret": "rx_client"}),
    )
    .await;
    for id in [&b, &k, &c] {
        let (st, v) = s
            .post(&format!("/v1/subscriptions/{id}/test"), json!({}))
            .await;
        assert_eq!(st, 202, "{v}");
    }
    for id in [&b, &k, &c] {
        wait_delivery(&s, id, "succeeded").await;
    }
    use base64::Engine;
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("toolgate:pa55-word-Q1")
    );
    assert_eq!(
        rx_basic.hits()[0].header("authorization"),
        Some(expected_basic.as_str())
    );
    assert_eq!(rx_key.hits()[0].header("accesskey"), Some("key-value-Q2"));
    assert_eq!(
        rx_client.hits()[0].body["client_secret"],
        "client-secret-Q3"
    );
    assert_eq!(rx_client.hits()[0].body["event_type"], "ping");
    let (_, log) = s.get("/v1/deliveries").await;
    let text = log.to_string();
    for leaked in [
        "pa55-word-Q1",
        "key-value-Q2",
        "client-secret-Q3",
        &expected_basic[6..],
    ] {
        assert!(
            !text.contains(leaked),
            "{leaked} leaked into the delivery log"
        );
    }
    assert!(text.contains("[REDACTED]"));
    // A referenced secret cannot be deleted.
    let (_, secrets) = s.get("/v1/secrets").await;
    let id = secrets["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "rx_key")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = s.delete(&format!("/v1/secrets/{id}")).await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"]["details"][0]["subscription_id"], k);
}

#[tokio::test]
async fn gone_disables_abort_stops_and_failed_can_be_retried() {
    let s = fast_server().await;
    let gone = Receiver::start().await;
    gone.script(&[(410, None)]);
    let (g, _) = subscribe(&s, &gone.url, json!(["ping"]), json!({"type": "none"})).await;
    s.post(&format!("/v1/subscriptions/{g}/test"), json!({}))
        .await;
    let d = wait_delivery(&s, &g, "failed").await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    let (_, sub) = s.get(&format!("/v1/subscriptions/{g}")).await;
    assert_eq!(sub["enabled"], false, "410 disables the subscription");
    assert!(sub["disabled_reason"].as_str().unwrap().contains("410"));

    let abort = Receiver::start().await;
    abort.script(&[(500, Some(("webhook-delivery", "abort-message")))]);
    let (a, _) = subscribe(&s, &abort.url, json!(["ping"]), json!({"type": "none"})).await;
    s.post(&format!("/v1/subscriptions/{a}/test"), json!({}))
        .await;
    let d = wait_delivery(&s, &a, "failed").await;
    assert_eq!(
        d["attempts"].as_array().unwrap().len(),
        1,
        "abort-message stops the retries"
    );
    let id = d["id"].as_str().unwrap();
    let (st, _) = s
        .post(&format!("/v1/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(st, 202);
    let d = wait_delivery(&s, &a, "succeeded").await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 2);
    let (st, _) = s
        .post(&format!("/v1/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(st, 409, "only failed deliveries are retried");

    let always = Receiver::start().await;
    always.script(&[(500, None); 10]);
    let (f, _) = subscribe(&s, &always.url, json!(["ping"]), json!({"type": "none"})).await;
    s.post(&format!("/v1/subscriptions/{f}/test"), json!({}))
        .await;
    let d = wait_delivery(&s, &f, "failed").await;
    assert_eq!(
        d["attempts"].as_array().unwrap().len(),
        4,
        "one attempt per schedule entry"
    );
}

#[tokio::test]
async fn deliveries_respect_the_network_policy() {
    let s = Server::start_with(|c| {
        c.allow_hosts = vec![];
        c.event_retry_schedule = "0s".into();
    })
    .await;
    let rx = Receiver::start().await;
    let (sub, _) = subscribe(&s, &rx.url, json!(["ping"]), json!({"type": "none"})).await;
    s.post(&format!("/v1/subscriptions/{sub}/test"), json!({}))
        .await;
    let d = wait_delivery(&s, &sub, "failed").await;
    assert!(
        d["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("network policy"),
        "{d}"
    );
    assert!(rx.hits().is_empty());
}

#[tokio::test]
async fn invalid_subscriptions_are_refused() {
    let s = fast_server().await;
    let (st, v) = s
        .post(
            "/v1/subscriptions",
            json!({"name": "", "url": "ftp://x", "event_types": ["nope"],
            "auth": {"type": "api_key", "header": "Bad Header", "secret": "missing"}}),
        )
        .await;
    assert_eq!(st, 422);
    let fields = common::error_fields(&v);
    assert_eq!(
        fields,
        vec![
            "name",
            "url",
            "event_types[0]",
            "auth.header",
            "auth.secret"
        ]
    );
    let (sub, old) = subscribe(
        &s,
        "https://hooks.example/x",
        json!(["*"]),
        json!({"type": "none"}),
    )
    .await;
    let (st, v) = s
        .post(&format!("/v1/subscriptions/{sub}/rotate-secret"), json!({}))
        .await;
    assert_eq!(st, 200);
    assert_ne!(v["signing_secret"], old);
}
