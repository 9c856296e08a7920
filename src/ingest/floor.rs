//! Request bodies held to a floor rate, so that a client trickling a body in cannot hold a
//! connection (and its memory) for as long as it likes.
//!
//! In: a request and `limits` (`body_timeout`, `body_min_rate`). Out: the same request whose
//! body fails with [`TooSlow`] once it falls behind. Guarantees: a body of N bytes has
//! `body_timeout + N / body_min_rate` in all; a body that keeps up is passed on unchanged,
//! frame by frame; the check costs a timer only while the body is waiting for data.

/// A request body must keep coming: after `limits.body_timeout`, at `limits.body_min_rate` at
/// least (a body of N bytes has `body_timeout + N / body_min_rate` in all). One that trickles
/// slower fails as the handler reads it (`408 body_timeout`), and its connection is closed.
pub async fn body_floor(
    axum::extract::State(limits): axum::extract::State<crate::config::LimitsConfig>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let floor = Floor {
        inner: body,
        started: tokio::time::Instant::now(),
        received: 0,
        grace: limits.body_timeout,
        rate: limits.body_min_rate.max(1),
        timer: None,
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::new(floor),
    ))
    .await
}

/// A body held to a floor rate (see [`body_floor`]).
struct Floor {
    inner: axum::body::Body,
    started: tokio::time::Instant,
    received: u64,
    grace: std::time::Duration,
    rate: u64,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

/// A body that came slower than `limits.body_min_rate`.
#[derive(Debug, thiserror::Error)]
#[error("the body arrived slower than limits.body_min_rate ({rate} bytes a second after limits.body_timeout)")]
pub struct TooSlow {
    rate: u64,
}

impl Floor {
    /// When the body must have arrived by, given what came so far.
    fn deadline(&self) -> tokio::time::Instant {
        self.started
            + self.grace
            + std::time::Duration::from_secs_f64(self.received as f64 / self.rate as f64)
    }
}

impl http_body::Body for Floor {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                this.timer = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let deadline = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(axum::Error::new(TooSlow { rate: this.rate }))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn floor(body: axum::body::Body) -> Floor {
        Floor {
            inner: body,
            started: tokio::time::Instant::now(),
            received: 0,
            grace: std::time::Duration::from_secs(10),
            rate: 1024,
            timer: None,
        }
    }

    /// A body of `chunks` sent one every `every`, then left open (the client stops).
    fn trickle(chunks: usize, size: usize, every: std::time::Duration) -> axum::body::Body {
        let stream = futures_util::stream::unfold(0usize, move |n| async move {
            tokio::time::sleep(every).await;
            if n == chunks {
                std::future::pending::<()>().await;
            }
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; size])),
                n + 1,
            ))
        });
        axum::body::Body::from_stream(stream)
    }

    #[test]
    fn the_time_allowed_grows_with_what_came() {
        let mut f = floor(axum::body::Body::empty());
        let start = f.started;
        assert_eq!(f.deadline(), start + std::time::Duration::from_secs(10));
        f.received = 4096;
        assert_eq!(f.deadline(), start + std::time::Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_up_passes_and_one_that_stalls_fails_in_time() {
        // 2 KiB a second for 5 s, then done: well above the floor.
        let body = axum::body::Body::from_stream(futures_util::stream::iter(
            (0..5).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 2048]))),
        ));
        let got = floor(body).collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), 5 * 2048);

        // 1 KiB, then nothing: allowed 10 s + 1 s, failed then.
        let started = tokio::time::Instant::now();
        let err = floor(trickle(1, 1024, std::time::Duration::from_millis(100)))
            .collect()
            .await
            .expect_err("a stalled body passed");
        assert!(
            err.to_string().contains("slower than limits.body_min_rate"),
            "{err}"
        );
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_secs(11) && took < std::time::Duration::from_secs(12),
            "{took:?}"
        );

        // 100 bytes a second: under the floor once the grace is spent.
        let err = floor(trickle(1_000, 100, std::time::Duration::from_secs(1)))
            .collect()
            .await
            .expect_err("a trickle passed");
        assert!(err.to_string().contains("slower"), "{err}");
    }
}
