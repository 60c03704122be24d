//! The plain-HTTP client against real sockets: a loopback server writes each response byte for
//! byte as scripted, the way a careless or hostile upstream might.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::request::RequestWriter;
use super::wire::{self, WireError};
use super::{NetworkPolicy, send};

/// Read one request head (requests here have no body).
async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&byte[..n]),
        }
    }
    got
}

/// Serve one connection: read a request, write `pieces` one by one, then close at once
/// (`close`) or when the client goes away.
async fn serve_once(listener: TcpListener, pieces: Vec<Vec<u8>>, close: bool) -> Vec<u8> {
    let (mut s, _) = listener.accept().await.expect("accept");
    let request = read_head(&mut s).await;
    for p in pieces {
        s.write_all(&p).await.expect("write");
        s.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if !close {
        let mut rest = [0u8; 64];
        while matches!(s.read(&mut rest).await, Ok(n) if n > 0) {}
    }
    request
}

/// One exchange with a server answering `pieces`.
async fn exchange(
    pieces: Vec<&[u8]>,
    close: bool,
    head: bool,
    cap: usize,
) -> Result<wire::Response, WireError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let pieces = pieces.into_iter().map(<[u8]>::to_vec).collect();
    let server = tokio::spawn(serve_once(listener, pieces, close));
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let method = if head { "HEAD" } else { "GET" };
    let req = RequestWriter::new(method, "/x", 1)?.finish(b"");
    let mut buf = Vec::new();
    wire::write_request(&mut stream, &mut buf, &req).await?;
    let resp = wire::read_response(&mut stream, &mut buf, head, cap).await;
    drop(stream);
    server.await.expect("server");
    resp
}

fn split(bytes: &[u8], n: usize) -> Vec<&[u8]> {
    bytes.chunks(n).collect()
}

#[tokio::test]
async fn a_length_framed_response_is_read_whole_and_the_connection_kept() {
    let r = exchange(
        vec![b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\nX-Odd: caf\xc3\xa9\r\n\r\n{\"a\":1}"],
        false,
        false,
        1024,
    )
    .await
    .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"{\"a\":1}");
    assert!(!r.truncated && r.reusable);
    assert_eq!(
        r.headers[0],
        ("content-type".into(), "application/json".into())
    );
    assert_eq!(r.headers[2].1, "café");
    assert_eq!(
        r.header("x-odd"),
        None,
        "not visible ASCII, as HeaderValue::to_str"
    );
    assert_eq!(r.header("content-length"), Some("7"));
}

#[tokio::test]
async fn a_response_dribbled_byte_by_byte_is_the_same_response() {
    let whole: &[u8] = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n";
    let r = exchange(split(whole, 1), false, false, 1024)
        .await
        .expect("response");
    assert_eq!(
        (r.status, r.body.as_slice(), r.reusable),
        (201, &b"abcde"[..], true)
    );
}

#[tokio::test]
async fn bodies_longer_than_the_cap_are_cut_and_the_connection_dropped() {
    let chunked = exchange(
        vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n"],
        false,
        false,
        6,
    )
    .await
    .expect("chunked");
    assert_eq!(
        (chunked.body.as_slice(), chunked.truncated, chunked.reusable),
        (&b"abcdef"[..], true, false)
    );
    let length = exchange(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nabcd", b"efgh"],
        false,
        false,
        6,
    )
    .await
    .expect("length");
    assert_eq!(
        (length.body.as_slice(), length.truncated, length.reusable),
        (&b"abcdef"[..], true, false)
    );
    let exact = exchange(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef"],
        false,
        false,
        6,
    )
    .await
    .expect("exact");
    assert_eq!((exact.truncated, exact.reusable), (false, true));
}

#[tokio::test]
async fn a_body_ended_by_the_connection_is_read_to_its_end_and_not_kept() {
    let r = exchange(
        vec![b"HTTP/1.1 200 OK\r\n\r\nfirst ", b"second"],
        true,
        false,
        1024,
    )
    .await
    .expect("response");
    assert_eq!(
        (r.body.as_slice(), r.truncated, r.reusable),
        (&b"first second"[..], false, false)
    );
    let gzip_te = exchange(
        vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw"],
        true,
        false,
        1024,
    )
    .await
    .expect("te without chunked");
    assert_eq!(
        (gzip_te.body.as_slice(), gzip_te.reusable),
        (&b"raw"[..], false)
    );
}

