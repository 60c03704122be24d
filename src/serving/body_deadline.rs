//! A request body that must arrive within the client timeout of when the gateway first waited
//! for it. hyper's header timeout (`serving::serve_handed`) covers the head; without this, a
//! client could send a head saying a megabyte follows and then trickle it a byte at a time,
//! holding its connection (and its place under the connection cap) as long as it liked.
//!
//! The timer starts only when the body is not there yet: a body that came with its head, as
//! nearly every request's does, is read without one.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// The error a body read gives once the client took too long to send it.
#[derive(Debug, thiserror::Error)]
#[error("the client did not send the request body in time")]
pub struct ClientTooSlow;

impl ClientTooSlow {
    /// Whether `err` or any error in its chain of sources is a `ClientTooSlow`: a body read
    /// through axum's extractors wraps it.
    pub fn in_chain(err: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(err);
        while let Some(e) = next {
            if e.is::<ClientTooSlow>() {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// `B` with a deadline on its arrival.
pub struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    /// Started the first time the body was not there yet.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: bool,
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must have arrived `limit` after the first time a read found it missing.
    pub fn new(inner: B, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            limit,
            timer: None,
            timed_out: false,
        }
    }
}

/// Why a read under a deadline gave no frame.
#[derive(Debug)]
pub enum Failed<E> {
    /// The body's own error (the connection broke).
    Body(E),
    /// The deadline passed.
    TooSlow,
}

/// A frame of `B`, the end of it (`None`), or why neither came.
pub type FrameInTime<B> = Option<Result<Frame<<B as Body>::Data>, Failed<<B as Body>::Error>>>;

/// One read of `body` under a deadline: its frame as it comes, or `Failed::TooSlow` once
/// `limit` has passed since the first read that found it missing (the timer, started then,
/// kept in `timer`). The hot path's reads (`api::front`) and `DeadlineBody` both read through it.
pub fn poll_in_time<B: Body + Unpin>(
    body: &mut B,
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
    cx: &mut Context<'_>,
) -> Poll<FrameInTime<B>> {
    match Pin::new(body).poll_frame(cx) {
        Poll::Ready(frame) => Poll::Ready(frame.map(|r| r.map_err(Failed::Body))),
        Poll::Pending => {
            let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Failed::TooSlow))),
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Some(Err(ClientTooSlow.into())));
        }
        match poll_in_time(&mut this.inner, &mut this.timer, this.limit, cx) {
            Poll::Ready(Some(Err(Failed::TooSlow))) => {
                this.timed_out = true;
                Poll::Ready(Some(Err(ClientTooSlow.into())))
            }
            Poll::Ready(Some(Err(Failed::Body(e)))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.timed_out && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body of `pieces`, each after `gap`.
    fn trickle(
        pieces: usize,
        gap: Duration,
    ) -> impl Body<Data = Bytes, Error = Infallible> + Unpin {
        let stream = futures::stream::iter(0..pieces).then(move |i| async move {
            tokio::time::sleep(gap).await;
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'a' + i as u8])))
        });
        http_body_util::StreamBody::new(Box::pin(stream))
    }

    use futures::StreamExt;
    use std::convert::Infallible;

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let body = DeadlineBody::new(
            trickle(3, Duration::from_millis(20)),
            Duration::from_secs(2),
        );
        let bytes = body.collect().await.expect("read").to_bytes();
        assert_eq!(&bytes[..], b"abc");
    }

    #[tokio::test]
    async fn a_body_still_coming_at_the_deadline_is_refused() {
        let body = DeadlineBody::new(
            trickle(50, Duration::from_millis(40)),
            Duration::from_millis(300),
        );
        let started = std::time::Instant::now();
        let err = body.collect().await.expect_err("read past the deadline");
        assert!(ClientTooSlow::in_chain(err.as_ref()), "{err}");
        let took = started.elapsed();
        // The deadline counts from the first wait, not from each piece (50 × 40 ms = 2 s).
        assert!(took < Duration::from_millis(1500), "{took:?}");
        assert!(took >= Duration::from_millis(280), "{took:?}");
    }

    #[tokio::test]
    async fn a_body_already_there_starts_no_timer() {
        let mut body = DeadlineBody::new(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            Duration::from_millis(1),
        );
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"{}"[..]));
        assert!(body.timer.is_none());
        assert!(body.frame().await.is_none());
    }
}
