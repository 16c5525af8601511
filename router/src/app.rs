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
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use ipnet::IpNet;
use kpages_crds::limits;
use kpages_crds::manifest::{Function, InvocationKind};
use kpages_store::BlobStore;
use tracing::Instrument;

use crate::body::{self, Body};
use crate::client;
use crate::geo::GeoLookup;
use crate::metrics::{Metrics, RouteKind};
use crate::proxy::{self, Call, ProxyError, Upstreams};
use crate::queue::{
    self, BoxFuture, InProcessQueue, Job, Queue, QueueConfig, QueueError, RunError, Runner,
};
use crate::static_files::{self, StaticError, StaticFiles, StaticRequest};
use crate::table::RouteTarget;
use crate::table::{Deploy, Routes};
use kpages_crds::schedule::unix_now;
use kpages_routing::path::{self, PathError};
use kpages_routing::pattern::Params;
use kpages_routing::resolve::Decision;
use kpages_routing::rules::{self, RequestFacts};

/// Router settings. Limits here are defaults; a deploy's manifest may set its own.
#[derive(Debug, Clone)]
pub struct Config {
    /// Wall time of a synchronous function call.
    pub sync_timeout: Duration,
    /// Wall time of a background or scheduled run.
    pub background_timeout: Duration,
    /// Largest function request body.
    pub body_limit: u64,
    /// Time a client has to send request headers (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Client connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Peers whose `X-Forwarded-For`/`-Proto`/`-Host` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Bytes of static files kept in memory.
    pub cache_bytes: u64,
    /// Largest file kept in the cache (and compressed); larger ones stream.
    pub max_cached_file: u64,
    /// The in-process background queue.
    pub queue: QueueConfig,
    /// Secret that signs `nf_jwt` tokens, for `Role` conditions; none: no roles.
    pub jwt_secret: Option<Vec<u8>>,
    /// How long a function call waits for a deploy scaled to zero to get a ready pod before
    /// the router answers 503 with `Retry-After` (cluster mode; `kpages dev` never waits).
    pub cold_start_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sync_timeout: Duration::from_secs(limits::DEFAULT_SYNC_TIMEOUT_SECONDS.into()),
            background_timeout: Duration::from_secs(
                limits::DEFAULT_BACKGROUND_TIMEOUT_SECONDS.into(),
            ),
            body_limit: limits::DEFAULT_BODY_LIMIT_BYTES,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(30),
            trusted_proxies: vec![],
            cache_bytes: 256 * 1024 * 1024,
            max_cached_file: 8 * 1024 * 1024,
            queue: QueueConfig::default(),
            jwt_secret: None,
            cold_start_timeout: Duration::from_secs(60),
        }
    }
}

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

