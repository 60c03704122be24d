//! Plain-HTTP upstreams: a request written and its response read in the calling task
//! (`wire`), on a keep-alive connection from a pool of this thread's own.
//!
//! reqwest wraps every request in layers that a tool call does not use (its own redirect, retry
//! and timeout services, a `Url` parsed twice more, a connector cloned per request) and
//! hands it to a pool shared through a lock; hyper's connection API, used here before, runs each
//! connection as a task of its own fed through channels. For `http://` upstreams a request is
//! now bytes written on a connection checked out of a per-thread pool (a serving thread's calls
//! and connections stay on that thread), and everything else stays where it was: the network
//! policy on every address connected to, redirects followed by hand in `send`, the timeout
//! around the whole attempt (a connection dropped mid-response never returns to the pool).
//! `https://` upstreams still go through reqwest, for its TLS.

pub mod request;
pub mod wire;

use std::cell::RefCell;
// foldhash: these maps are looked up on every call, and SipHash cost more than the lookups.
use foldhash::{HashMap, HashMapExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::policy::NetworkPolicy;

/// How long an idle connection is kept (reqwest's pool for `https://` too).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle connections kept per destination (and sender) on one thread (reqwest's too).
pub const MAX_IDLE_PER_HOST: usize = 64;
/// Largest read buffer an idle connection keeps.
const KEPT_BUFFER: usize = 64 * 1024;
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

/// A connection between requests, with its read buffer (empty: nothing is pending on it).
struct Idle {
    conn: Connection,
    since: Instant,
}

impl Idle {
    /// Still fresh, and neither closed by the upstream nor holding anything unasked.
    fn usable(&self) -> bool {
        self.since.elapsed() < IDLE_TIMEOUT && still_open(&self.conn.stream)
    }
}

/// A connection to an upstream and the buffer its responses are read through.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

thread_local! {
    /// This thread's idle connections.
    static POOL: RefCell<HashMap<Key, Vec<Idle>>> = RefCell::new(HashMap::new());
    /// When this thread's pool was last swept (`sweep`).
    static SWEPT: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// How often a thread drops its idle connections that expired or that the upstream closed: on
/// releasing a connection, and from a serving thread's periodic chores (`sweep_if_due`) when it
/// makes no calls. Nothing watches an idle connection (no task per connection any more), so
/// without this a closed one would hold its socket until a call to the same place checked it out.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Why a plain request failed.
#[derive(Debug, thiserror::Error)]
pub enum PlainError {
    /// Resolving or connecting failed (the policy's refusal is in the source chain).
    #[error("could not connect")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Connecting took longer than `CONNECT_TIMEOUT`.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// Writing the request or reading the response failed.
    #[error("the request failed")]
    Request(#[source] wire::WireError),
}

/// Keep `conn` for the next request to the same destination.
fn release(key: Key, conn: Connection) {
    let _ = POOL.try_with(|p| {
        let mut pool = p.borrow_mut();
        let now = Instant::now();
        let idle = pool.entry(key).or_default();
        if idle.len() < MAX_IDLE_PER_HOST {
            idle.push(Idle { conn, since: now });
        }
        if sweep_due(now) {
            sweep(&mut pool);
        }
    });
}

/// Whether this thread's pool is due a sweep (`SWEEP_EVERY` since the last, or never swept);
/// if so, the sweep is taken as done now.
fn sweep_due(now: Instant) -> bool {
    SWEPT
        .try_with(|s| match s.get() {
            Some(last) if now.saturating_duration_since(last) < SWEEP_EVERY => false,
            _ => {
                s.set(Some(now));
                true
            }
        })
        .unwrap_or(false)
}

/// Sweep this thread's pool if it is due: for a serving thread's periodic chores, so that a
/// thread that makes no more calls does not hold the sockets its upstreams closed.
pub fn sweep_if_due() {
    let _ = POOL.try_with(|p| {
        let Ok(mut pool) = p.try_borrow_mut() else {
            return;
        };
        if !pool.is_empty() && sweep_due(Instant::now()) {
            sweep(&mut pool);
        }
    });
}

/// Drop every idle connection that expired or that the upstream closed, and every destination
/// left with none.
fn sweep(pool: &mut HashMap<Key, Vec<Idle>>) {
    pool.retain(|_, idle| {
        idle.retain(Idle::usable);
        !idle.is_empty()
    });
}

/// Whether an idle connection may carry a request: the upstream has neither closed it nor
/// sent anything unasked. tokio knows a socket is readable from the reactor's events, so a
/// connection with nothing to read costs no system call here.
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The most recently used idle connection to `key` that is still fresh and open, if any.
fn checkout(key: &Key) -> Option<Connection> {
    POOL.try_with(|p| {
        let mut pool = p.borrow_mut();
        let idle = pool.get_mut(key)?;
        while let Some(i) = idle.pop() {
            if i.usable() {
                return Some(i.conn);
            }
        }
        None
    })
    .ok()
    .flatten()
}

/// Send `request` (the bytes of `wire::RequestWriter`, for `method`) to `host:port` and read
/// its response (the body up to `cap` bytes): on an idle pooled connection when one is open,
/// else on a new one to an address the policy allows.
///
/// A kept connection can be closed by the upstream just as a request goes out on it (its idle
/// timeout): then not a byte of an answer comes back. An idempotent request (RFC 9110 §9.2.2)
/// is then sent once more on a new connection; any other fails, as it may have been acted on.
pub async fn send(
    sender: u64,
    policy: &NetworkPolicy,
    host: &str,
    port: u16,
    request: &[u8],
    method: &http::Method,
    cap: usize,
) -> Result<wire::Response, PlainError> {
    use http::Method;
    let key = Key {
        sender,
        host: host.to_string(),
        port,
    };
    // GET, HEAD, OPTIONS, TRACE, PUT, DELETE (and QUERY, which no webhook can use).
    let idempotent = method.is_idempotent();
    let mut pooled = true;
    loop {
        let (mut conn, reused, sent) = sent_on(&key, pooled, policy, request).await?;
        let read = wire::read_response(
            &mut conn.stream,
            &mut conn.buf,
            *method == Method::HEAD,
            cap,
        )
        .await;
        let mut resp = match read {
            Err(wire::WireError::NoResponse) if reused && idempotent => {
                pooled = false;
                continue;
            }
            other => other.map_err(PlainError::Request)?,
        };
        // The upstream answered before it took the whole request: what it made of the rest
        // is unknown.
        resp.reusable &= sent == wire::Sent::Whole;
        if resp.reusable {
            // A large chunked body grew the buffer: an idle connection keeps a small one.
            if conn.buf.capacity() > KEPT_BUFFER {
                conn.buf = Vec::new();
            }
            release(key, conn);
        }
        return Ok(resp);
    }
}

/// A connection that took `request`, whether it came from the pool (only when `pooled`), and
/// how much of the request went out.
async fn sent_on(
    key: &Key,
    pooled: bool,
    policy: &NetworkPolicy,
    request: &[u8],
) -> Result<(Connection, bool, wire::Sent), PlainError> {
    while let Some(mut conn) = pooled.then(|| checkout(key)).flatten() {
        match wire::write_request(&mut conn.stream, &mut conn.buf, request).await {
            Ok(sent) => return Ok((conn, true, sent)),
            // A connection the upstream closed while idle refuses the first write: then nothing
            // was sent, and the next connection may carry the request.
            Err(wire::WireError::NotSent(_)) => continue,
            Err(e) => return Err(PlainError::Request(e)),
        }
    }
    let mut conn = connect(policy, &key.host, key.port).await?;
    let sent = wire::write_request(&mut conn.stream, &mut conn.buf, request)
        .await
        .map_err(PlainError::Request)?;
    Ok((conn, false, sent))
}

/// A new connection to the first address of `host` that accepts, under `CONNECT_TIMEOUT`.
async fn connect(policy: &NetworkPolicy, host: &str, port: u16) -> Result<Connection, PlainError> {
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
    Ok(Connection {
        stream,
        buf: Vec::new(),
    })
}

/// How many idle connections this thread keeps for `sender` (tests).
#[cfg(test)]
fn idle_for(sender: u64) -> usize {
    POOL.with(|p| {
        p.borrow()
            .iter()
            .filter(|(k, _)| k.sender == sender)
            .map(|(_, v)| v.len())
            .sum()
    })
}

/// Sweep this thread's pool now (tests).
#[cfg(test)]
fn sweep_now() {
    POOL.with(|p| sweep(&mut p.borrow_mut()));
}

#[cfg(test)]
mod tests;
