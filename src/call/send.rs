//! Step 4: send the request on the shared pooled client, under the webhook's timeout, through the
//! network policy, with the optional retry policy (transient failures only, `Retry-After` honoured).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::plain;
use super::policy::{NetworkPolicy, PolicyResolver, find_blocked};
use super::render::PreparedRequest;
use super::target::Target;
use crate::model::{Outcome, RetryPolicy};

/// At most this many redirect hops are followed, each re-checked against the policy.
pub const MAX_REDIRECTS: usize = 3;

/// What came back from the upstream (or why nothing did).
#[derive(Debug)]
pub struct Sent {
    /// Classification.
    pub outcome: Outcome,
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes (at most the read cap).
    pub body: Vec<u8>,
    /// Whether the body was longer than the read cap.
    pub body_truncated: bool,
    /// Why it failed, without URL or values.
    pub error: Option<String>,
    /// Attempts made.
    pub attempts: u32,
}

/// The outbound HTTP side: a pooled client per thread, shared by every call on that thread.
pub struct Sender {
    /// Distinguishes this sender's clients in a thread's cache from other senders' (tests run
    /// several gateways in one process).
    id: u64,
    /// Built at start (so a bad configuration fails there); also serves threads whose own
    /// client could not be built.
    client: reqwest::Client,
    policy: Arc<NetworkPolicy>,
    read_cap: usize,
}

/// Source of `Sender::id`.
static NEXT_SENDER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Most senders whose clients one thread keeps.
const CLIENTS_PER_THREAD: usize = 8;

thread_local! {
    /// This thread's clients, by sender. A pooled connection's task runs on the runtime that
    /// opened it: with one client per serving thread, a call and its upstream connection stay
    /// on the same thread instead of waking another one twice per request.
    static CLIENTS: std::cell::RefCell<Vec<(u64, reqwest::Client)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Headers that carry credentials whatever their value's source (as browsers and curl treat them).
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// What one hop sends: redirects may change the method, drop the body and drop headers.
struct Hop<'a> {
    /// The request's own URL on the first hop, a redirect's after.
    url: Cow<'a, Target>,
    method: reqwest::Method,
    /// Indexes into the prepared request's headers still sent.
    headers: Vec<usize>,
    body: Option<&'a (Vec<u8>, &'static str)>,
}

/// Why following a redirect was refused or failed, said without the URL.
fn redirect_failure(message: &str) -> Sent {
    failed(Outcome::NetworkError, message.to_string(), 0)
}