/// Everything the pipeline needs. Shared by every connection.
pub struct App {
    /// Settings.
    pub config: Config,
    /// The routing table.
    pub routes: Arc<Routes>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    statics: StaticFiles,
    upstreams: Upstreams,
    queue: Arc<dyn Queue>,
    runner: Arc<FunctionRunner>,
    geo: GeoLookup,
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
    /// call and the app's metrics (e.g. [`crate::jetstream::Connected::start`]).
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
            config,
            routes,
            metrics,
            statics,
            upstreams,
            queue,
            runner,
            geo,
        })
    }

    /// Runs functions outside a client request (scheduler, manual triggers).
    pub fn runner(&self) -> Arc<FunctionRunner> {
        self.runner.clone()
    }

    /// The background queue (status and redrive on the admin port).
    pub fn queue(&self) -> &dyn Queue {
        &*self.queue
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
        let traceparent = crate::trace::link(&span, header_str(req.headers(), "traceparent"));
        let req = req.map(body::incoming);
        let (site, kind, result) = self
            .route(req, peer, &request_id, &traceparent)
            .instrument(span.clone())
            .await;
        let mut resp = result.unwrap_or_else(|e| error_response(&e, &request_id));
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut()
                .insert(HeaderName::from_static("x-kpages-request-id"), v);
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
        let table = self.routes.load();
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
            &self.config.trusted_proxies,
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
                self.decorate(&deploy, &facts, resp.headers_mut());
                answer(RouteKind::Other, Ok(resp))
            }
            Decision::Static { file, status } => {
                let result = self
                    .serve_static(&deploy, &facts, req.method(), req.headers(), &file, status)
                    .await;
                answer(RouteKind::Static, result)
            }
            Decision::Function {
                name,
                params,
                invocation,
            } => {
                self.invoke(req, &call, &deploy, &name, params, invocation, None)
                    .await
            }
            Decision::Proxy { url, headers } => answer(
                RouteKind::Proxy,
                self.proxy_rule(req, &url, &headers, client_ip).await,
            ),
            Decision::SiteRoute { index, params } => {
                let Some(route) = site_routes.get(index) else {
                    return answer(RouteKind::Other, Err(RouteError::NoSite(facts.host)));
                };
                match &route.target {
                    RouteTarget::Service { authority, name } => answer(
                        RouteKind::Proxy,
                        self.proxy_service(req, authority, name, &facts, client_ip)
                            .await,
                    ),
                    RouteTarget::Function {
                        deploy: target,
                        function,
                        invocation,
                    } => {
                        let route = Some(route.name.as_str());
                        self.invoke(req, &call, target, function, params, *invocation, route)
                            .await
                    }
                }
            }
        }
    }

    /// Calls (or, for a background invocation, queues) function `name` of `deploy`; a 404
    /// when the deploy has no such function (`route`: the FunctionRoute that named it).
    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &self,
        req: Request<Body>,
        call: &Caller<'_>,
        deploy: &Deploy,
        name: &str,
        params: Params,
        invocation: InvocationKind,
        route: Option<&str>,
    ) -> (String, RouteKind, Result<Response<Body>, RouteError>) {
        let answer = |kind, result| (call.site.to_string(), kind, result);
        let Some(function) = deploy.routes.function(name) else {
            let msg = match route {
                Some(route) => format!(
                    "FunctionRoute {route} names function {name:?}, which deploy {} does not have",
                    deploy.id
                ),
                None => "no such function".to_string(),
            };
            return answer(
                RouteKind::Other,
                Ok(json_status(StatusCode::NOT_FOUND, &msg, call.request_id)),
            );
        };
        let ctx = CallContext {
            site: call.site,
            deploy,
            function,
            params: &params,
            request_id: call.request_id,
            traceparent: call.traceparent,
            client_ip: call.client_ip,
            geo: call.geo,
            host: call.host,
            peer_trusted: call.peer_trusted,
        };
        if invocation == InvocationKind::Background {
            answer(RouteKind::Background, self.enqueue(ctx, req).await)
        } else {
            answer(RouteKind::Function, self.call_function(ctx, req).await)
        }
    }

    /// Proxies to a Service a FunctionRoute names, keeping the request's Host (the Service
    /// serves the site's hosts) and saying who asked in `X-Forwarded-*`.
    async fn proxy_service(
        &self,
        req: Request<Body>,
        authority: &str,
        name: &str,
        facts: &RequestFacts,
        client_ip: IpAddr,
    ) -> Result<Response<Body>, RouteError> {
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let uri: http::Uri = format!("http://{authority}{path_and_query}")
            .parse()
            .map_err(|_| ProxyError::BadTarget(format!("Service {name}")))?;
        let (method, mut headers, body) = proxied_parts(req, client_ip);
        proxy::set(&mut headers, "x-forwarded-host", &facts.host);
        proxy::set(&mut headers, "x-forwarded-proto", "http");
        self.forward(method, uri, headers, body).await
    }

    fn peer_trusted(&self, ip: IpAddr) -> bool {
        self.config.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    fn facts(
        &self,
        req: &Request<Body>,
        host: String,
        path: String,
        geo: Option<&crate::geo::Geo>,
    ) -> RequestFacts {
        let headers = req.headers();
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ");
        let roles = match (
            &self.config.jwt_secret,
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

    /// Header rules for the request path (static answers only, as on Netlify).
    fn decorate(&self, deploy: &Deploy, facts: &RequestFacts, headers: &mut HeaderMap) {
        for (name, value) in deploy.routes.headers.headers_for(&facts.host, &facts.path) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
    }

    async fn serve_static(
        &self,
        deploy: &Deploy,
        facts: &RequestFacts,
        method: &Method,
        headers: &HeaderMap,
        file: &str,
        status: u16,
    ) -> Result<Response<Body>, RouteError> {
        let Some(entry) = deploy.routes.manifest.files.get(file) else {
            return Ok(json_status(StatusCode::NOT_FOUND, "not found", ""));
        };
        if status == 200 && method != Method::GET && method != Method::HEAD {
            let mut resp = Response::new(body::full("method not allowed\n"));
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(resp);
        }
        let cache_control = deploy
            .routes
            .cache
            .ttl_for(&facts.host, &facts.path)
            .map(static_files::cache_control_for_ttl);
        let mut resp = self
            .statics
            .serve(StaticRequest {
                file: entry,
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                method,
                headers,
                cache_control,
            })
            .await?;
        self.decorate(deploy, facts, resp.headers_mut());
        Ok(resp)
    }

    async fn call_function(
        &self,
        ctx: CallContext<'_>,
        req: Request<Body>,
    ) -> Result<Response<Body>, RouteError> {
        let addr = self
            .routes
            .endpoint(&ctx.deploy.id, self.config.cold_start_timeout)
            .await
            .ok_or_else(|| ProxyError::NoUpstream {
                deploy: ctx.deploy.id.clone(),
            })?;
        let (parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut headers = parts.headers;
        ctx.control_headers(&mut headers, "sync");
        let (body_limit, timeout, _) = self.limits(ctx.deploy, ctx.function);
        let resp = self
            .upstreams
            .call(Call {
                method: parts.method,
                uri: proxy::function_uri(addr, &path_and_query)?,
                headers,
                body,
                body_limit,
                timeout,
            })
            .await?;
        Ok(resp)
    }

    async fn enqueue(
        &self,
        ctx: CallContext<'_>,
        req: Request<Body>,
    ) -> Result<Response<Body>, RouteError> {
        let (body_limit, _, _) = self.limits(ctx.deploy, ctx.function);
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > body_limit) {
            return Err(ProxyError::BodyTooLarge { limit: body_limit }.into());
        }
        let exceeded = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let collected = body::Limited::new(body, body_limit, exceeded.clone())
            .collect()
            .await;
        let bytes = match collected {
            Ok(c) => c.to_bytes(),
            Err(_) if exceeded.load(std::sync::atomic::Ordering::Acquire) => {
                return Err(ProxyError::BodyTooLarge { limit: body_limit }.into());
            }
            Err(e) => return Err(ProxyError::Downstream(e.to_string()).into()),
        };
        let mut headers = parts.headers;
        // Read by the queue, not by the function.
        let callback_url = take_header(&mut headers, "x-callback-url")?;
        let idempotency_key = header_str(&headers, "idempotency-key")
            .filter(|k| !k.is_empty())
            .map(str::to_string);
        ctx.control_headers(&mut headers, "background");
        let call_id = match &idempotency_key {
            Some(key) => queue::idempotent_call_id(ctx.site, &ctx.function.name, key),
            None => client::request_id(),
        };
        let job = Job {
            call_id: call_id.clone(),
            deploy_id: ctx.deploy.id.clone(),
            site: ctx.site.to_string(),
            function: ctx.function.name.clone(),
            params: params_json(ctx.params),
            invocation: "background",
            method: parts.method,
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            headers,
            body: bytes,
            attempt: 0,
            idempotency_key,
            callback_url,
        };
        self.queue.enqueue(job).await?;
        let resp = Response::builder()
            .status(StatusCode::ACCEPTED)
            .header("x-kpages-call-id", call_id)
            .body(body::empty());
        Ok(or_500(resp))
    }

    async fn proxy_rule(
        &self,
        req: Request<Body>,
        url: &str,
        extra: &[(String, String)],
        client_ip: IpAddr,
    ) -> Result<Response<Body>, RouteError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| ProxyError::BadTarget(url.to_string()))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(ProxyError::BadTarget(url.to_string()).into());
        }
        let (method, mut headers, body) = proxied_parts(req, client_ip);
        headers.remove(header::HOST);
        if let Some(a) = uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            headers.insert(header::HOST, v);
        }
        for (k, v) in extra {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(n, v);
            }
        }
        self.forward(method, uri, headers, body).await
    }

    /// Sends a proxied request (a rule's URL, a Service) with the router's body limit and
    /// wall time.
    async fn forward(
        &self,
        method: Method,
        uri: http::Uri,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response<Body>, RouteError> {
        Ok(self
            .upstreams
            .call(Call {
                method,
                uri,
                headers,
                body,
                body_limit: self.config.body_limit,
                timeout: self.config.sync_timeout,
            })
            .await?)
    }

    fn limits(&self, deploy: &Deploy, f: &Function) -> (u64, Duration, Duration) {
        limits_for(&self.config, deploy, f)
    }
}