#[tokio::test]
async fn ambiguous_framing_is_never_reused_and_conflicts_fail() {
    // Both framings: read as chunked (RFC 9112 §6.3), the connection not kept.
    let both = exchange(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"],
        false,
        false,
        1024,
    )
    .await
    .expect("both");
    assert_eq!((both.body.as_slice(), both.reusable), (&b"ok"[..], false));
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nok",
    ] {
        let e = exchange(vec![bad], true, false, 1024)
            .await
            .expect_err("conflict");
        assert!(matches!(e, WireError::Length), "{e:?}");
    }
    let same = exchange(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok"],
        false,
        false,
        1024,
    )
    .await
    .expect("agreeing lengths");
    assert_eq!(same.body, b"ok");
    for bad in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
    ] {
        let e = exchange(vec![bad], true, false, 1024)
            .await
            .expect_err("bad chunk");
        assert!(matches!(e.cause(), WireError::Chunk), "{e:?}");
        assert!(matches!(e, WireError::Body(_)), "{e:?}");
    }
}

#[tokio::test]
async fn what_follows_the_body_or_asks_to_close_keeps_the_connection_out_of_the_pool() {
    for (resp, why) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"[..],
            "bytes after the body",
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok",
            "Connection: close",
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.0",
        ),
    ] {
        let r = exchange(vec![resp], false, false, 1024).await.expect(why);
        assert_eq!(r.body, b"ok", "{why}");
        assert!(!r.reusable, "{why}");
    }
}

#[tokio::test]
async fn interim_answers_are_skipped_and_bodiless_answers_have_no_body() {
    let r = exchange(
        vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ],
        false,
        false,
        1024,
    )
    .await
    .expect("after 1xx");
    assert_eq!(
        (r.status, r.body.as_slice(), r.reusable),
        (200, &b"ok"[..], true)
    );
    let head = exchange(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"],
        false,
        true,
        1024,
    )
    .await
    .expect("HEAD");
    assert!(head.body.is_empty() && head.reusable);
    let no_content = exchange(
        vec![b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"],
        false,
        false,
        1024,
    )
    .await
    .expect("204");
    assert!(no_content.body.is_empty() && no_content.reusable);
    let e = exchange(
        vec![b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"],
        true,
        false,
        1024,
    )
    .await
    .expect_err("101");
    assert!(matches!(e, WireError::Upgrade), "{e:?}");
}

#[tokio::test]
async fn broken_heads_and_early_ends_fail_the_exchange() {
    let huge = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\n",
        "a".repeat(wire::MAX_HEAD)
    );
    let e = exchange(vec![huge.as_bytes()], true, false, 1024)
        .await
        .expect_err("huge head");
    assert!(matches!(e, WireError::HeadTooLarge), "{e:?}");
    let many: String = (0..=wire::MAX_HEADERS)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
    let e = exchange(vec![many.as_bytes()], true, false, 1024)
        .await
        .expect_err("many headers");
    assert!(
        matches!(e, WireError::Parse(httparse::Error::TooManyHeaders)),
        "{e:?}"
    );
    let e = exchange(
        vec![b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\nContent-Length: 0\r\n\r\n"],
        true,
        false,
        1024,
    )
    .await
    .expect_err("obs-fold");
    assert!(matches!(e, WireError::Parse(_)), "{e:?}");
    let e = exchange(vec![b"HTTP/2 200\r\n\r\n"], true, false, 1024)
        .await
        .expect_err("HTTP/2");
    assert!(matches!(e, WireError::Parse(_)), "{e:?}");
    let e = exchange(vec![], true, false, 1024)
        .await
        .expect_err("no answer");
    assert!(matches!(e, WireError::NoResponse), "{e:?}");
    // Ended in the head, then in the body: the latter is said to be the body's failure.
    for (early, in_body) in [
        (&b"HTTP/1.1 200 OK\r\nContent-Le"[..], false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTrailer: x\r\n",
            true,
        ),
    ] {
        let e = exchange(vec![early], true, false, 1024)
            .await
            .expect_err("early end");
        assert!(matches!(e.cause(), WireError::Incomplete), "{e:?}");
        assert_eq!(matches!(e, WireError::Body(_)), in_body, "{e:?}");
    }
}

/// `send` a request without a body to a loopback `port`, as sender `sender` (each test its own
/// pool).
async fn send_to(
    sender: u64,
    port: u16,
    method: http::Method,
) -> Result<wire::Response, super::PlainError> {
    let request = RequestWriter::new(method.as_str(), "/", 0)
        .expect("writer")
        .finish(b"");
    let policy = NetworkPolicy::default();
    send(sender, &policy, "127.0.0.1", port, &request, &method, 1024).await
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let mut connections = 0;
        for _ in 0..2 {
            let (mut s, _) = listener.accept().await.expect("accept");
            connections += 1;
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .expect("write");
            // Kept alive by its headers, closed anyway while idle.
            drop(s);
        }
        connections
    });
    for round in 0..2 {
        let r = send_to(u64::MAX, port, http::Method::GET)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(
            (r.status, r.body.as_slice(), r.reusable),
            (200, &b"ok"[..], true)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.await.expect("server"), 2);
    // The second connection, closed too, is dropped by a sweep without a call asking for it.
    assert_eq!(super::idle_for(u64::MAX), 1);
    super::sweep_now();
    assert_eq!(super::idle_for(u64::MAX), 0);
}

