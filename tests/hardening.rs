//! Regressions from attacking toolgate as a hostile web page, a hostile upstream and a careless
//! admin would: cross-site requests, secrets echoed in other encodings or cut in two, redirects to
//! other origins, credentials in URLs, and error answers outside the envelope.

mod common;

use common::{FakeLlm, Server, Upstream, client, get_hook, reply};
use serde_json::{Value, json};

/// Every 6-character piece of `secret` that occurs in `text`.
fn fragments(text: &str, secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    (0..chars.len().saturating_sub(5))
        .map(|i| chars[i..i + 6].iter().collect::<String>())
        .filter(|f| text.contains(f.as_str()))
        .collect()
}

async fn raw(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let mut b = client().request(method, url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if let Some(body) = body {
        b = b.body(body.to_string());
    }
    let r = b.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Send `request` as written and read the answer (the server closes after an error it answers
/// itself).
async fn raw_tcp(base: &str, request: &str) -> (u16, Value) {
    use tokio::io::AsyncWriteExt;
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before it has read everything.
    let _ = conn.write_all(request.as_bytes()).await;
    read_answer(conn).await
}

/// Read the connection to its end (or 5 s): the answer's status (0 if none) and JSON body.
async fn read_answer(mut conn: tokio::net::TcpStream) -> (u16, Value) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.read_to_end(&mut buf),
    )
    .await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(text)),
    )
}

fn assert_envelope(status: u16, v: &Value, code: &str) {
    assert!(status >= 400, "{status}: {v}");
    common::assert_error(v, code);
}

