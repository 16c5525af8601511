//! The request pipeline. Each step answers early or hands on; [`App::handle`] reads top to
//! bottom, and every error becomes an HTTP status in one place ([`RouteError::status`]).
//!
//! ```text
//!  request ─► request id, span ─► host → site → deploy ─► normalise path ─► facts (client IP,
//!  geo, languages, cookies, roles) ─► resolve (pure) ─► redirect | static | function (sync
//!  proxy or background enqueue) | proxy rule | status ─► header rules, x-kpages-request-id,
//!  metrics, access log
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use kpages_crds::host::header as control;
use kpages_crds::schedule::unix_now;
use kpages_routing::path;
use kpages_routing::resolve::Decision;
use kpages_routing::rules::{self, RequestFacts};
use kpages_store::BlobStore;
use tracing::Instrument;

use crate::body::{self, Body};
use crate::body::{json_status, or_500};
use crate::http::client;
use crate::http::error::{RouteError, error_response};
use crate::jobs::jetstream::{self, JetStreamError, QueueArgs};
use crate::jobs::queue::{InProcessQueue, Queue, Runner};
use crate::jobs::runner::FunctionRunner;
use crate::observe::geo::GeoLookup;
use crate::observe::metrics::{Metrics, RouteKind};
use crate::serve::Backends;
use crate::serve::functions::{Caller, FunctionTarget};
use crate::serve::proxy::{Upstreams, header_str};
use crate::serve::static_files::{self, StaticFiles};
use crate::table::{RouteTarget, Routes};

pub use crate::config::Config;

/// Everything the pipeline needs. Shared by every connection.
pub struct App {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    pub(crate) backends: Backends,
    pub(crate) runner: Arc<FunctionRunner>,
    pub(crate) geo: GeoLookup,
}

impl App {
    /// Builds the app and starts the in-process queue's workers (needs a Tokio runtime).
    pub fn new(config: Config, routes: Arc<Routes>, store: BlobStore, geo: GeoLookup) -> Arc<Self> {
        let in_process = config.queue.clone();
        Self::with_queue(config, routes, store, geo, |runner, metrics| {
            InProcessQueue::start(in_process, runner, metrics)
        })
    }

    /// Builds the app with the queue `start_queue` returns; it gets the runner its workers
    /// call and the app's metrics (e.g. [`crate::jobs::jetstream::Connected::start`]).
    pub fn with_queue(
        config: Config,
        routes: Arc<Routes>,
        store: BlobStore,
        geo: GeoLookup,
        start_queue: impl FnOnce(Arc<dyn Runner>, Arc<Metrics>) -> Arc<dyn Queue>,
    ) -> Arc<Self> {
        let metrics = Arc::new(Metrics::new());
        let upstreams = Upstreams::new();
        let runner = Arc::new(FunctionRunner {
            routes: routes.clone(),
            upstreams: upstreams.clone(),
            config: config.clone(),
        });
        let queue = start_queue(runner.clone(), metrics.clone());
        let statics = StaticFiles::new(
            store,
            config.cache_bytes,
            config.max_cached_file,
            metrics.clone(),
        );
        Arc::new(Self {
            backends: Backends {
                config,
                routes,
                upstreams,
                queue,
                statics,
            },
            metrics,
            runner,
            geo,
        })
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.backends.config
    }

    /// The routing table.
    pub fn routes(&self) -> &Arc<Routes> {
        &self.backends.routes
    }

    /// Runs functions outside a client request (scheduler, manual triggers).
    pub fn runner(&self) -> Arc<FunctionRunner> {
        self.runner.clone()
    }

    /// The background queue (status and redrive on the admin port).
    pub fn queue(&self) -> &dyn Queue {
        &*self.backends.queue
    }

