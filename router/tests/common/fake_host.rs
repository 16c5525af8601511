//! A function host stand-in that records every call and answers by function name:
//! `ok` 200, `gated` 200 once the gate is open, `fail` 500 while failing is on (then 200),
//! `reject` 400. Tests wait on its record, never on time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sha2::Digest as _;
use tokio::sync::watch;

/// One call as the host saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub call_id: String,
    pub function: String,
    pub invocation: String,
    pub body_len: usize,
    pub body_sha256: String,
    /// The host answered (200/4xx/5xx) rather than still holding the call.
    pub answered: bool,
}

pub struct FakeHost {
    pub addr: SocketAddr,
    seen: watch::Sender<Vec<Seen>>,
    gate: watch::Sender<bool>,
    failing: Arc<AtomicBool>,
}

impl FakeHost {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = watch::Sender::new(Vec::<Seen>::new());
        let gate = watch::Sender::new(false);
        let failing = Arc::new(AtomicBool::new(true));
        let (s, g, f) = (seen.clone(), gate.clone(), failing.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, g, f) = (s.clone(), g.clone(), f.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (s, g, f) = (s.clone(), g.clone(), f.clone());
                            async move { Ok::<_, Infallible>(answer(req, &s, &g, &f).await) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            gate,
            failing,
        }
    }

    /// Lets every held and future `gated` call answer.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// `fail` answers 200 from now on.
    pub fn stop_failing(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    /// Calls (started or answered) of one call id.
    pub fn runs(&self, call_id: &str) -> usize {
        self.seen
            .borrow()
            .iter()
            .filter(|s| s.call_id == call_id)
            .count()
    }

    /// Waits until `pred` holds for the record, or panics after `within`.
    pub async fn wait_for(&self, within: Duration, what: &str, pred: impl Fn(&[Seen]) -> bool) {
        let mut rx = self.seen.subscribe();
        if tokio::time::timeout(within, rx.wait_for(|v| pred(v)))
            .await
            .is_err()
        {
            panic!(
                "{what}: not seen within {within:?}; host saw {:#?}",
                self.seen()
            );
        }
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    seen: &watch::Sender<Vec<Seen>>,
    gate: &watch::Sender<bool>,
    failing: &AtomicBool,
) -> Response<Full<Bytes>> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let call_id = header("x-kpages-request-id");
    let function = header("x-kpages-function");
    let invocation = header("x-kpages-invocation");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let index = {
        let mut i = 0;
        seen.send_modify(|v| {
            i = v.len();
            v.push(Seen {
                call_id,
                function: function.clone(),
                invocation,
                body_len: body.len(),
                body_sha256: hex::encode(sha2::Sha256::digest(&body)),
                answered: false,
            });
        });
        i
    };
    let status = match function.as_str() {
        "gated" => {
            let _ = gate.subscribe().wait_for(|open| *open).await;
            StatusCode::OK
        }
        "fail" if failing.load(Ordering::SeqCst) => StatusCode::INTERNAL_SERVER_ERROR,
        "reject" => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    seen.send_modify(|v| v[index].answered = true);
    let mut resp = Response::new(Full::new(Bytes::from(format!("{function}: {status}\n"))));
    *resp.status_mut() = status;
    resp
}