impl Sender {
    /// Build the client; `read_cap` bounds how much of a response body is read.
    pub fn new(policy: NetworkPolicy, read_cap: usize) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(policy);
        let client = Self::build_client(&policy)?;
        Ok(Sender {
            id: NEXT_SENDER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            client,
            policy,
            read_cap,
        })
    }

    /// This thread's client (built on first use).
    fn client(&self) -> reqwest::Client {
        CLIENTS.with(|c| {
            let mut clients = c.borrow_mut();
            if let Some((_, client)) = clients.iter().find(|(id, _)| *id == self.id) {
                return client.clone();
            }
            let client = Self::build_client(&self.policy).unwrap_or_else(|_| self.client.clone());
            if clients.len() >= CLIENTS_PER_THREAD {
                clients.remove(0);
            }
            clients.push((self.id, client.clone()));
            client
        })
    }

    fn build_client(policy: &Arc<NetworkPolicy>) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            // Redirects are followed by hand (see `attempt`): reqwest would forward every header
            // but `Authorization` to another origin, secret-bearing ones included.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(plain::CONNECT_TIMEOUT)
            .pool_idle_timeout(plain::IDLE_TIMEOUT)
            .pool_max_idle_per_host(plain::MAX_IDLE_PER_HOST)
            .tcp_nodelay(true)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    /// Send `req` with an overall `timeout` and optional retry policy.
    pub async fn send(
        &self,
        req: &PreparedRequest,
        timeout: Duration,
        retry: Option<RetryPolicy>,
    ) -> Sent {
        if let Err(b) = self.policy.check_url(req.url.host_url()) {
            return failed(Outcome::Blocked, b.to_string(), 0);
        }
        let deadline = Instant::now() + timeout;
        let max_attempts = retry.map(|r| r.max_attempts.clamp(1, 4)).unwrap_or(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (sent, retry_after) = self.attempt(req, deadline, timeout).await;
            let mut sent = sent;
            sent.attempts = attempt;
            let transient = match sent.outcome {
                Outcome::NetworkError | Outcome::Timeout => true,
                Outcome::HttpError => matches!(sent.status, Some(429 | 502 | 503 | 504)),
                _ => false,
            };
            if !transient || attempt >= max_attempts {
                return sent;
            }
            let backoff = retry_after.unwrap_or_else(|| {
                crate::retry::backoff(attempt, Duration::from_millis(200), Duration::from_secs(5))
            });
            if Instant::now() + backoff >= deadline {
                return sent;
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// The next hop of a redirect answered to `hop`, or why it is not followed. On a move to
    /// another origin every header that carries a secret or context value is dropped, and a body
    /// that carries one is never re-sent there.
    fn redirect<'a>(
        &self,
        req: &'a PreparedRequest,
        hop: &Hop<'a>,
        status: u16,
        location: Option<&str>,
    ) -> Result<Hop<'a>, Sent> {
        let location =
            location.ok_or_else(|| redirect_failure("a redirect without a Location header"))?;
        let url = hop
            .url
            .to_url()
            .and_then(|base| base.join(location))
            .map_err(|_| redirect_failure("a redirect to an invalid location"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(redirect_failure(
                "a redirect to a scheme other than http(s)",
            ));
        }
        if let Err(b) = self.policy.check_url(&url) {
            return Err(failed(Outcome::Blocked, b.to_string(), 0));
        }
        let mut next = Hop {
            url: Cow::Owned(Target::from(url)),
            method: hop.method.clone(),
            headers: hop.headers.clone(),
            body: hop.body,
        };
        let to_get = status == 303 && hop.method != reqwest::Method::HEAD
            || matches!(status, 301 | 302) && hop.method == reqwest::Method::POST;
        if to_get {
            next.method = reqwest::Method::GET;
            next.body = None;
            next.headers
                .retain(|&i| !req.headers[i].0.eq_ignore_ascii_case("content-type"));
        }
        if next.url.origin() != req.url.origin() {
            if next.body.is_some() && req.body_sensitive {
                return Err(redirect_failure(
                    "refused a redirect to another origin: it would re-send secret or context values in the body",
                ));
            }
            next.headers.retain(|&i| {
                !req.sensitive_headers.get(i).copied().unwrap_or(true)
                    && !CREDENTIAL_HEADERS
                        .iter()
                        .any(|c| req.headers[i].0.eq_ignore_ascii_case(c))
            });
        }
        Ok(next)
    }

    /// Send one hop: `http://` on this thread's own pool (`plain`), `https://` through reqwest.
    /// Credentials in a URL (refused in a definition, possible in a redirect's `Location`) are
    /// ignored on plain HTTP; reqwest turns them into a Basic `Authorization`, as it did before.
    async fn send_hop(&self, req: &PreparedRequest, hop: &Hop<'_>) -> Result<Answer, Sent> {
        let url = hop.url.host_url();
        if url.scheme() != "http" {
            let whole = hop.url.to_url().map_err(|e| {
                failed(Outcome::NetworkError, format!("the URL is invalid: {e}"), 0)
            })?;
            let mut b = self.client().request(hop.method.clone(), whole);
            for &i in &hop.headers {
                let (k, v) = &req.headers[i];
                // The body's framing is the client's to write, as on plain HTTP.
                if plain::request::is_framing_header(k) {
                    continue;
                }
                b = b.header(k, v);
            }
            if let Some((bytes, ct)) = hop.body {
                if !hop.has_header(req, "content-type") {
                    b = b.header(reqwest::header::CONTENT_TYPE, *ct);
                }
                b = b.body(bytes.clone());
            }
            return b.send().await.map(Answer::Tls).map_err(|e| classify(&e));
        }
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        let request = plain_request(req, hop)
            .map_err(|e| failed(Outcome::NetworkError, describe("the request failed", &e), 0))?;
        match plain::send(
            self.id,
            &self.policy,
            host,
            port,
            &request,
            &hop.method,
            self.read_cap,
        )
        .await
        {
            Ok(resp) => Ok(Answer::Plain(resp)),
            Err(e) => Err(classify_plain(&e)),
        }
    }

    async fn attempt(
        &self,
        req: &PreparedRequest,
        deadline: Instant,
        timeout: Duration,
    ) -> (Sent, Option<Duration>) {
        let cap = self.read_cap;
        let work = async move {
            let mut hop = Hop {
                url: Cow::Borrowed(&req.url),
                method: req.method.as_http(),
                headers: (0..req.headers.len()).collect(),
                body: req.body.as_ref(),
            };
            let mut redirects = 0;
            let resp = loop {
                let resp = self.send_hop(req, &hop).await?;
                let status = resp.status();
                if !plain::wire::is_redirect(status) {
                    break resp;
                }
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(redirect_failure(&format!(
                        "more than {MAX_REDIRECTS} redirects"
                    )));
                }
                let location = resp.header(reqwest::header::LOCATION).map(str::to_string);
                hop = self.redirect(req, &hop, status, location.as_deref())?;
            };
            let status = resp.status();
            let retry_after = resp
                .header(reqwest::header::RETRY_AFTER)
                .and_then(|v| crate::retry::parse_retry_after(v, timeout));
            let (headers, body, truncated) = resp.read(cap).await?;
            Ok::<_, Sent>((status, headers, body, truncated, retry_after))
        };
        match tokio::time::timeout_at(deadline, work).await {
            Err(_) => (
                failed(
                    Outcome::Timeout,
                    format!("no answer within {} ms", timeout.as_millis()),
                    0,
                ),
                None,
            ),
            Ok(Err(sent)) => (sent, None),
            Ok(Ok((status, headers, body, body_truncated, retry_after))) => {
                let outcome = if (200..300).contains(&status) {
                    Outcome::Success
                } else {
                    Outcome::HttpError
                };
                (
                    Sent {
                        outcome,
                        status: Some(status),
                        headers,
                        body,
                        body_truncated,
                        error: None,
                        attempts: 0,
                    },
                    retry_after,
                )
            }
        }
    }
}

