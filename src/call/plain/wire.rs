//! HTTP/1.1 on the wire for plain upstreams: the request's bytes (`request`) written, the
//! response's head parsed by httparse (the parser hyper itself uses) and its body framed as RFC 9112 §6.3 says,
//! all in the calling task.
//!
//! hyper's client connection is a task of its own, fed through a channel: per call its dispatch,
//! the header maps it builds both ways and the hand-overs between the call and that task cost
//! about a quarter of a call's instructions (BENCHMARKS.md, issue 16, twenty-fourth session).
//! What a tool call needs of HTTP/1.1 is small: one request, one whole response read up to a cap.
//! Anything doubtful about a response's framing fails the call or keeps its connection out of
//! the pool; nothing is guessed.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request::is_value_byte;

/// Largest response head (status line and headers) read; hyper's default allows about 400 KB,
/// nginx's proxy 4–8 KB per line.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with extensions) of a chunked body.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Most of a redirect's body read.
const REDIRECT_BODY: usize = 16 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// Why an exchange failed. No variant quotes a header value: a value may hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A header name that is not an HTTP token.
    #[error("a header name holds a character HTTP does not allow")]
    HeaderName,
    /// A header value with a control character or a non-ASCII one.
    #[error("a header value holds a character HTTP does not allow")]
    HeaderValue,
    /// A request target with a space, a control or a non-ASCII character (a `Url` has none).
    #[error("the request target holds a character HTTP does not allow")]
    Target,
    /// The connection ended (or was reset) before a byte of a response arrived.
    #[error("the connection closed without a response")]
    NoResponse,
    /// The connection ended before the response did.
    #[error("the connection closed before the response was complete")]
    Incomplete,
    /// The response head did not fit `MAX_HEAD`.
    #[error("the response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The response head is not HTTP/1.x.
    #[error("the response is not valid HTTP/1.x: {0}")]
    Parse(httparse::Error),
    /// `Content-Length` is not a number, or two of them disagree.
    #[error("the response's Content-Length is invalid")]
    Length,
    /// A chunked body that does not follow the chunked coding.
    #[error("the response's chunked body is malformed")]
    Chunk,
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("the upstream switched protocols unasked")]
    Upgrade,
    /// The connection took not a byte of the request (on a pooled connection: the upstream
    /// closed it while idle, and another connection may carry the request).
    #[error("the request could not be sent: {0}")]
    NotSent(std::io::Error),
    /// Reading or writing the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The head arrived whole and the body then failed as the error inside says: the caller is
    /// told the body could not be read, as for an HTTPS upstream.
    #[error("the response body could not be read")]
    Body(#[source] Box<WireError>),
}

#[cfg(test)]
impl WireError {
    /// The failure itself, whether or not it came while reading a body.
    pub fn cause(&self) -> &WireError {
        match self {
            WireError::Body(inner) => inner,
            other => other,
        }
    }
}

/// A response read whole (or up to the cap).
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in the order received, names lower-cased, values as text (bytes that are
    /// not UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    /// The body, at most the cap.
    pub body: Vec<u8>,
    /// The body was longer than the cap (the rest was not read).
    pub truncated: bool,
    /// The connection can carry another request: HTTP/1.1, no `Connection: close`, a body
    /// framed by its length or chunks and read to its end, nothing after it.
    pub reusable: bool,
}

impl Response {
    /// The first value of header `name` (lower-case) that is visible ASCII, as
    /// `HeaderValue::to_str` would give it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| v.bytes().all(is_value_byte))
    }
}

/// Whether `status` is a redirect that is followed (`Location` names where to).
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// No body (`HEAD`, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// The chunked coding.
    Chunked,
    /// The connection's end.
    Close,
}

/// What the head says, read off before the buffer is touched again.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    len: usize,
    framing: Framing,
    keep_alive: bool,
}

/// How much of a request went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// All of it.
    Whole,
    /// Part of it: the upstream answered, closed or reset the connection before it took the
    /// rest. What it said (if anything) is in the read buffer; the connection is not reused.
    Cut,
}

