//! How a failed request becomes an HTTP answer: [`RouteError::status`] is the one mapping
//! from what went wrong (no site, a bad path, an upstream, the queue) to a status.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{Body, json_status};
use crate::jobs::queue::QueueError;
use crate::serve::functions::CallError;
use crate::serve::proxy::ProxyError;
use crate::serve::static_files::StaticError;
use kpages_routing::path::PathError;

/// Why a request failed; [`RouteError::status`] is the one mapping to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No site answers this host.
    #[error("no site is served at host {0:?}")]
    NoSite(String),
    /// The path cannot be normalised.
    #[error("bad request path: {0}")]
    BadPath(#[from] PathError),
    /// A function or proxy call failed.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// Reading a static file failed.
    #[error(transparent)]
    Static(#[from] StaticError),
    /// The background queue refused the job.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<CallError> for RouteError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Proxy(e) => Self::Proxy(e),
            CallError::Queue(e) => Self::Queue(e),
        }
    }
}

impl RouteError {
    /// The status a client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoSite(_) => StatusCode::NOT_FOUND,
            Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::Proxy(e) => match e {
                ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                ProxyError::Downstream(_) => StatusCode::BAD_REQUEST,
                ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                ProxyError::NoUpstream { .. } => StatusCode::SERVICE_UNAVAILABLE,
                ProxyError::Unreachable { .. } | ProxyError::BadTarget(_) => {
                    StatusCode::BAD_GATEWAY
                }
                ProxyError::Loop { .. } => StatusCode::LOOP_DETECTED,
                ProxyError::OwnListener { .. } => StatusCode::FORBIDDEN,
            },
            Self::Static(_) => StatusCode::BAD_GATEWAY,
            Self::Queue(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Queue(QueueError::Unsupported(_)) => StatusCode::NOT_IMPLEMENTED,
            Self::Queue(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Seconds a client should wait before trying again, for failures that pass by themselves.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Self::Queue(e) if e.is_transient() => Some(QUEUE_RETRY_AFTER_SECONDS),
            // No function pod came up within the cold-start limit: one is on its way.
            Self::Proxy(ProxyError::NoUpstream { .. }) => Some(COLD_START_RETRY_AFTER_SECONDS),
            _ => None,
        }
    }
}

/// `Retry-After` on a 503 when no function pod was ready in time.
const COLD_START_RETRY_AFTER_SECONDS: u32 = 5;

/// `Retry-After` on a 503 from the background queue: long enough for a NATS reconnect.
const QUEUE_RETRY_AFTER_SECONDS: u32 = 5;

/// The one place errors become responses: a JSON body naming the request id.
pub(crate) fn error_response(err: &RouteError, request_id: &str) -> Response<Body> {
    let status = err.status();
    if status.is_server_error() {
        tracing::warn!(error = %err, status = status.as_u16(), "request failed");
    }
    let mut resp = json_status(status, &err.to_string(), request_id);
    if let Some(secs) = err.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