#[tokio::test]
async fn cross_site_requests_are_refused_without_a_token() {
    let s = Server::start().await;
    let sub = r#"{"name":"x","url":"http://127.0.0.1:9/x","event_types":["*"]}"#;
    // A "simple" cross-site POST (text/plain needs no preflight) is never parsed.
    let (st, v) = raw(
        reqwest::Method::POST,
        &format!("{}/v1/subscriptions", s.base),
        &[("content-type", "text/plain")],
        Some(sub),
    )
    .await;
    assert_eq!(st, 415, "{v}");
    assert_envelope(st, &v, "unsupported_media_type");
    // From a foreign page, even with a JSON body the browser might send after a preflight.
    for (origin, what) in [
        ("http://evil.example", "foreign origin"),
        ("null", "sandboxed page"),
        ("http://127.0.0.1:1", "another local port"),
    ] {
        let (st, v) = raw(
            reqwest::Method::POST,
            &format!("{}/v1/subscriptions", s.base),
            &[("content-type", "application/json"), ("origin", origin)],
            Some(sub),
        )
        .await;
        assert_eq!(st, 403, "{what}: {v}");
        assert_envelope(st, &v, "forbidden");
    }
    let (st, v) = raw(
        reqwest::Method::POST,
        &format!("{}/v1/subscriptions", s.base),
        &[
            ("content-type", "application/json"),
            ("sec-fetch-site", "cross-site"),
        ],
        Some(sub),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(s.get("/v1/subscriptions").await.1["items"], json!([]));
    // DNS rebinding: the page's own host name points at the gateway.
    for path in ["/v1/secrets", "/mcp"] {
        let (st, v) = raw(
            reqwest::Method::GET,
            &format!("{}{path}", s.base),
            &[("host", "evil.example:8080")],
            None,
        )
        .await;
        assert_eq!(st, 403, "{path}: {v}");
        assert_envelope(st, &v, "forbidden");
    }
    // The gateway's own pages (same origin) keep working.
    let own = s.base.clone();
    let (st, v) = raw(
        reqwest::Method::POST,
        &format!("{}/v1/secrets", s.base),
        &[("content-type", "application/json"), ("origin", &own)],
        Some(r#"{"name":"k","value":"v"}"#),
    )
    .await;
    assert_eq!(st, 201, "{v}");

    // With an admin token the token is the guard: remote clients with any Host are served.
    let t = Server::start_with(|c| c.admin_token = Some("tok".into())).await;
    let (st, v) = raw(
        reqwest::Method::GET,
        &format!("{}/v1/secrets", t.base),
        &[
            ("host", "gateway.example.com"),
            ("authorization", "Bearer tok"),
        ],
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

/// The tool-call route is answered by the serving threads' front, not the router: it refuses
/// the same browser requests, reading each field as a lookup would (the first of its name), and
/// never reaches the upstream for them.
#[tokio::test]
async fn the_tool_call_route_refuses_cross_site_requests_too() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    echo_tool(&s, &up).await;
    let url = format!("{}/v1/tools/echo/invoke", s.base);
    let body = r#"{"arguments":{"a_pad":"p"}}"#;
    let json = ("content-type", "application/json");
    for (headers, what) in [
        (
            vec![json, ("origin", "http://evil.example")],
            "foreign origin",
        ),
        (vec![json, ("origin", "null")], "sandboxed page"),
        (
            vec![json, ("sec-fetch-site", "cross-site")],
            "cross-site fetch",
        ),
        (vec![json, ("host", "evil.example:8080")], "rebound host"),
        (
            vec![("origin", "http://evil.example"), json, ("origin", &s.base)],
            "foreign origin first of two",
        ),
        (
            vec![
                ("sec-fetch-site", "cross-site"),
                json,
                ("sec-fetch-site", "same-origin"),
            ],
            "cross-site first of two",
        ),
    ] {
        let (st, v) = raw(reqwest::Method::POST, &url, &headers, Some(body)).await;
        assert_eq!(st, 403, "{what}: {v}");
        assert_envelope(st, &v, "forbidden");
    }
    assert_eq!(up.count(), 0, "a refused call reached the upstream");
    // The gateway's own page, and a same-site fetch, are served.
    for headers in [
        vec![json, ("origin", s.base.as_str())],
        vec![("sec-fetch-site", "same-origin"), json],
    ] {
        let (st, v) = raw(reqwest::Method::POST, &url, &headers, Some(body)).await;
        assert_eq!(st, 200, "{headers:?}: {v}");
        assert_eq!(v["outcome"], "success", "{v}");
    }
    assert_eq!(up.count(), 2);
}

/// A tool call's body that arrives in pieces is read whole; one that ends before its
/// `Content-Length` is refused and never called; one that says it is longer than the body limit
/// is refused unread.
#[tokio::test]
async fn a_tool_call_body_in_pieces_is_read_whole_and_a_short_one_refused() {
    use tokio::io::AsyncWriteExt;
    let s = Server::start_with(|c| c.max_body_bytes = 4096).await;
    let up = Upstream::start().await;
    echo_tool(&s, &up).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let body = format!(r#"{{"arguments":{{"a_pad":"{}"}}}}"#, "p".repeat(600));
    let head = |length: usize| {
        format!(
            "POST /v1/tools/echo/invoke HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
    };
    // In three pieces, the head alone first, with pauses between.
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(head(body.len()).as_bytes())
        .await
        .expect("head");
    for piece in [&body[..10], &body[10..300], &body[300..]] {
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        conn.write_all(piece.as_bytes()).await.expect("piece");
    }
    let (st, v) = read_answer(conn).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "success", "{v}");
    let sent = up.last().json();
    assert_eq!(sent["a_pad"].as_str().map(str::len), Some(600), "{sent}");
    assert_eq!(up.count(), 1);

    // Ten bytes short, then the client stops sending.
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(head(body.len() + 10).as_bytes())
        .await
        .expect("head");
    conn.write_all(body.as_bytes()).await.expect("body");
    conn.shutdown().await.expect("shutdown");
    let (st, v) = read_answer(conn).await;
    assert!(st == 400 || st == 0, "{st}: {v}");
    if st == 400 {
        assert_envelope(st, &v, "bad_request");
    }
    assert_eq!(up.count(), 1, "a cut-short call reached the upstream");

    // Longer than the limit: refused by the router, whatever follows.
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(head(5000).as_bytes()).await.expect("head");
    let _ = conn.write_all(&[b' '; 5000]).await;
    let (st, v) = read_answer(conn).await;
    assert_eq!(st, 413, "{v}");
    assert_envelope(st, &v, "payload_too_large");
    assert_eq!(up.count(), 1);
}

/// `echo_tool_with` a secret holding a quote, which the tests look for in every form.
async fn echo_tool(s: &Server, up: &Upstream) {
    echo_tool_with(s, up, "hunter2\"x-fragment-check").await;
}

/// Tool `echo`: POSTs `secret` (as body field `key`) and an optional pad to the echoing upstream.
async fn echo_tool_with(s: &Server, up: &Upstream, secret: &str) {
    s.secret("api_pw", secret).await;
    let wid = s
        .webhook(
            json!({"name": "Echo", "method": "POST", "url": format!("{}/echo", up.base),
            "body": [{"name": "a_pad", "value_type": "dynamic", "required": false},
                     {"name": "key", "value_type": "secret", "secret": "api_pw"}]}),
        )
        .await;
    s.tool("echo", &wid).await;
}

#[tokio::test]
async fn secrets_echoed_in_other_encodings_are_redacted() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    echo_tool(&s, &up).await;
    let secret = "hunter2\"x-fragment-check";
    let (st, r) = s.invoke("echo", json!({"a_pad": "p"}), json!({})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["outcome"], "success", "{r}");
    // The upstream saw the secret in the JSON body, and echoed the body inside a JSON string.
    assert_eq!(up.last().json()["key"], secret);
    let text = r.to_string();
    assert!(fragments(&text, secret).is_empty(), "{text}");
    assert!(r["content"].as_str().unwrap().contains("[REDACTED]"), "{r}");
    let wid = s.get("/v1/webhooks").await.1["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, t) = s
        .post(
            &format!("/v1/webhooks/{wid}/test"),
            json!({"arguments": {"a_pad": "q"}}),
        )
        .await;
    assert_eq!(st, 200, "{t}");
    assert!(fragments(&t.to_string(), secret).is_empty(), "{t}");
    let rec = s.record_of(&r).await;
    assert!(fragments(&rec.to_string(), secret).is_empty(), "{rec}");
}

/// A secret that `[REDACTED]` itself holds, echoed by the upstream: replacing it with
/// `[REDACTED]` made a new match every time (the serving thread looped, the text grew), so the
/// gateway now marks it otherwise, and the answer and the record hold no trace of it.
#[tokio::test]
async fn a_secret_the_marker_holds_is_redacted_without_hanging() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let secret = "ED]";
    echo_tool_with(&s, &up, secret).await;
    let (st, r) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.invoke("echo", json!({}), json!({})),
    )
    .await
    .expect("the call must not hang on a secret the marker holds");
    assert_eq!(st, 200, "{r}");
    assert_eq!(up.last().json()["key"], secret);
    assert!(r["content"].as_str().unwrap().contains("[redacted]"), "{r}");
    let rec = s.record_of(&r).await;
    for text in [r.to_string(), rec.to_string()] {
        assert!(!text.contains(secret), "{text}");
    }
}

/// A webhook answered by the upstream with `body` (as `application/json`, whether it is JSON
/// or not), sending secret `secret` in header `X-Key`; returns its id.
async fn raw_webhook(s: &Server, up: &Upstream, name: &str, body: &str, secret: &str) -> String {
    let url = format!(
        "{}/raw?body={}",
        up.base,
        url::form_urlencoded::byte_serialize(body.as_bytes()).collect::<String>()
    );
    s.webhook(json!({"name": name, "method": "GET", "url": url,
        "headers": [{"name": "X-Key", "value_type": "secret", "secret": secret}]}))
        .await
}

/// An upstream can lay a secret across JSON structure, where no string or number holds it but
/// the body written out does: neither the answer nor the record hands that tree on.
#[tokio::test]
async fn a_secret_laid_across_json_structure_is_redacted_in_the_response_too() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    for (i, (secret, body)) in [
        ("7,\"k\":8", r#"{"a":7,"k":8}"#),
        ("1,2", r#"{"lines":[1,2]}"#),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("pw_{i}");
        s.secret(&name, secret).await;
        let wid = raw_webhook(&s, &up, &format!("Spanning {i}"), body, &name).await;
        let tool = format!("spanning_{i}");
        s.tool(&tool, &wid).await;
        let (st, r) = s.invoke(&tool, json!({}), json!({})).await;
        assert_eq!((st, r["outcome"].as_str()), (200, Some("success")), "{r}");
        assert_eq!(up.last().header("x-key"), Some(secret));
        let rec = s.record_of(&r).await;
        for text in [r.to_string(), r["response"].to_string(), rec.to_string()] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            r["response"]
                .as_str()
                .is_some_and(|t| t.contains("[REDACTED]")),
            "{r}"
        );
    }
}

/// `text` with JSON escapes undone once (`\uXXXX` with surrogate pairs, `\"`, `\\`, `\/`, and
/// the control escapes); anything else kept.
fn unescape_once(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let esc = &rest[i..];
        let unit = |at: usize| {
            esc.get(at..at + 4)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        let (c, len) = match esc.as_bytes().get(1) {
            Some(b'u') => match unit(2) {
                Some(hi @ 0xD800..=0xDBFF) if esc.get(6..8) == Some("\\u") => match unit(8) {
                    Some(lo @ 0xDC00..=0xDFFF) => (
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)),
                        12,
                    ),
                    _ => (None, 1),
                },
                Some(u) => (char::from_u32(u), 6),
                None => (None, 1),
            },
            Some(b'"') => (Some('"'), 2),
            Some(b'\\') => (Some('\\'), 2),
            Some(b'/') => (Some('/'), 2),
            Some(b'n') => (Some('\n'), 2),
            Some(b't') => (Some('\t'), 2),
            Some(b'r') => (Some('\r'), 2),
            _ => (None, 1),
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&esc[..len]),
        }
        rest = &esc[len..];
    }
    out.push_str(rest);
    out
}