#[tokio::test]
async fn a_redirect_body_is_read_only_while_short() {
    let short = exchange(
        vec![b"HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 5\r\n\r\nmoved"],
        false,
        false,
        1 << 20,
    )
    .await
    .expect("short");
    assert_eq!(
        (short.status, short.header("location"), short.reusable),
        (302, Some("/b"), true)
    );
    let long_body = vec![b'x'; 64 * 1024];
    let mut long =
        b"HTTP/1.1 301 Moved Permanently\r\nLocation: /c\r\nContent-Length: 65536\r\n\r\n".to_vec();
    long.extend_from_slice(&long_body);
    let long = exchange(vec![&long], false, false, 1 << 20)
        .await
        .expect("long");
    assert_eq!(
        (long.status, long.truncated, long.reusable),
        (301, true, false)
    );
    assert_eq!(long.body.len(), 16 * 1024);
}

/// An upstream whose first connection answers one request and then closes on the next without
/// a word (its idle timeout striking as the request arrives); later connections answer. Returns
/// its port and how many connections it accepted.
async fn closing_upstream() -> (u16, tokio::task::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let mut connections = 0;
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (mut first, _) = listener.accept().await.expect("accept");
        connections += 1;
        read_head(&mut first).await;
        first.write_all(answer).await.expect("write");
        read_head(&mut first).await;
        drop(first);
        while let Ok(Ok((mut s, _))) =
            tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
        {
            connections += 1;
            read_head(&mut s).await;
            let _ = s.write_all(answer).await;
        }
        connections
    });
    (port, server)
}

#[tokio::test]
async fn an_idempotent_request_lost_on_a_closing_kept_connection_is_sent_again() {
    let (port, server) = closing_upstream().await;
    for round in 0..2 {
        let r = send_to(u64::MAX - 1, port, http::Method::GET)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(r.body, b"ok", "round {round}");
    }
    assert_eq!(
        server.await.expect("server"),
        2,
        "the second GET went on a new connection"
    );
}

#[tokio::test]
async fn a_post_lost_on_a_closing_kept_connection_is_not_sent_again() {
    let (port, server) = closing_upstream().await;
    send_to(u64::MAX - 2, port, http::Method::GET)
        .await
        .expect("first");
    let e = send_to(u64::MAX - 2, port, http::Method::POST)
        .await
        .expect_err("a POST may have been acted on");
    assert!(
        matches!(e, super::PlainError::Request(WireError::NoResponse)),
        "{e:?}"
    );
    assert_eq!(server.await.expect("server"), 1);
}

