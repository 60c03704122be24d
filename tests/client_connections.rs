//! Slow and idle clients: the client timeout on a request's head and body, and the cap on open
//! client connections. Raw TCP connections against the real gateway, so nothing in between
//! retries, pools or times out on the test's behalf.

mod common;

use std::time::{Duration, Instant};

use common::{Server, Upstream, get_hook};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Read one answer (head and a `Content-Length` body) off a kept-alive connection, or `None`
/// if none came within `wait` or the connection closed first.
async fn answer_within(conn: &mut TcpStream, wait: Duration) -> Option<(u16, String)> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = &text[..end];
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let status = head.split(' ').nth(1)?.parse().ok()?;
                    return Some((status, text[end + 4..end + 4 + length].to_string()));
                }
            }
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

/// Whether the gateway closes `conn` within `wait` (reading and dropping what it sends first);
/// what it sent, as text.
async fn closed_within(conn: &mut TcpStream, wait: Duration) -> (bool, String) {
    let mut got = Vec::new();
    // Ended either way (an orderly close, or a reset for bytes it never read) within `wait`.
    let closed = tokio::time::timeout(wait, conn.read_to_end(&mut got))
        .await
        .is_ok();
    (closed, String::from_utf8_lossy(&got).to_string())
}

const HEALTH: &str = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// A client that trickles a request head, a header line every 200 ms, is disconnected once the
/// client timeout has passed since the gateway began waiting (hyper's header timeout, which
/// sends no answer); it does not buy more time with each line.
#[tokio::test]
async fn a_head_trickled_past_the_client_timeout_is_cut_off() {
    let s = Server::start_with(|c| c.client_timeout_secs = 1).await;
    let mut conn = connect(&s.base).await;
    let started = Instant::now();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    let mut refused = false;
    for i in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if conn
            .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            refused = true;
            break;
        }
    }
    let (closed, sent) = closed_within(&mut conn, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(closed || refused, "the connection stayed open ({took:?})");
    assert!(
        took < Duration::from_millis(4800) || refused,
        "closed only after {took:?}"
    );
    assert!(sent.is_empty(), "an unfinished head was answered: {sent}");
    // The gateway is fine and answers others.
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200);
}

/// A kept-alive connection left idle is closed once the client timeout has passed since its
/// last answer; one in use goes on.
#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_client_timeout() {
    let s = Server::start_with(|c| c.client_timeout_secs = 1).await;
    let mut busy = connect(&s.base).await;
    let mut idle = connect(&s.base).await;
    for conn in [&mut busy, &mut idle] {
        conn.write_all(HEALTH.as_bytes()).await.expect("write");
        let (status, _) = answer_within(conn, Duration::from_secs(5))
            .await
            .expect("answered");
        assert_eq!(status, 200);
    }
    // The busy one asks every 300 ms, each time well within the timeout.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if i == 0 {
            // Not closed before its time: nothing to read and no end yet. (The serving
            // thread's timer ticks every 100 ms and counts from its last tick, so the timeout
            // may end a tick early, not 700 ms early.)
            let mut byte = [0u8; 1];
            let peeked = tokio::time::timeout(Duration::from_millis(10), idle.peek(&mut byte));
            assert!(peeked.await.is_err(), "the idle connection closed early");
        }
        busy.write_all(HEALTH.as_bytes()).await.expect("write");
        let (status, _) = answer_within(&mut busy, Duration::from_secs(5))
            .await
            .expect("a connection in use was closed");
        assert_eq!(status, 200);
    }
    let (closed, sent) = closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(closed, "the idle connection stayed open");
    assert!(
        sent.is_empty(),
        "an idle connection is closed without an answer: {sent}"
    );
}

/// The timeout covers the client's sending only: a call whose upstream takes longer than it
/// is answered.
#[tokio::test]
async fn a_call_longer_than_the_client_timeout_is_answered() {
    let s = Server::start_with(|c| c.client_timeout_secs = 1).await;
    let up = Upstream::start().await;
    let wid = s
        .webhook(get_hook("Slow", &format!("{}/slow/1500", up.base)))
        .await;
    s.tool("slow", &wid).await;
    let mut conn = connect(&s.base).await;
    let body = json!({"arguments": {}}).to_string();
    let request = format!(
        "POST /v1/tools/slow/invoke HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.expect("write");
    let (status, text) = answer_within(&mut conn, Duration::from_secs(10))
        .await
        .expect("a call longer than the client timeout was cut off");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["outcome"], "success", "{v}");
}

/// A body promised by its head and then trickled, on the tool-call route and on an admin
/// route, is answered 408 once the client timeout has passed, and nothing is sent upstream or
/// created.
#[tokio::test]
async fn a_body_trickled_past_the_client_timeout_is_answered_408() {
    let s = Server::start_with(|c| c.client_timeout_secs = 1).await;
    let up = Upstream::start().await;
    let wid = s.webhook(get_hook("Echo", &format!("{}/e", up.base))).await;
    s.tool("echo", &wid).await;
    for path in ["/v1/tools/echo/invoke", "/v1/secrets"] {
        let mut conn = connect(&s.base).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{{\"arguments\": "
        );
        let started = Instant::now();
        conn.write_all(head.as_bytes()).await.expect("write");
        let mut answer = None;
        for _ in 0..25 {
            if conn.write_all(b" ").await.is_err() {
                break;
            }
            if let Some(a) = answer_within(&mut conn, Duration::from_millis(200)).await {
                answer = Some(a);
                break;
            }
        }
        let took = started.elapsed();
        let (status, text) = answer.expect("no answer to a trickled body");
        assert_eq!(status, 408, "{path}: {text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        common::assert_error(&v, "request_timeout");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{path}: answered after {took:?}"
        );
    }
    assert_eq!(up.count(), 0, "a cut-short call went upstream");
    let (_, listed) = s.get("/v1/secrets").await;
    assert_eq!(listed["items"], json!([]), "{listed}");
}

/// At the cap, a new connection waits in the listen backlog until an open one closes; the open
/// ones are served meanwhile, and `GET /metrics` tells the cap, the count and the waits.
#[tokio::test]
async fn at_the_connection_cap_a_new_connection_waits_until_one_closes() {
    let mut s = Server::start_with(|c| c.max_client_connections = 3).await;
    // The test client's pooled connection (from the start-up health checks) is let go: only
    // this test's raw connections count.
    s.http = common::client();
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut conn = connect(&s.base).await;
        conn.write_all(HEALTH.as_bytes()).await.expect("write");
        let (status, _) = answer_within(&mut conn, Duration::from_secs(5))
            .await
            .expect("a connection under the cap was not served");
        assert_eq!(status, 200);
        open.push(conn);
    }
    let mut extra = connect(&s.base).await;
    extra.write_all(HEALTH.as_bytes()).await.expect("write");
    assert!(
        answer_within(&mut extra, Duration::from_millis(700))
            .await
            .is_none(),
        "a connection over the cap was served"
    );
    // The open ones still are.
    open[0]
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let (status, metrics) = answer_within(&mut open[0], Duration::from_secs(5))
        .await
        .expect("an open connection was not served at the cap");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("toolgate_client_connections_max 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("toolgate_client_connections_open 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("toolgate_client_connection_limit_waits_total 1\n"),
        "{metrics}"
    );
    drop(open.pop());
    let (status, _) = answer_within(&mut extra, Duration::from_secs(5))
        .await
        .expect("the waiting connection was not served after one closed");
    assert_eq!(status, 200);
}
