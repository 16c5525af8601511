//! The listeners: the public one (HTTP/1.1 and h2c, bounded connections, header-read
//! timeout and header size limits, graceful shutdown) and the admin one (`/metrics`,
//! `/healthz`, manual runs of scheduled functions, background call status, dead-letter
//! redrive).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::{App, FunctionRunner};
use crate::body::{self, Body};
use crate::queue::{BoxFuture, QueueError, RedriveFilter};
use kpages_crds::schedule::unix_now;

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish (up to the configured grace) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let config = &app.config;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // hyper refuses buffers under 8 KiB; a larger head gets 431.
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: log and keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app_for_conn = app.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let app = app_for_conn.clone();
            // Boxed as `dyn Send` here, where lifetimes are concrete: the compiler cannot
            // prove `Send` for the nested async state through hyper's generic bounds.
            let answer: BoxFuture<'static, Response<Body>> =
                Box::pin(async move { app.handle(req, peer).await });
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let metrics = app.metrics.clone();
        metrics.connections.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            metrics.connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!(grace = ?config.shutdown_grace, "shutdown grace passed with requests still in flight");
        }
    }
    Ok(())
}

/// Serves the admin endpoints until `shutdown` completes:
/// `GET /metrics`, `GET /healthz`, `POST /functions/<name>/run[?site=<site>]` (runs a
/// function now as its schedule would and answers with the outcome), `GET /calls/<id>` (a
/// background call's status) and `POST /queue/dead-letters/redrive[?site=&function=&call=]`.
pub async fn serve_admin(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let app = app.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            let answer: BoxFuture<'static, Response<Body>> =
                Box::pin(async move { admin(&app, req).await });
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(conn);
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(app.config.shutdown_grace) => {}
    }
    Ok(())
}

async fn admin(app: &App, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let reply = |status: StatusCode, ctype: &'static str, text: String| {
        let mut r = Response::new(body::full(text));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
        r
    };
    match (req.method(), path) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            app.metrics.encode(),
        ),
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") if app.routes.is_ready() => {
            reply(StatusCode::OK, "text/plain", "ready\n".into())
        }
        (&Method::GET, "/readyz") => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "the routing table has not been built yet\n".into(),
        ),
        // The operator's CronJobs: `/.kpages/schedule/<namespace>/<site>/<function>`.
        (&Method::POST, p) if p.starts_with("/.kpages/schedule/") => {
            let json =
                |status, v: serde_json::Value| reply(status, "application/json", v.to_string());
            let rest = &p["/.kpages/schedule/".len()..];
            match rest.splitn(3, '/').collect::<Vec<_>>()[..] {
                [ns, site, name] if !ns.is_empty() && !site.is_empty() && !name.is_empty() => {
                    match run_now(app, Some(&format!("{ns}/{site}")), name).await {
                        Ok(()) => json(StatusCode::OK, serde_json::json!({"ok": true})),
                        Err((status, e)) => {
                            json(status, serde_json::json!({"ok": false, "error": e}))
                        }
                    }
                }
                _ => json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"ok": false, "error": "expected /.kpages/schedule/<namespace>/<site>/<function>"}),
                ),
            }
        }
        (&Method::POST, p) if p.starts_with("/functions/") && p.ends_with("/run") => {
            let name = &p["/functions/".len()..p.len() - "/run".len()];
            let site = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("site=")));
            let json =
                |status, v: serde_json::Value| reply(status, "application/json", v.to_string());
            match run_now(app, site, name).await {
                Ok(()) => json(StatusCode::OK, serde_json::json!({"ok": true})),
                Err((status, e)) => json(status, serde_json::json!({"ok": false, "error": e})),
            }
        }
        (&Method::GET, p) if p.starts_with("/calls/") => {
            let id = &p["/calls/".len()..];
            let (status, v) = match app.queue().status(id).await {
                Ok(Some(call)) => (
                    StatusCode::OK,
                    serde_json::to_value(&call).unwrap_or_default(),
                ),
                Ok(None) => (
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": format!("no background call {id:?} (unknown, or its status expired)")}),
                ),
                Err(e) => (
                    queue_status(&e),
                    serde_json::json!({"error": e.to_string()}),
                ),
            };
            reply(status, "application/json", v.to_string())
        }
        (&Method::POST, "/queue/dead-letters/redrive") => {
            let mut filter = RedriveFilter::default();
            for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
                let v = Some(v.into_owned()).filter(|v| !v.is_empty());
                match &*k {
                    "site" => filter.site = v,
                    "function" => filter.function = v,
                    "call" => filter.call_id = v,
                    _ => {}
                }
            }
            let (status, v) = match app.queue().redrive(filter).await {
                Ok(n) => (StatusCode::OK, serde_json::json!({"redriven": n})),
                Err(e) => (
                    queue_status(&e),
                    serde_json::json!({"error": e.to_string()}),
                ),
            };
            reply(status, "application/json", v.to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn queue_status(e: &QueueError) -> StatusCode {
    match e {
        QueueError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        QueueError::Rejected(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Runs a function of a site's active deploy now, as a scheduled run.
async fn run_now(app: &App, site: Option<&str>, name: &str) -> Result<(), (StatusCode, String)> {
    let table = app.routes.load();
    let sites = table.sites();
    let site = match site {
        Some(s) => sites.iter().find(|x| x.name == s),
        None if sites.len() == 1 => sites.first(),
        None => {
            return Err((
                StatusCode::BAD_REQUEST,
                "several sites are served; name one with ?site=".into(),
            ));
        }
    }
    .ok_or((StatusCode::NOT_FOUND, "no such site".to_string()))?;
    let function = site.deploy.routes.function(name).ok_or((
        StatusCode::NOT_FOUND,
        format!("site {} has no function {name:?}", site.name),
    ))?;
    let next = function
        .schedule
        .as_deref()
        .and_then(|s| s.parse::<kpages_crds::schedule::Schedule>().ok())
        .and_then(|s| s.next_after(unix_now()));
    let job = FunctionRunner::schedule_job(&site.name, &site.deploy, name, next);
    app.runner()
        .run_job(job)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))
}

/// Binds a listener, with a message that names the address when it is taken.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}{}", if source.kind() == std::io::ErrorKind::AddrInUse { " (is another server using this port? pick another with --port)" } else { "" })]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}
