//! HTTP served by one single-threaded runtime per core. One acceptor hands each new connection
//! to the next serving thread, which then runs every request of that connection start to finish:
//! parsing, the handler, the outbound call (on that thread's own client pool) and the answer.
//! On a multi-threaded runtime a request woke several threads on its way through (the worker
//! that read it, the one that polled the upstream connection, the ones stealing work), and on
//! two cores those wake-ups cost more CPU than the call itself.

mod admission;
pub mod body_deadline;
mod closing;
mod coarse_timer;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::front::Front;
use crate::listener::EnvelopeIo;
pub use admission::Admission;
use closing::{Closing, Watched};

/// How the serving threads treat their clients' connections.
#[derive(Clone)]
pub struct Settings {
    /// Serving threads.
    pub threads: usize,
    /// How long a thread keeps polling after a request (`busy_poll`).
    pub busy_poll: Duration,
    /// How long a client may take to send a request's head, counted from when the gateway
    /// starts waiting for it: on a kept-alive connection, from the previous answer, so this
    /// is also how long an idle connection stays open.
    pub header_timeout: Duration,
    /// The cap on open client connections.
    pub admission: Arc<Admission>,
}

/// Serve the connections handed to this thread until `stop` is cancelled or the acceptor is
/// gone, then let each finish the request it has in flight (hyper's `graceful_shutdown`) and
/// return once all have ended.
///
/// HTTP/1.1 only, as before (`axum::serve` without its `http2` feature): hyper's HTTP/1 server
/// directly, not `hyper_util`'s auto builder, which read every connection through a buffer that
/// first looked for an HTTP/2 preface.
///
/// A client that does not send a whole request head within `header_timeout` of the gateway
/// starting to wait for it is disconnected (hyper's own timeout, on this thread's
/// `coarse_timer`), so a connection trickling header bytes, or left idle, cannot stay open;
/// the body has its own deadline (`body_deadline`).
async fn serve_handed(
    mut handed: mpsc::UnboundedReceiver<(std::net::TcpStream, admission::Admitted)>,
    front: Front,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(coarse_timer::CoarseTimer)
        .header_read_timeout(header_timeout);
    let closing = Arc::new(Closing::default());
    loop {
        let (std, admitted) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            c = handed.recv() => match c {
                Some(std) => std,
                None => break,
            },
        };
        let io = match TcpStream::from_std(std) {
            Ok(io) => hyper_util::rt::TokioIo::new(EnvelopeIo::new(io)),
            Err(e) => {
                tracing::warn!(error = %e, "could not take over a connection");
                continue;
            }
        };
        let conn = http.serve_connection(io, front.clone());
        let watched = Watched::new(conn, closing.clone());
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(admitted);
        });
    }
    closing.close();
    closing.all_ended().await;
}

/// How many serving threads `configured` asks for (0: one per core).
pub fn thread_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Serve `front` on `settings.threads` serving threads until `stop` is cancelled (or this
/// future is dropped), then let each thread finish the requests it has in flight. Each thread
/// keeps polling for `settings.busy_poll` after a request before it sleeps (`busy_poll`
/// module). While `settings.admission`'s cap of open connections is reached, no connection is
/// accepted.
pub async fn serve(
    listener: TcpListener,
    front: Front,
    settings: Settings,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let Settings {
        threads,
        busy_poll,
        header_timeout,
        admission,
    } = settings;
    // Dropping this future (a test's runtime going away) stops the threads too.
    let _stop_on_drop = stop.clone().drop_guard();
    let mut senders = Vec::with_capacity(threads);
    let mut finished = Vec::with_capacity(threads);
    for i in 0..threads.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let front = front.clone();
        let stop = stop.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("toolgate-http-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    if !busy_poll.is_zero() {
                        tokio::spawn(crate::busy_poll::poll_while_busy(busy_poll));
                    }
                    tokio::spawn(async {
                        let mut every = tokio::time::interval(crate::allocator::COLLECT_EVERY);
                        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            every.tick().await;
                            crate::allocator::return_what_is_due();
                            crate::call::plain::sweep_if_due();
                            coarse_timer::sweep();
                        }
                    });
                    serve_handed(rx, front, header_timeout, stop).await;
                });
                // Its tasks (connections, chores) hold the gateway's state, and with it the
                // store: gone before this thread says it is done, so that a gateway that has
                // stopped holds its data dir no more.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        senders.push(tx);
        finished.push(done_rx);
    }
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = async {
                admission.room().await;
                listener.accept().await
            } => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: wait a moment rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // A request and its answer are small writes that must not wait for an ACK.
        let _ = stream.set_nodelay(true);
        let admitted = admission.admit();
        match stream.into_std() {
            Ok(std) => {
                if senders[next % senders.len()].send((std, admitted)).is_err() {
                    tracing::error!("a serving thread has stopped");
                    stop.cancel();
                }
                next = next.wrapping_add(1);
            }
            Err(e) => tracing::warn!(error = %e, "could not hand over a connection"),
        }
    }
    drop(senders);
    let mut result = Ok(());
    for done in finished {
        if done.await.is_err() {
            result = Err(std::io::Error::other("a serving thread panicked"));
        }
    }
    result
}