/// A call's body limit, sync and background timeouts: the function's own, else the manifest's
/// site-wide one, else the Site object's (cluster mode), else the router's flags — the order
/// the operator uses for the host's timeouts.
fn limits_for(config: &Config, deploy: &Deploy, f: &Function) -> (u64, Duration, Duration) {
    let site = &deploy.routes.manifest.site.limits;
    let object = &deploy.site_limits;
    let body = f
        .limits
        .max_body_bytes
        .or(site.max_body_bytes)
        .or(object.max_body_bytes)
        .unwrap_or(config.body_limit);
    let secs = |s: Option<u32>| s.map(|s| Duration::from_secs(s.into()));
    let sync = secs(
        f.limits
            .timeout_seconds
            .or(site.timeout_seconds)
            .or(object.timeout_seconds),
    )
    .unwrap_or(config.sync_timeout);
    let background = secs(
        f.limits
            .background_timeout_seconds
            .or(site.background_timeout_seconds)
            .or(object.background_timeout_seconds),
    )
    .unwrap_or(config.background_timeout);
    (body, sync, background)
}

/// A request's method, headers (hop and control headers stripped, `X-Forwarded-For` set) and
/// body, for proxying it elsewhere than a function host.
fn proxied_parts(req: Request<Body>, client_ip: IpAddr) -> (Method, HeaderMap, Body) {
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    proxy::strip_headers(&mut headers);
    proxy::set(&mut headers, "x-forwarded-for", &client_ip.to_string());
    (parts.method, headers, body)
}