/// `text` with HTML numeric character references (`&#101;`, `&#x65;`) undone.
fn unreference(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("&#") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        let decoded = tail.find(';').and_then(|end| {
            let code = &tail[..end];
            let n = match code.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => code.parse().ok()?,
            };
            Some((char::from_u32(n)?, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push_str("&#");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every 6-character piece of `secret` in `text` or in it with its escapes undone (JSON
/// escapes, percent-encoding, HTML references), up to six times over.
fn fragments_behind_escapes(text: &str, secret: &str) -> Vec<String> {
    let mut view = text.to_string();
    let mut found = fragments(&view, secret);
    for _ in 0..6 {
        view = unescape_once(&view);
        view = percent_encoding::percent_decode_str(&view)
            .decode_utf8_lossy()
            .into_owned();
        view = unreference(&view);
        found.extend(fragments(&view, secret));
    }
    found
}

/// A hostile upstream echoes a secret with only some of its characters escaped
/// (`b\u0065n\u0063h`, `b%65n%63h`, `b&#101;n&#99;h`): in a text body, in a JSON string, and in
/// a JSON string holding JSON. A model undoes such escapes at once; the answer, its content and
/// the record hold no piece of the secret whichever escapes are undone.
#[tokio::test]
async fn a_secret_echoed_with_some_characters_escaped_is_redacted() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let secret = "bench-s3cret-value-x9";
    s.secret("half_pw", secret).await;
    // Every other character escaped; the secret is ASCII, so `\u` needs no surrogates.
    let every_other = |escape: fn(char) -> String| -> String {
        secret
            .chars()
            .enumerate()
            .map(|(i, c)| if i % 2 == 1 { escape(c) } else { c.to_string() })
            .collect()
    };
    let half = every_other(|c| format!("\\u{:04x}", c as u32));
    let inner = json!({ "k": half }).to_string();
    let percent = every_other(|c| format!("%{:02x}", c as u32));
    let references = every_other(|c| format!("&#{};", c as u32));
    let bodies = [
        format!("<p>{percent}</p>"),
        format!("{{\"html\": \"<b>{references}</b>\"}}"),
        format!("echo: \"{half}\" (text)"),
        format!("{{\"echo\": \"{half}\"}}"),
        json!({ "inner": inner }).to_string(),
        format!("{{\"inner\": {}}}", json!(inner)),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let wid = raw_webhook(&s, &up, &format!("Half {i}"), body, "half_pw").await;
        let tool = format!("half_{i}");
        s.tool(&tool, &wid).await;
        let (st, r) = s.invoke(&tool, json!({}), json!({})).await;
        assert_eq!((st, r["outcome"].as_str()), (200, Some("success")), "{r}");
        assert_eq!(up.last().header("x-key"), Some(secret));
        // The body as sent does hold it behind escapes.
        assert!(!fragments_behind_escapes(body, secret).is_empty(), "{body}");
        let rec = s.record_of(&r).await;
        for text in [r.to_string(), rec.to_string()] {
            let found = fragments_behind_escapes(&text, secret);
            assert!(found.is_empty(), "body {i}: {found:?} in {text}");
        }
        assert!(r.to_string().contains("REDACTED"), "body {i}: {r}");
    }
}

/// What is kept of a call (its record, a dry run) holds the model's arguments, the body sent and
/// the caller's context: trees that can hold a secret laid across their structure too, though
/// no string or number of them does. Each is kept as redacted text then.
#[tokio::test]
async fn a_secret_laid_across_arguments_body_and_context_is_not_kept() {
    let s = Server::start().await;
    let up = Upstream::start().await;
    let secret = "1,2";
    s.secret("pw_lines", secret).await;
    let wid = s
        .webhook(
            json!({"name": "Lines", "method": "POST", "url": format!("{}/echo", up.base),
            "headers": [{"name": "X-Key", "value_type": "secret", "secret": "pw_lines"}],
            "body": [{"name": "lines", "data_type": "array", "value_type": "dynamic",
                      "schema": {"type": "array", "items": {"type": "integer"}}}]}),
        )
        .await;
    s.tool("lines", &wid).await;
    let (st, r) = s
        .invoke("lines", json!({"lines": [1, 2]}), json!({"n": [1, 2]}))
        .await;
    assert_eq!((st, r["outcome"].as_str()), (200, Some("success")), "{r}");
    // The upstream got what the model asked for.
    assert_eq!(up.last().json()["lines"], json!([1, 2]));
    let rec = s.record_of(&r).await;
    let text = rec.to_string();
    assert!(!text.contains(secret), "{text}");
    for kept in [&rec["arguments"], &rec["request"]["body"], &rec["context"]] {
        assert!(
            kept.as_str().is_some_and(|t| t.contains("[REDACTED]")),
            "{kept} in {rec}"
        );
    }
    // A dry run shows the body it would send the same way.
    let (st, dry) = s
        .post(
            &format!("/v1/webhooks/{wid}/test"),
            json!({"arguments": {"lines": [1, 2]}, "dry_run": true}),
        )
        .await;
    assert_eq!(st, 200, "{dry}");
    let text = dry.to_string();
    assert!(!text.contains(secret), "{text}");
    assert!(dry["request"]["body"].is_string(), "{dry}");
    // A tree that holds no secret across its structure is kept as the tree.
    let (_, r) = s.invoke("lines", json!({"lines": [2, 1]}), json!({})).await;
    let rec = s.record_of(&r).await;
    assert_eq!(rec["arguments"], json!({"lines": [2, 1]}), "{rec}");
    assert_eq!(rec["request"]["body"], json!({"lines": [2, 1]}), "{rec}");
}

#[tokio::test]
async fn a_cut_never_keeps_part_of_a_secret() {
    let s = Server::start_with(|c| {
        c.max_content_bytes = 220;
        c.max_response_bytes = 160;
    })
    .await;
    let up = Upstream::start().await;
    echo_tool(&s, &up).await;
    let secret = "hunter2\"x-fragment-check";
    // The pad moves the secret across both cut points: before them (redacted whole), across
    // them (where a prefix used to survive) and after them (cut off entirely).
    let (mut whole, mut not_whole) = (0, 0);
    for pad in 60..200 {
        let (st, r) = s
            .invoke("echo", json!({"a_pad": "p".repeat(pad)}), json!({}))
            .await;
        assert_eq!(st, 200, "{r}");
        assert!(r["content"].as_str().unwrap().contains("[truncated"), "{r}");
        let rec = s.record_of(&r).await;
        for (what, text) in [("result", r.to_string()), ("history", rec.to_string())] {
            assert!(
                fragments(&text, secret).is_empty(),
                "pad {pad}: {what} kept {:?}: {text}",
                fragments(&text, secret)
            );
        }
        if r["content"].as_str().unwrap().contains("[REDACTED]") {
            whole += 1;
        } else {
            not_whole += 1;
        }
    }
    assert!(whole > 0 && not_whole > 0, "{whole} / {not_whole}");
}

#[tokio::test]
async fn redirects_to_another_origin_drop_secret_and_context_headers() {
    let s = Server::start().await;
    let a = Upstream::start().await;
    let b = Upstream::start().await; // another port: another origin
    s.secret("api_key", "K-7f3a9c1e").await;
    let wid = s
        .webhook(
            json!({"name": "Redir", "method": "GET", "url": format!("{}/redirect", a.base),
            "query_params": [{"name": "to", "value_type": "dynamic"}],
            "headers": [
                {"name": "X-Api-Key", "value_type": "secret", "secret": "api_key"},
                {"name": "X-Sig", "value_type": "static", "value": "v1 {{ secret.api_key }}"},
                {"name": "X-Tenant", "value_type": "context", "value": "tenant"},
                {"name": "Authorization", "value_type": "static", "value": "Bearer plain"},
                {"name": "X-Plain", "value_type": "static", "value": "keep-me"}]}),
        )
        .await;
    s.tool("redir", &wid).await;
    let (st, r) = s
        .invoke(
            "redir",
            json!({"to": format!("{}/landing", b.base)}),
            json!({"tenant": "t-1"}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["outcome"], "success", "{r}");
    let got = b.last();
    assert_eq!(got.uri, "/landing");
    assert_eq!(got.header("x-plain"), Some("keep-me"));
    for h in ["x-api-key", "x-sig", "x-tenant", "authorization"] {
        assert_eq!(got.header(h), None, "{h} crossed origins: {got:?}");
    }
    // A same-origin redirect keeps them.
    let (_, r) = s
        .invoke(
            "redir",
            json!({"to": format!("{}/same", a.base)}),
            json!({"tenant": "t-1"}),
        )
        .await;
    assert_eq!(r["outcome"], "success", "{r}");
    let got = a.last();
    assert_eq!(got.uri, "/same");
    assert_eq!(got.header("x-api-key"), Some("K-7f3a9c1e"));
    assert_eq!(got.header("x-tenant"), Some("t-1"));

    // A 307 keeps method and body: with a secret in the body, another origin is refused.
    let wid = s
        .webhook(
            json!({"name": "Redir body", "method": "POST", "url": format!("{}/redirect", a.base),
            "query_params": [{"name": "to", "value_type": "dynamic"},
                             {"name": "code", "value_type": "static", "value": "307"}],
            "body": [{"name": "token", "value_type": "secret", "secret": "api_key"}]}),
        )
        .await;
    s.tool("redir_body", &wid).await;
    let before = b.count();
    let (_, r) = s
        .invoke(
            "redir_body",
            json!({"to": format!("{}/landing", b.base)}),
            json!({}),
        )
        .await;
    assert_eq!(r["outcome"], "network_error", "{r}");
    assert!(
        r["content"].as_str().unwrap().contains("another origin"),
        "{r}"
    );
    assert_eq!(b.count(), before, "the body was re-sent to another origin");
}

#[tokio::test]
async fn credentials_in_urls_are_refused() {
    let s = Server::start().await;
    let (st, v) = s
        .post(
            "/v1/webhooks",
            get_hook("Creds", "http://user:pa55@127.0.0.1:9/x"),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "url");
    assert!(v.to_string().contains("secret"), "{v}");
    assert!(!v.to_string().contains("pa55"), "{v}");
    let (st, v) = s
        .post(
            "/v1/subscriptions",
            json!({"name": "s", "url": "http://user:pa55@127.0.0.1:9/x", "event_types": ["*"]}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "url");
    assert_eq!(s.get("/v1/webhooks").await.1["items"], json!([]));
}

#[tokio::test]
async fn every_error_is_the_envelope() {
    let s = Server::start().await;
    for path in [
        "/v1/webhooks/%ff",
        "/v1/calls?limit=-1",
        "/v1/calls?limit=abc",
        "/v1/calls?limit=1e9",
        "/v1/calls?limit=1&limit=2",
    ] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert_envelope(st, &v, "bad_request");
    }
    // hyper answers a URI over 64 KiB itself; the client here must be raw TCP (reqwest refuses
    // to build such a URI).
    let (st, v) = raw_tcp(
        &s.base,
        &format!(
            "GET /v1/calls?q={} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "a".repeat(100_000)
        ),
    )
    .await;
    assert_eq!(st, 414, "{v}");
    assert_envelope(st, &v, "uri_too_long");
    let (st, v) = s.send(reqwest::Method::PATCH, "/v1/webhooks", None).await;
    assert_eq!(st, 405, "{v}");
    assert_envelope(st, &v, "method_not_allowed");

    // A context that is not an object, on every route that takes one.
    let up = Upstream::start().await;
    let wid = s.webhook(get_hook("Ok", &format!("{}/ok", up.base))).await;
    s.tool("ok_tool", &wid).await;
    let llm = FakeLlm::start().await;
    llm.always(200, reply("hi"));
    let (st, _) = s
        .post(
            "/v1/agents",
            json!({"name": "a1", "system_prompt": "x", "tools": ["ok_tool"]}),
        )
        .await;
    assert_eq!(st, 201);
    for (path, body) in [
        (
            format!("/v1/webhooks/{wid}/test"),
            json!({"arguments": {}, "context": "tenant-a"}),
        ),
        (
            "/v1/tools/ok_tool/invoke".to_string(),
            json!({"arguments": {}, "context": [1]}),
        ),
        (
            "/v1/agents/a1/chat".to_string(),
            json!({"messages": [{"role": "user", "content": "x"}], "context": 5}),
        ),
    ] {
        let (st, v) = s.post(&path, body).await;
        assert_eq!(st, 422, "{path}: {v}");
        assert_eq!(v["error"]["details"][0]["field"], "context", "{v}");
    }
    assert_eq!(up.count(), 0, "nothing was sent");

    // Names that display as something else, and header values that would split a request.
    for name in [
        "a\u{0}b",
        "line\nbreak",
        "cr\rname",
        "evil\u{202e}gpj.exe",
        "\u{2066}x",
    ] {
        let (st, v) = s
            .post("/v1/webhooks", get_hook(name, &format!("{}/x", up.base)))
            .await;
        assert_eq!(st, 422, "{name:?}: {v}");
        assert_eq!(v["error"]["details"][0]["field"], "name");
        let (st, v) = s
            .post(
                "/v1/subscriptions",
                json!({"name": name, "url": "http://127.0.0.1:9/x", "event_types": ["*"]}),
            )
            .await;
        assert_eq!(st, 422, "{name:?}: {v}");
    }
    let mut def = get_hook("Split", &format!("{}/x", up.base));
    def["headers"] =
        json!([{"name": "X-A", "value_type": "static", "value": "a\r\nX-Injected: 1"}]);
    let (st, v) = s.post("/v1/webhooks", def).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "headers[0].value");

    // With a token, an unknown /v1 route answers 401 before 404.
    let t = Server::start_with(|c| c.admin_token = Some("tok".into())).await;
    let (st, v) = raw(
        reqwest::Method::GET,
        &format!("{}/v1/no-such-thing", t.base),
        &[],
        None,
    )
    .await;
    assert_eq!(st, 401, "{v}");
    assert_envelope(st, &v, "unauthorized");
    let (st, v) = t.get("/v1/no-such-thing").await;
    assert_eq!(st, 404, "{v}");
    assert_envelope(st, &v, "not_found");
}