/// The `User-Agent` of every upstream request.
const USER_AGENT: &str = concat!("toolgate/", env!("CARGO_PKG_VERSION"));

/// An upstream's answer, from either client.
enum Answer {
    /// From the plain-HTTP pool, read whole (up to the cap) already.
    Plain(plain::wire::Response),
    /// From reqwest, its body still to read.
    Tls(reqwest::Response),
}

/// What an answer's headers and body become: header fields as text, the body up to the cap,
/// and whether it was longer.
type Read = (Vec<(String, String)>, Vec<u8>, bool);

impl Answer {
    fn status(&self) -> u16 {
        match self {
            Answer::Plain(r) => r.status,
            Answer::Tls(r) => r.status().as_u16(),
        }
    }

    /// The first value of header `name` (lower-case), if it is visible ASCII.
    fn header(&self, name: http::HeaderName) -> Option<&str> {
        match self {
            Answer::Plain(r) => r.header(name.as_str()),
            Answer::Tls(r) => r.headers().get(name).and_then(|v| v.to_str().ok()),
        }
    }

    /// The header fields and the body, at most `cap` bytes of it.
    async fn read(self, cap: usize) -> Result<Read, Sent> {
        let mut resp = match self {
            Answer::Plain(r) => return Ok((r.headers, r.body, r.truncated)),
            Answer::Tls(r) => r,
        };
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                // Most values are visible ASCII; the lossy conversion is for the rest.
                let value = match v.to_str() {
                    Ok(text) => text.to_owned(),
                    Err(_) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
                };
                (k.as_str().to_owned(), value)
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e))? {
            if body.len() + chunk.len() > cap {
                body.extend_from_slice(&chunk[..cap - body.len()]);
                return Ok((headers, body, true));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((headers, body, false))
    }
}