/// What every function call of one request shares, whichever deploy and function it goes to.
struct Caller<'a> {
    site: &'a str,
    request_id: &'a str,
    traceparent: &'a str,
    client_ip: IpAddr,
    geo: Option<&'a crate::geo::Geo>,
    host: &'a str,
    peer_trusted: bool,
}

/// What a function call carries besides the request.
struct CallContext<'a> {
    site: &'a str,
    deploy: &'a Deploy,
    function: &'a Function,
    params: &'a Params,
    request_id: &'a str,
    traceparent: &'a str,
    client_ip: IpAddr,
    geo: Option<&'a crate::geo::Geo>,
    host: &'a str,
    peer_trusted: bool,
}

impl CallContext<'_> {
    /// Strips what the client may not send and sets the control headers the host reads.
    fn control_headers(&self, headers: &mut HeaderMap, invocation: &str) {
        let forwarded_proto = header_str(headers, "x-forwarded-proto").map(str::to_string);
        let forwarded_host = header_str(headers, "x-forwarded-host").map(str::to_string);
        proxy::strip_headers(headers);
        proxy::set(headers, "x-kpages-function", &self.function.name);
        proxy::set(headers, "x-kpages-params", &params_json(self.params));
        proxy::set(headers, "x-kpages-request-id", self.request_id);
        proxy::set(headers, "x-kpages-client-ip", &self.client_ip.to_string());
        proxy::set(headers, "x-kpages-invocation", invocation);
        if let Some(g) = self.geo {
            proxy::set(headers, "x-kpages-geo", &g.header_value());
        }
        proxy::set(headers, "traceparent", self.traceparent);
        proxy::set(headers, "x-forwarded-for", &self.client_ip.to_string());
        let (proto, host) = if self.peer_trusted {
            (
                forwarded_proto.unwrap_or_else(|| "http".into()),
                forwarded_host.unwrap_or_else(|| self.host.to_string()),
            )
        } else {
            ("http".into(), self.host.to_string())
        };
        proxy::set(headers, "x-forwarded-proto", &proto);
        proxy::set(headers, "x-forwarded-host", &host);
        if let Ok(v) = HeaderValue::from_str(self.host) {
            headers.insert(header::HOST, v);
        }
    }
}