/// Write `request` on `stream` (`WireError::NotSent` when not a byte of it was taken).
///
/// A request that does not go out in one write (a large body) is written while the
/// connection is watched for an answer: an upstream may refuse a body before reading it
/// (413, 401) and then stop reading or close. Its answer is read into `buf` and the rest of the
/// request is not sent (`Sent::Cut`), as hyper's client does; an interim answer (100 Continue)
/// is passed over and the writing goes on.
pub async fn write_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: &[u8],
) -> Result<Sent, WireError> {
    let first = match stream.write(request).await {
        Ok(0) => return Err(WireError::NotSent(std::io::ErrorKind::WriteZero.into())),
        Err(e) => return Err(WireError::NotSent(e)),
        Ok(n) => n,
    };
    let mut rest = &request[first..];
    while !rest.is_empty() {
        tokio::select! {
            biased;
            ready = stream.readable() => {
                ready?;
                if spoke_early(stream, buf)? {
                    return Ok(Sent::Cut);
                }
            }
            ready = stream.writable() => {
                ready?;
                match stream.try_write(rest) {
                    Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // Closed on us: whatever it said before that is read next.
                    Err(e) if is_reset(&e) => return Ok(Sent::Cut),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(Sent::Whole)
}

/// What the upstream sent while its request was still being written, read into `buf`: whether
/// that ends the writing (an answer or the start of one that is not interim, the connection's
/// end, a reset). A whole interim answer is dropped from `buf`.
fn spoke_early(stream: &TcpStream, buf: &mut Vec<u8>) -> Result<bool, WireError> {
    buf.reserve(READ_CHUNK);
    match stream.try_read_buf(buf) {
        Ok(0) => return Ok(true),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
        Err(e) if is_reset(&e) => return Ok(true),
        Err(e) => return Err(e.into()),
    }
    loop {
        match parse_head(buf, false) {
            Ok(Some(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                buf.drain(..h.len);
            }
            // The start of a head: wait for the rest of it while writing on.
            Ok(None) => return Ok(buf.len() >= MAX_HEAD),
            // An answer, or something `read_response` will refuse.
            Ok(Some(_)) | Err(_) => return Ok(true),
        }
        if buf.is_empty() {
            return Ok(false);
        }
    }
}

/// Read one response from `stream` through `buf` (empty on entry, or holding what the
/// upstream sent while the request was written; left empty when the connection is reusable).
/// `head_request`: the request was `HEAD`, so no body follows.
pub async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
    cap: usize,
) -> Result<Response, WireError> {
    let mut interim = false;
    let head = loop {
        // Nothing to parse before the first read (the usual case: the request went out whole).
        let parsed = if buf.is_empty() {
            None
        } else {
            parse_head(buf, head_request)?
        };
        match parsed {
            Some(h) if (100..200).contains(&h.status) => {
                if h.status == 101 {
                    return Err(WireError::Upgrade);
                }
                // An interim answer (100 Continue, 103 Early Hints): the real one follows.
                buf.drain(..h.len);
                interim = true;
            }
            Some(h) => break h,
            None => {
                if buf.len() >= MAX_HEAD {
                    return Err(WireError::HeadTooLarge);
                }
                let nothing_yet = buf.is_empty() && !interim;
                match fill(stream, buf).await {
                    Ok(()) => {}
                    Err(WireError::Incomplete) if nothing_yet => return Err(WireError::NoResponse),
                    Err(WireError::Io(e)) if nothing_yet && is_reset(&e) => {
                        return Err(WireError::NoResponse);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    // A redirect's body is never used (the redirect is followed or the call fails): a short one
    // is read so that the connection can be kept, a longer one is not read on.
    let cap = if is_redirect(head.status) {
        cap.min(REDIRECT_BODY)
    } else {
        cap
    };
    let mut body = Body {
        stream,
        buf,
        pos: head.len,
    };
    let read = match head.framing {
        Framing::Empty => Ok((Vec::new(), false, true)),
        Framing::Length(n) => body.length(n, cap).await,
        Framing::Chunked => body.chunked(cap).await,
        Framing::Close => body.until_close(cap).await,
    };
    let (bytes, truncated, ended) = read.map_err(|e| WireError::Body(Box::new(e)))?;
    let reusable = head.keep_alive && ended && !truncated && body.rest().is_empty();
    buf.clear();
    Ok(Response {
        status: head.status,
        headers: head.headers,
        body: bytes,
        truncated,
        reusable,
    })
}

/// A connection the peer reset or aborted (what a closed keep-alive connection answers).
fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// The head at the start of `buf`, if it is all there.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, WireError> {
    // Left uninitialised: writing 100 empty fields first cost more than parsing a usual head.
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(WireError::Parse(e)),
    };
    let status = resp.code.unwrap_or(0);
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close = resp.version != Some(1);
    let mut headers = Vec::with_capacity(resp.headers.len());
    for f in resp.headers.iter() {
        let name = f.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                for part in f.value.split(|&b| b == b',') {
                    let n = parse_length(part.trim_ascii()).ok_or(WireError::Length)?;
                    if length.is_some_and(|l| l != n) {
                        return Err(WireError::Length);
                    }
                    length = Some(n);
                }
            }
            "transfer-encoding" => {
                transfer_encoding = true;
                // Only the last coding of the last field counts: chunked must be final.
                chunked = f
                    .value
                    .split(|&b| b == b',')
                    .next_back()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            "connection" => {
                close |= f
                    .value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            }
            _ => {}
        }
        let value = match std::str::from_utf8(f.value) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(f.value).into_owned(),
        };
        headers.push((name, value));
    }
    let framing = if head_request || matches!(status, 100..=199 | 204 | 304) {
        Framing::Empty
    } else if transfer_encoding {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    // Both framings at once is how responses get smuggled: read this one as chunked (RFC 9112
    // §6.3) and never put the connection back.
    let keep_alive = !(close || transfer_encoding && length.is_some()) && framing != Framing::Close;
    Ok(Some(Head {
        status,
        headers,
        len,
        framing,
        keep_alive,
    }))
}

/// A `Content-Length` value: digits only, at most 19 of them.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Read more of the response into `buf`; the connection's end here is an incomplete response.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), WireError> {
    buf.reserve(READ_CHUNK);
    if stream.read_buf(buf).await? == 0 {
        return Err(WireError::Incomplete);
    }
    Ok(())
}

/// What a body is read from: the connection, and its buffer with what was read of the body
/// from `pos` on. Each reader returns (body, truncated, read to its end).
struct Body<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut Vec<u8>,
    pos: usize,
}

/// A body read: its bytes, whether it was cut at the cap, whether it was read to its end.
type BodyRead = (Vec<u8>, bool, bool);

impl Body<'_> {
    /// The bytes read and not yet taken.
    fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Take `n` bytes of what was read.
    fn take(&mut self, n: usize, into: &mut Vec<u8>) {
        into.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
    }

    /// Read more, first dropping what was taken.
    async fn refill(&mut self) -> Result<(), WireError> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        fill(self.stream, self.buf).await
    }

    /// A body of `n` bytes.
    async fn length(&mut self, n: u64, cap: usize) -> Result<BodyRead, WireError> {
        let want = usize::try_from(n).map_or(cap, |n| n.min(cap));
        let truncated = n > want as u64;
        let ready = want.min(self.rest().len());
        // Grown as bytes come: a length is only what the upstream says.
        let mut body = Vec::with_capacity(want.min(ready + READ_CHUNK));
        self.take(ready, &mut body);
        // The rest straight into the body, never past it: nothing after the body is read.
        while body.len() < want {
            let filled = body.len();
            body.resize(filled + (want - filled).min(8 * READ_CHUNK), 0);
            match self.stream.read(&mut body[filled..]).await? {
                0 => return Err(WireError::Incomplete),
                k => body.truncate(filled + k),
            }
        }
        Ok((body, truncated, !truncated))
    }

    /// A chunked body, its trailer read past.
    async fn chunked(&mut self, cap: usize) -> Result<BodyRead, WireError> {
        let mut body = Vec::new();
        loop {
            let size = loop {
                match httparse::parse_chunk_size(self.rest()) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.pos += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.rest().len() <= MAX_CHUNK_LINE => {
                        self.refill().await?
                    }
                    _ => return Err(WireError::Chunk),
                }
            };
            if size == 0 {
                self.skip_trailer().await?;
                return Ok((body, false, true));
            }
            let mut left = size;
            while left > 0 {
                if self.rest().is_empty() {
                    self.refill().await?;
                }
                let ready = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.rest().len());
                let room = cap - body.len();
                if ready > room {
                    self.take(room, &mut body);
                    return Ok((body, true, false));
                }
                self.take(ready, &mut body);
                left -= ready as u64;
            }
            while self.rest().len() < 2 {
                self.refill().await?;
            }
            if !self.rest().starts_with(b"\r\n") {
                return Err(WireError::Chunk);
            }
            self.pos += 2;
        }
    }

    /// The trailer section after the last chunk, up to its empty line; its fields are not kept.
    async fn skip_trailer(&mut self) -> Result<(), WireError> {
        let mut seen = 0;
        loop {
            match memchr::memmem::find(self.rest(), b"\r\n") {
                Some(0) => {
                    self.pos += 2;
                    return Ok(());
                }
                Some(i) => {
                    seen += i + 2;
                    self.pos += i + 2;
                }
                None => self.refill().await?,
            }
            if seen + self.rest().len() > MAX_HEAD {
                return Err(WireError::HeadTooLarge);
            }
        }
    }

    /// A body that ends with the connection (never reused after it).
    async fn until_close(&mut self, cap: usize) -> Result<BodyRead, WireError> {
        let mut body = Vec::new();
        loop {
            let room = cap - body.len();
            if self.rest().len() > room {
                self.take(room, &mut body);
                return Ok((body, true, false));
            }
            self.take(self.rest().len(), &mut body);
            match self.refill().await {
                // Here the connection's end is the body's.
                Err(WireError::Incomplete) => return Ok((body, false, false)),
                other => other?,
            }
        }
    }
}