impl Hop<'_> {
    /// Whether the request of this hop sets header `name` itself.
    fn has_header(&self, req: &PreparedRequest, name: &str) -> bool {
        self.headers
            .iter()
            .any(|&i| req.headers[i].0.eq_ignore_ascii_case(name))
    }
}

/// A plain-HTTP hop's bytes: the headers reqwest would add by itself (`Host`, `User-Agent`,
/// `Accept`, the body's `Content-Type`) where the request has none, so an upstream sees the
/// same request over either client.
fn plain_request(req: &PreparedRequest, hop: &Hop<'_>) -> Result<Vec<u8>, plain::wire::WireError> {
    let mut w = plain::request::RequestWriter::new(
        hop.method.as_str(),
        hop.url.path_and_query(),
        hop.headers.len() + 4,
    )?;
    if !hop.has_header(req, "host") {
        w.header("host", hop.url.authority())?;
    }
    for &i in &hop.headers {
        let (k, v) = &req.headers[i];
        w.header(k, v)?;
    }
    if !hop.has_header(req, "user-agent") {
        w.header("user-agent", USER_AGENT)?;
    }
    if !hop.has_header(req, "accept") {
        w.header("accept", "*/*")?;
    }
    if let Some(&(_, ct)) = hop.body
        && !hop.has_header(req, "content-type")
    {
        w.header("content-type", ct)?;
    }
    Ok(w.finish(hop.body.map_or(&[][..], |(bytes, _)| bytes)))
}

fn failed(outcome: Outcome, error: String, attempts: u32) -> Sent {
    Sent {
        outcome,
        status: None,
        headers: Vec::new(),
        body: Vec::new(),
        body_truncated: false,
        error: Some(error),
        attempts,
    }
}

/// Classify a reqwest failure without quoting its URL (which may hold secret query values).
fn classify(e: &reqwest::Error) -> Sent {
    if let Some(b) = find_blocked(e) {
        return failed(Outcome::Blocked, b.to_string(), 0);
    }
    if e.is_timeout() {
        return failed(Outcome::Timeout, "the request timed out".into(), 0);
    }
    let kind = if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read"
    } else {
        "the request failed"
    };
    failed(Outcome::NetworkError, describe(kind, e), 0)
}

/// Classify a plain-HTTP failure as `classify` does a reqwest one.
fn classify_plain(e: &plain::PlainError) -> Sent {
    if let Some(b) = find_blocked(e) {
        return failed(Outcome::Blocked, b.to_string(), 0);
    }
    match e {
        plain::PlainError::ConnectTimeout => {
            failed(Outcome::Timeout, "the request timed out".into(), 0)
        }
        plain::PlainError::Connect(_) => {
            failed(Outcome::NetworkError, describe("could not connect", e), 0)
        }
        plain::PlainError::Request(plain::wire::WireError::Body(_)) => failed(
            Outcome::NetworkError,
            describe("the response body could not be read", e),
            0,
        ),
        plain::PlainError::Request(_) => {
            failed(Outcome::NetworkError, describe("the request failed", e), 0)
        }
    }
}

/// `kind`, with the innermost cause of `e` unless that is `e` itself or quotes a URL.
fn describe(kind: &str, e: &(dyn std::error::Error + 'static)) -> String {
    let mut root = e;
    while let Some(s) = root.source() {
        root = s;
    }
    let cause = root.to_string();
    if cause.contains("://")
        || std::ptr::eq(root as *const _ as *const u8, e as *const _ as *const u8)
    {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}