/// Removes a header the router reads itself; a value that is not text is refused.
fn take_header(headers: &mut HeaderMap, name: &'static str) -> Result<Option<String>, RouteError> {
    match headers.remove(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim().to_string())).map_err(|_| {
            QueueError::Rejected(format!("{name}: the value must be a URL in visible ASCII")).into()
        }),
    }
}

fn params_json(params: &Params) -> String {
    serde_json::to_string(params).unwrap_or_else(|_| "{}".into())
}

/// The host a request is for: `Host`, or the authority of an HTTP/2 or absolute-form target.
fn request_host<B>(req: &Request<B>) -> String {
    header_str(req.headers(), "host")
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The one place errors become responses: a JSON body naming the request id.
fn error_response(err: &RouteError, request_id: &str) -> Response<Body> {
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

fn json_status(status: StatusCode, message: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({"error": message, "requestId": request_id}).to_string();
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn or_500(r: Result<Response<Body>, http::Error>) -> Response<Body> {
    r.unwrap_or_else(|e| {
        json_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("building the response: {e}"),
            "",
        )
    })
}

/// Runs background and scheduled functions: finds the job's deploy in the current table
/// and calls its host with the background wall time.
pub struct FunctionRunner {
    routes: Arc<Routes>,
    upstreams: Upstreams,
    config: Config,
}

impl FunctionRunner {
    /// A runner of the deploys in `routes`, with `config`'s limits, outside any [`App`]
    /// (e.g. a process that only runs background jobs).
    pub fn new(routes: Arc<Routes>, config: Config) -> Self {
        Self {
            routes,
            upstreams: Upstreams::new(),
            config,
        }
    }

    /// Runs a job once, returning the host's verdict: 200 is success, 4xx a failure a retry
    /// cannot fix, anything else (5xx, unreachable, wall time, no such deploy yet) transient.
    pub async fn run_job(&self, job: Job) -> Result<(), RunError> {
        let table = self.routes.load();
        // A deploy or host that is missing may appear (a router that has not yet seen the
        // deploy, pods starting): transient.
        let deploy = table
            .deploy(&job.deploy_id)
            .ok_or_else(|| {
                RunError::transient(format!("deploy {} is no longer served", job.deploy_id))
            })?
            .clone();
        let function = deploy.routes.function(&job.function).ok_or_else(|| {
            RunError::permanent(format!(
                "function {:?} is not in deploy {}",
                job.function, deploy.id
            ))
        })?;
        let addr = self
            .routes
            .endpoint(&deploy.id, self.config.cold_start_timeout)
            .await
            .ok_or_else(|| {
                RunError::transient(format!(
                    "no function host is ready for deploy {}",
                    deploy.id
                ))
            })?;
        let (_, _, timeout) = limits_for(&self.config, &deploy, function);
        let mut headers = job.headers.clone();
        proxy::set(&mut headers, "x-kpages-function", &job.function);
        proxy::set(&mut headers, "x-kpages-params", &job.params);
        proxy::set(&mut headers, "x-kpages-request-id", &job.call_id);
        proxy::set(&mut headers, "x-kpages-invocation", job.invocation);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(job.body.len()));
        let uri = proxy::function_uri(addr, &job.path_and_query)
            .map_err(|e| RunError::permanent(e.to_string()))?;
        let resp = self
            .upstreams
            .call(Call {
                method: job.method.clone(),
                uri,
                headers,
                body: body::full(job.body.clone()),
                body_limit: u64::MAX,
                timeout,
            })
            .await
            .map_err(|e| RunError::transient(format!("function host: {e}")))?;
        let status = resp.status();
        let text = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = || {
            format!(
                "function host answered {status}: {}",
                String::from_utf8_lossy(&text[..text.len().min(500)])
            )
        };
        if status == StatusCode::OK {
            Ok(())
        } else if status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS
        {
            Err(RunError::permanent(message()))
        } else {
            Err(RunError::transient(message()))
        }
    }

    /// A scheduled run of `function` in `deploy` with the `{"next_run": …}` body.
    pub fn schedule_job(site: &str, deploy: &Deploy, function: &str, next_run: Option<i64>) -> Job {
        let body = serde_json::json!({
            "next_run": next_run.map(kpages_crds::schedule::iso8601),
        })
        .to_string();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::HOST, HeaderValue::from_static("localhost"));
        Job {
            call_id: client::request_id(),
            deploy_id: deploy.id.clone(),
            site: site.to_string(),
            function: function.to_string(),
            params: "{}".into(),
            invocation: "schedule",
            method: Method::POST,
            path_and_query: format!("/.netlify/functions/{function}"),
            headers,
            body: Bytes::from(body),
            attempt: 0,
            idempotency_key: None,
            callback_url: None,
        }
    }
}

