//! The listening socket. hyper answers a request it cannot parse (a URI over 64 KiB: 414,
//! oversized headers: 431, a malformed request line: 400) by itself, with an empty body, before
//! any router sees it. The connection wrapper here puts those answers in the same
//! `{"error":{…}}` envelope as every other error; everything else passes through untouched.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection that rewrites hyper's empty-bodied error answers into enveloped ones.
pub struct EnvelopeIo<T> {
    inner: T,
    /// Rewritten bytes still to be written (the caller was told they were written).
    pending: Vec<u8>,
}

/// The enveloped answer for a head hyper wrote for a request it could not parse, if `head` is one.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    // Cheap test first: this runs on every write of every connection.
    if head.len() > 512 || !(head.starts_with(b"HTTP/1.1 4") || head.starts_with(b"HTTP/1.0 4")) {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let status_line = text.split("\r\n").next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    let code: u16 = parts.next()?.parse().ok()?;
    if !version.starts_with("HTTP/1.")
        || !(400..500).contains(&code)
        || !text.ends_with("\r\n\r\n")
        || !text
            .to_ascii_lowercase()
            .contains("\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let status = axum::http::StatusCode::from_u16(code).ok()?;
    let message = match code {
        414 => "the request URI is longer than the server accepts (64 KiB)".to_string(),
        431 => "the request headers are larger than the server accepts".to_string(),
        _ => "the request could not be parsed as HTTP".to_string(),
    };
    let body = serde_json::json!({"error": {"code": crate::error::status_code_name(status),
        "message": message}})
    .to_string();
    Some(
        format!(
            "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T> EnvelopeIo<T> {
    /// Wrap a connection.
    pub fn new(inner: T) -> Self {
        EnvelopeIo {
            inner,
            pending: Vec::new(),
        }
    }
}

impl<T: AsyncWrite + Unpin> EnvelopeIo<T> {
    /// Write out what a rewrite left pending; ready once nothing is left.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EnvelopeIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EnvelopeIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(bytes) = rewrite(buf) {
            self.pending = bytes;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let [only] = bufs
            && let Some(bytes) = rewrite(only)
        {
            self.pending = bytes;
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn only_empty_error_heads_are_rewritten() {
        let head = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(rewrite(head).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "uri_too_long");
        assert!(out.contains(&format!("content-length: {}\r\n", body.len())));
        for keep in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 20\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"{\"not\": \"a head\"}",
        ] {
            assert!(rewrite(keep).is_none(), "{}", String::from_utf8_lossy(keep));
        }
    }
}