    /// Answers one request.
    pub async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let started = Instant::now();
        let request_id = client::request_id();
        let method = req.method().clone();
        let raw_path = req.uri().path().to_string();
        let span =
            tracing::info_span!("request", request_id = %request_id, %method, path = %raw_path);
        self.metrics.in_flight.inc();
        let traceparent =
            crate::observe::trace::link(&span, header_str(req.headers(), "traceparent"));
        let req = req.map(body::incoming);
        let (site, kind, result) = self
            .route(req, peer, &request_id, &traceparent)
            .instrument(span.clone())
            .await;
        let mut resp = result.unwrap_or_else(|e| error_response(&e, &request_id));
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut()
                .insert(HeaderName::from_static(control::REQUEST_ID), v);
        }
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics
            .request(&site, kind, status, elapsed.as_secs_f64());
        self.metrics.in_flight.dec();
        span.in_scope(|| {
            tracing::info!(
                site = %site,
                kind = ?kind,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        });
        resp
    }

    async fn route(
        &self,
        req: Request<Body>,
        peer: SocketAddr,
        request_id: &str,
        traceparent: &str,
    ) -> (String, RouteKind, Result<Response<Body>, RouteError>) {
        let table = self.routes().load();
        let host = request_host(&req);
        let Some(site) = table.site_for_host(&host) else {
            return ("".into(), RouteKind::Other, Err(RouteError::NoSite(host)));
        };
        let site_name = site.name.clone();
        let deploy = site.deploy.clone();
        let site_routes = site.routes.clone();
        let answer = |kind, result| (site_name.clone(), kind, result);
        let path = match path::normalize(req.uri().path()) {
            Ok(p) => p,
            Err(e) => return answer(RouteKind::Other, Err(e.into())),
        };
        let client_ip = client::client_ip(
            peer.ip(),
            header_str(req.headers(), "x-forwarded-for"),
            &self.config().trusted_proxies,
        );
        let geo = self.geo.lookup(client_ip);
        let facts = self.facts(&req, host, path, geo.as_ref());
        let authorization = header_str(req.headers(), "authorization");
        let decision = deploy.routes.resolve(&facts, authorization, &site_routes);
        let call = Caller {
            site: &site_name,
            request_id,
            traceparent,
            client_ip,
            geo: geo.as_ref(),
            host: &facts.host,
            peer_trusted: self.peer_trusted(peer.ip()),
        };
        match decision {
            Decision::Redirect { status, location } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
                let resp = Response::builder()
                    .status(status)
                    .header(header::LOCATION, location)
                    .body(body::empty());
                answer(RouteKind::Redirect, Ok(or_500(resp)))
            }
            Decision::Unauthorized => {
                let resp = Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(
                        header::WWW_AUTHENTICATE,
                        "Basic realm=\"kpages\", charset=\"UTF-8\"",
                    )
                    .body(body::full("authentication required\n"));
                answer(RouteKind::Other, Ok(or_500(resp)))
            }
            Decision::BadRequest(msg) => answer(
                RouteKind::Other,
                Ok(json_status(StatusCode::BAD_REQUEST, &msg, request_id)),
            ),
            Decision::Empty { status } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
                let mut resp = Response::new(body::full(
                    status.canonical_reason().unwrap_or("").to_string() + "\n",
                ));
                *resp.status_mut() = status;
                static_files::decorate(&deploy, &facts, resp.headers_mut());
                answer(RouteKind::Other, Ok(resp))
            }
            Decision::Static { file, status } => {
                let result = self
                    .backends
                    .serve_static(&deploy, &facts, req.method(), req.headers(), &file, status)
                    .await
                    .map_err(RouteError::from);
                answer(RouteKind::Static, result)
            }
            Decision::Function {
                name,
                params,
                invocation,
            } => {
                let target = FunctionTarget {
                    deploy: &deploy,
                    name: &name,
                    params,
                    invocation,
                    route: None,
                };
                self.call(req, &call, target).await
            }
            Decision::Proxy { url, headers } => answer(
                RouteKind::Proxy,
                self.backends
                    .proxy_rule(req, &url, &headers, client_ip)
                    .await
                    .map_err(RouteError::from),
            ),
            Decision::SiteRoute { index, params } => {
                let Some(route) = site_routes.get(index) else {
                    return answer(RouteKind::Other, Err(RouteError::NoSite(facts.host)));
                };
                match &route.target {
                    RouteTarget::Service { authority, name } => answer(
                        RouteKind::Proxy,
                        self.backends
                            .proxy_service(req, authority, name, &facts, client_ip)
                            .await
                            .map_err(RouteError::from),
                    ),
                    RouteTarget::Function {
                        deploy: target,
                        function,
                        invocation,
                    } => {
                        let target = FunctionTarget {
                            deploy: target,
                            name: function,
                            params,
                            invocation: *invocation,
                            route: Some(route.name.as_str()),
                        };
                        self.call(req, &call, target).await
                    }
                }
            }
        }
    }

    fn peer_trusted(&self, ip: IpAddr) -> bool {
        self.config()
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&ip))
    }

    fn facts(
        &self,
        req: &Request<Body>,
        host: String,
        path: String,
        geo: Option<&crate::observe::geo::Geo>,
    ) -> RequestFacts {
        let headers = req.headers();
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ");
        let roles = match (
            &self.config().jwt_secret,
            rules::cookie_value(&cookie, "nf_jwt"),
        ) {
            (Some(secret), Some(token)) => client::jwt_roles(token, secret, unix_now()),
            _ => vec![],
        };
        RequestFacts {
            method: req.method().as_str().to_string(),
            host,
            path,
            query: req.uri().query().unwrap_or("").to_string(),
            country: geo.and_then(|g| g.country_code()).map(str::to_string),
            languages: header_str(headers, "accept-language")
                .map(rules::accept_languages)
                .unwrap_or_default(),
            cookies: rules::cookie_names(&cookie),
            roles,
        }
    }

    /// A function call through the backends, its failure as a [`RouteError`].
    async fn call(
        &self,
        req: Request<Body>,
        call: &Caller<'_>,
        target: FunctionTarget<'_>,
    ) -> (String, RouteKind, Result<Response<Body>, RouteError>) {
        let (site, kind, result) = self.backends.invoke(req, call, target).await;
        (site, kind, result.map_err(RouteError::from))
    }
}

/// The app with the queue `args` choose: JetStream when a NATS URL is set (connecting and
/// creating streams, consumer and bucket first), else the in-process queue.
pub async fn build_app(
    args: &QueueArgs,
    config: Config,
    routes: Arc<Routes>,
    store: BlobStore,
    geo: GeoLookup,
) -> Result<Arc<App>, JetStreamError> {
    let Some(js) = args.config() else {
        return Ok(App::new(config, routes, store, geo));
    };
    let connected = jetstream::connect(js).await?;
    let blobs = store.clone();
    Ok(App::with_queue(
        config,
        routes,
        store,
        geo,
        |runner, metrics| connected.start(runner, metrics, blobs),
    ))
}

/// The host a request is for: `Host`, or the authority of an HTTP/2 or absolute-form target.
fn request_host<B>(req: &Request<B>) -> String {
    header_str(req.headers(), "host")
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}
