//! The admin listener: metrics, call status, dead-letter redrive and running a function now.
//! It is the platform's, not a tenant's: it listens apart from the public listener and is
//! meant to be reachable from the platform's own namespace only.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::body::{self, Body};
use crate::http::pipeline::App;
use crate::jobs::queue::{BoxFuture, QueueError, RedriveFilter};
use crate::jobs::runner::FunctionRunner;
use kpages_crds::schedule::unix_now;

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
        () = tokio::time::sleep(app.config().shutdown_grace) => {}
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
        (&Method::GET, "/readyz") if app.routes().is_ready() => {
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
    let table = app.routes().load();
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
