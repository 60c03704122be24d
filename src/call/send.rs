//! Step 4: send the request on the shared pooled client, under the webhook's timeout, through the
//! network policy, with the optional retry policy (transient failures only, `Retry-After` honoured).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::policy::{NetworkPolicy, PolicyResolver, find_blocked};
use super::render::PreparedRequest;
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

/// The outbound HTTP side: one pooled client, shared by every call.
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<NetworkPolicy>,
    read_cap: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_REDIRECTS} redirects")]
struct TooManyRedirects;

impl Sender {
    /// Build the client; `read_cap` bounds how much of a response body is read.
    pub fn new(policy: NetworkPolicy, read_cap: usize) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(policy);
        let redirect_policy = policy.clone();
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(TooManyRedirects);
                }
                match redirect_policy.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(b) => attempt.error(b),
                }
            }))
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!("toolgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Sender {
            client,
            policy,
            read_cap,
        })
    }

    /// Send `req` with an overall `timeout` and optional retry policy.
    pub async fn send(
        &self,
        req: &PreparedRequest,
        timeout: Duration,
        retry: Option<RetryPolicy>,
    ) -> Sent {
        if let Err(b) = self.policy.check_url(&req.url) {
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
            let backoff = retry_after.unwrap_or_else(|| backoff(attempt));
            if Instant::now() + backoff >= deadline {
                return sent;
            }
            tokio::time::sleep(backoff).await;
        }
    }

    async fn attempt(
        &self,
        req: &PreparedRequest,
        deadline: Instant,
        timeout: Duration,
    ) -> (Sent, Option<Duration>) {
        let mut b = self.client.request(req.method.as_http(), req.url.clone());
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        if let Some((bytes, ct)) = &req.body {
            if !req
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                b = b.header(reqwest::header::CONTENT_TYPE, *ct);
            }
            b = b.body(bytes.clone());
        }
        let cap = self.read_cap;
        let work = async move {
            let mut resp = b.send().await?;
            let status = resp.status().as_u16();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).to_string(),
                    )
                })
                .collect();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut body = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > cap {
                    body.extend_from_slice(&chunk[..cap - body.len()]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, headers, body, truncated, retry_after))
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
            Ok(Err(e)) => (classify(&e), None),
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

fn backoff(attempt: u32) -> Duration {
    let base = 100u64 << attempt.min(5);
    // Cheap jitter from the clock's nanoseconds: enough to spread synchronized retries.
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % base;
    Duration::from_millis(base / 2 + jitter / 2)
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
    if find_too_many(e) {
        return failed(Outcome::NetworkError, TooManyRedirects.to_string(), 0);
    }
    if e.is_timeout() {
        return failed(Outcome::Timeout, "the request timed out".into(), 0);
    }
    let mut root: &(dyn std::error::Error + 'static) = e;
    while let Some(s) = root.source() {
        root = s;
    }
    let kind = if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read"
    } else {
        "the request failed"
    };
    let cause = root.to_string();
    let msg = if cause.contains("://")
        || std::ptr::eq(root as *const _ as *const u8, e as *const _ as *const u8)
    {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    };
    failed(Outcome::NetworkError, msg, 0)
}

fn find_too_many(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if x.downcast_ref::<TooManyRedirects>().is_some() {
            return true;
        }
        cur = x.source();
    }
    false
}
