//! Plain-HTTP upstreams, sent with hyper's connection API on a pool of this thread's own.
//!
//! reqwest wraps every request in layers that a tool call does not use (its own redirect, retry
//! and timeout services, a `Url` parsed twice more, a connector cloned per request) and
//! hands it to a pool shared through a lock. For `http://` upstreams that was about a tenth of a
//! call's CPU. Here a request is written on a keep-alive connection checked out of a per-thread
//! pool (a serving thread's calls and connections then stay on that thread, as with the
//! per-thread reqwest clients before), and everything else stays where it was: the network
//! policy on every address connected to, redirects followed by hand in `send`, the timeout
//! around the whole attempt. `https://` upstreams still go through reqwest, for its TLS.

use std::cell::RefCell;
// foldhash: these maps are looked up on every call, and SipHash cost more than the lookups.
use foldhash::{HashMap, HashMapExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::policy::NetworkPolicy;

/// A request body.
pub type Body = Full<Bytes>;

/// How long an idle connection is kept (reqwest's pool for `https://` too).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle connections kept per destination (and sender) on one thread (reqwest's too).
pub const MAX_IDLE_PER_HOST: usize = 64;
/// How long connecting may take, every address of the host included (reqwest's too).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a pooled connection goes. The sender's id keeps gateways that share a process (tests)
/// from sharing connections.
#[derive(Hash, PartialEq, Eq, Clone, Debug)]
struct Key {
    sender: u64,
    host: String,
    port: u16,
}

struct Idle {
    conn: SendRequest<Body>,
    since: Instant,
}

thread_local! {
    /// This thread's idle connections.
    static POOL: RefCell<HashMap<Key, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// Why a plain request failed.
#[derive(Debug, thiserror::Error)]
pub enum PlainError {
    /// Resolving or connecting failed (the policy's refusal is in the source chain).
    #[error("could not connect")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Connecting took longer than `CONNECT_TIMEOUT`.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// Sending the request or reading the response head failed.
    #[error("the request failed")]
    Request(#[source] hyper::Error),
}

/// A connection in use; `release` puts it back once its response has been read whole.
pub struct Conn {
    key: Key,
    conn: SendRequest<Body>,
}

impl Conn {
    /// Keep the connection for the next request to the same destination. Only for a connection
    /// whose response was read to its end: one left mid-body cannot carry another request.
    pub fn release(self) {
        if self.conn.is_closed() {
            return;
        }
        let _ = POOL.try_with(|p| {
            let mut pool = p.borrow_mut();
            let idle = pool.entry(self.key).or_default();
            if idle.len() < MAX_IDLE_PER_HOST {
                idle.push(Idle {
                    conn: self.conn,
                    since: Instant::now(),
                });
            }
        });
    }
}

/// The most recently used idle connection to `key` that is still fresh, if any.
fn checkout(key: &Key) -> Option<SendRequest<Body>> {
    POOL.try_with(|p| {
        let mut pool = p.borrow_mut();
        let idle = pool.get_mut(key)?;
        while let Some(i) = idle.pop() {
            if i.since.elapsed() < IDLE_TIMEOUT && !i.conn.is_closed() {
                return Some(i.conn);
            }
        }
        None
    })
    .ok()
    .flatten()
}

/// Send `req` (origin-form URI, `Host` set) to `host:port`: on an idle pooled connection when
/// one is ready, else on a new one to an address the policy allows.
pub async fn send(
    sender: u64,
    policy: &NetworkPolicy,
    host: &str,
    port: u16,
    mut req: hyper::Request<Body>,
) -> Result<(hyper::Response<Incoming>, Conn), PlainError> {
    let key = Key {
        sender,
        host: host.to_string(),
        port,
    };
    while let Some(mut conn) = checkout(&key) {
        // A connection the upstream closed while idle fails here, before anything is sent.
        if conn.ready().await.is_err() {
            continue;
        }
        match conn.try_send_request(req).await {
            Ok(resp) => return Ok((resp, Conn { key, conn })),
            Err(mut e) => match e.take_message() {
                // Not written: try the next connection.
                Some(back) => req = back,
                None => return Err(PlainError::Request(e.into_error())),
            },
        }
    }
    let mut conn = connect(policy, host, port).await?;
    match conn.send_request(req).await {
        Ok(resp) => Ok((resp, Conn { key, conn })),
        Err(e) => Err(PlainError::Request(e)),
    }
}

/// A new connection to the first address of `host` that accepts, under `CONNECT_TIMEOUT`.
async fn connect(
    policy: &NetworkPolicy,
    host: &str,
    port: u16,
) -> Result<SendRequest<Body>, PlainError> {
    let work = async {
        let addrs = match host.trim_start_matches('[').trim_end_matches(']').parse() {
            // An IP literal was checked against the policy with the URL.
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => policy
                .resolve(host, port)
                .await
                .map_err(PlainError::Connect)?,
        };
        let mut last = None;
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    // A request and its answer are small writes that must not wait for an ACK.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(PlainError::Connect(match last {
            Some(e) => Box::new(e),
            None => "the host has no address".into(),
        }))
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| PlainError::ConnectTimeout)??;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| PlainError::Connect(Box::new(e)))?;
    // The connection's task runs on this thread's runtime, next to the calls that use it.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "an upstream connection ended with an error");
        }
    });
    Ok(sender)
}
