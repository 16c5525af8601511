//! Response and request bodies: one boxed type for every answer, a request body that stops
//! at the size limit, and a response body cut off at the wall-time deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response (and of requests sent upstream).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body whose errors convert to [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Boxes a body whose errors already are [`BoxError`].
pub fn boxed_dyn<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes, Error = BoxError> + Send + 'static,
{
    UnsyncBoxBody::new(body)
}

/// Boxes a hyper body (client request or upstream response).
pub fn incoming(body: hyper::body::Incoming) -> Body {
    UnsyncBoxBody::new(body.map_err(hyper_error))
}

fn hyper_error(e: hyper::Error) -> BoxError {
    Box::new(e)
}

/// The request body grew past the limit.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than {0} bytes")]
pub struct TooLarge(pub u64);

/// A request body that errors once more than `limit` bytes have passed
/// ([`http_body_util::Limited`]), and raises a flag the proxy reads to answer 413 rather than
/// 502: the error itself reaches the proxy wrapped by the HTTP client, which loses its type.
pub struct Limited {
    inner: http_body_util::Limited<Body>,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl Limited {
    /// Wraps `inner`; `exceeded` is set when the limit is passed.
    pub fn new(inner: Body, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner: http_body_util::Limited::new(
                inner,
                usize::try_from(limit).unwrap_or(usize::MAX),
            ),
            limit,
            exceeded,
        }
    }
}

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => {
                this.exceeded.store(true, Ordering::Release);
                Poll::Ready(Some(Err(Box::new(TooLarge(this.limit)))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The function ran past its wall time while streaming.
#[derive(Debug, thiserror::Error)]
#[error("the function did not finish its response within the time limit")]
pub struct DeadlinePassed;

/// A response body that ends with an error (the connection is cut) at a deadline.
pub struct Deadline {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
}

impl Deadline {
    /// Wraps `inner` until `at`.
    pub fn new(inner: Body, at: Instant) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(at)),
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(DeadlinePassed)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A JSON error answer `{"error": message, "requestId": id}` with `status`.
pub fn json_status(status: StatusCode, message: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({"error": message, "requestId": request_id}).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The response, or a 500 saying why it could not be built.
pub fn or_500(r: Result<Response<Body>, http::Error>) -> Response<Body> {
    r.unwrap_or_else(|e| {
        json_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("building the response: {e}"),
            "",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limited_body_errors_past_the_limit_and_says_so() {
        let flag = Arc::new(AtomicBool::new(false));
        let ok = Limited::new(full("12345"), 5, flag.clone());
        assert_eq!(ok.collect().await.unwrap().to_bytes(), "12345");
        assert!(!flag.load(Ordering::Acquire));
        let over = Limited::new(full("123456"), 5, flag.clone());
        assert!(over.collect().await.is_err());
        assert!(flag.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_cuts_a_stalled_body() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stalled = http_body_util::StreamBody::new(tokio_stream_from(rx));
        let body = Deadline::new(
            boxed(stalled),
            Instant::now() + std::time::Duration::from_secs(1),
        );
        let err = body.collect().await.unwrap_err();
        assert!(err.to_string().contains("time limit"), "{err}");
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    ) -> impl futures::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + Sync {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