/// How an upstream treats a request whose body it does not want.
#[derive(Clone, Copy)]
enum Refusal {
    /// Answers 413 with `Connection: close` at once and closes, the body unread.
    AnswerAndClose,
    /// Answers 413 at once, keeps the connection open and reads no more for a while.
    AnswerAndStall,
    /// Sends `100 Continue` at once, reads the whole body, then answers 200 with its length.
    ContinueThenRead,
}

/// `send` a POST with a body of `BIG` bytes (far more than the sockets' buffers hold) to an
/// upstream behaving as `how`.
async fn post_big_body(sender: u64, how: Refusal) -> Result<wire::Response, super::PlainError> {
    const BIG: usize = 8 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        // The head and the start of the body (read_head waits for a head at the end).
        let mut head = Vec::new();
        let mut piece = vec![0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut piece).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&piece[..n]),
            }
        }
        match how {
            Refusal::AnswerAndClose => {
                let _ = s
                    .write_all(b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\nnope")
                    .await;
            }
            Refusal::AnswerAndStall => {
                let _ = s
                    .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nnope")
                    .await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Refusal::ContinueThenRead => {
                s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .expect("continue");
                // What came with the head counts too.
                let at = head
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(head.len(), |i| i + 4);
                let mut got = head.len() - at;
                let mut piece = vec![0u8; 64 * 1024];
                while got < BIG {
                    match s.read(&mut piece).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                let body = got.to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(answer.as_bytes()).await.expect("answer");
                let mut rest = [0u8; 64];
                while matches!(s.read(&mut rest).await, Ok(n) if n > 0) {}
            }
        }
    });
    let mut writer = RequestWriter::new("POST", "/upload", 1).expect("writer");
    writer
        .header("content-type", "application/octet-stream")
        .expect("header");
    let request = writer.finish(&vec![b'x'; BIG]);
    let policy = NetworkPolicy::default();
    let resp = tokio::time::timeout(
        Duration::from_secs(2),
        send(
            sender,
            &policy,
            "127.0.0.1",
            port,
            &request,
            &http::Method::POST,
            1024,
        ),
    )
    .await
    .expect("the answer arrives while the body is still being written, not after a timeout");
    server.abort();
    resp
}

#[tokio::test]
async fn an_upstream_that_refuses_a_body_before_reading_it_is_heard() {
    for how in [Refusal::AnswerAndClose, Refusal::AnswerAndStall] {
        let r = post_big_body(u64::MAX - 3, how)
            .await
            .expect("the upstream's answer, not a write error");
        assert_eq!((r.status, r.body.as_slice()), (413, &b"nope"[..]));
        assert!(
            !r.reusable,
            "the body was not all sent: the connection is not kept"
        );
    }
    assert_eq!(super::idle_for(u64::MAX - 3), 0);
}

#[tokio::test]
async fn an_interim_answer_while_a_body_is_written_does_not_stop_it() {
    let r = post_big_body(u64::MAX - 4, Refusal::ContinueThenRead)
        .await
        .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        (8usize << 20).to_string().as_bytes(),
        "the whole body arrived"
    );
    assert!(r.reusable);
}

#[tokio::test]
async fn an_idle_thread_drops_what_its_upstreams_closed_when_its_sweep_is_due() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (close, closing) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .expect("write");
        // Kept alive by its headers, closed anyway while idle, when the test says.
        let _ = closing.await;
        drop(s);
    });
    let sender = u64::MAX - 5;
    // The first release on this thread sweeps (never swept before); the connection is open.
    send_to(sender, port, http::Method::GET)
        .await
        .expect("first");
    assert_eq!(super::idle_for(sender), 1);
    let _ = close.send(());
    server.await.expect("server");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Swept moments ago: not due yet, the closed connection stays until the next sweep.
    super::sweep_if_due();
    assert_eq!(super::idle_for(sender), 1, "not due yet");
    // Once due (as if SWEEP_EVERY had passed), the chore drops it without any call.
    super::SWEPT.with(|s| s.set(None));
    super::sweep_if_due();
    assert_eq!(super::idle_for(sender), 0);
}