impl Runner for FunctionRunner {
    fn run(&self, job: Job) -> BoxFuture<'static, Result<(), RunError>> {
        let this = FunctionRunner {
            routes: self.routes.clone(),
            upstreams: self.upstreams.clone(),
            config: self.config.clone(),
        };
        Box::pin(async move { this.run_job(job).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::SiteLimits;
    use kpages_crds::Manifest;

    fn function(limits: serde_json::Value) -> Function {
        serde_json::from_value(serde_json::json!({
            "name": "f",
            "bundle": format!("sha256:{}", "a".repeat(64)),
            "dialect": "netlify",
            "limits": limits,
        }))
        .unwrap()
    }

    fn deploy(manifest_limits: serde_json::Value, object: SiteLimits) -> Deploy {
        let mut manifest = Manifest::new();
        manifest.site.limits = serde_json::from_value(manifest_limits).unwrap();
        let mut d = Deploy::new(
            "ns/d",
            Arc::new(kpages_routing::resolve::CompiledDeploy::compile(Arc::new(
                manifest,
            ))),
            vec![],
            true,
        );
        d.site_limits = object;
        d
    }

    #[test]
    fn limits_come_from_the_function_then_the_manifest_then_the_site_object_then_flags() {
        let config = Config::default();
        let object = SiteLimits {
            timeout_seconds: Some(7),
            background_timeout_seconds: Some(70),
            max_body_bytes: Some(7000),
        };
        let secs = Duration::from_secs;
        let none = serde_json::json!({});
        // The router's flags when nothing else says.
        let (body, sync, bg) = limits_for(
            &config,
            &deploy(none.clone(), SiteLimits::default()),
            &function(none.clone()),
        );
        assert_eq!(
            (body, sync, bg),
            (
                config.body_limit,
                config.sync_timeout,
                config.background_timeout
            )
        );
        // The Site object's over the flags.
        let d = deploy(none.clone(), object);
        assert_eq!(
            limits_for(&config, &d, &function(none.clone())),
            (7000, secs(7), secs(70))
        );
        // The manifest's site-wide settings over the Site object, field by field.
        let d = deploy(
            serde_json::json!({"timeoutSeconds": 5, "maxBodyBytes": 5000}),
            object,
        );
        assert_eq!(
            limits_for(&config, &d, &function(none)),
            (5000, secs(5), secs(70))
        );
        // The function's own over everything.
        assert_eq!(
            limits_for(
                &config,
                &d,
                &function(serde_json::json!({"backgroundTimeoutSeconds": 3}))
            ),
            (5000, secs(5), secs(3))
        );
    }
}
