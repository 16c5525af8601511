//! Calls to function hosts (and proxy rules' absolute URLs) over pooled keep-alive HTTP/1.1
//! connections, streaming both ways, within a body size limit and a wall-time limit.
//!
//! Errors say where they came from ([`ErrorSource`], after pingora) so the one place that
//! turns errors into statuses can tell "the client sent too much" (413) from "the host is
//! down" (502) from "the host is too slow" (504).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kpages_routing::rules::RequestFacts;
use tokio::time::Instant;

use crate::body::{self, Body, Deadline, Limited};

/// Which side of the proxy an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The function host or proxy target.
    Upstream,
    /// The client.
    Downstream,
    /// The router itself.
    Internal,
}

/// Why a proxied call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The client's body is larger than the limit.
    #[error("request body is larger than the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// No connection, or the connection broke before a response arrived.
    #[error("{target} is unreachable: {reason}")]
    Unreachable {
        /// Where the call went.
        target: String,
        /// The transport error.
        reason: String,
    },
    /// No response headers within the wall time.
    #[error("{target} did not answer within {timeout:?}")]
    Timeout {
        /// Where the call went.
        target: String,
        /// The limit.
        timeout: Duration,
    },
    /// The deploy has no ready function host.
    #[error("no function host is ready for deploy {deploy}")]
    NoUpstream {
        /// The deploy.
        deploy: String,
    },
    /// The client's body failed while being read.
    #[error("reading the request body failed: {0}")]
    Downstream(String),
    /// The target URL of a proxy rule cannot be used.
    #[error("proxy target {0:?} is not supported: only http:// URLs are")]
    BadTarget(String),
    /// The request already passed through kpages proxy rules this many times: a rule points
    /// back at a kpages router.
    #[error(
        "proxy rule to {target:?}: the request already went through {hops} kpages proxies (a rule points back at kpages)"
    )]
    Loop {
        /// The rule's target.
        target: String,
        /// `Via` entries of kpages routers on the request.
        hops: usize,
    },
    /// A proxy rule's target is one of the router's own listeners.
    #[error("proxy rule to {target:?} refused: {addr} is one of this router's own listeners")]
    OwnListener {
        /// The rule's target.
        target: String,
        /// The listener it resolved to.
        addr: SocketAddr,
    },
}

impl ProxyError {
    /// Where the error came from.
    pub fn source_side(&self) -> ErrorSource {
        match self {
            Self::BodyTooLarge { .. } | Self::Downstream(_) => ErrorSource::Downstream,
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::NoUpstream { .. } => {
                ErrorSource::Upstream
            }
            Self::BadTarget(_) | Self::Loop { .. } | Self::OwnListener { .. } => {
                ErrorSource::Internal
            }
        }
    }

    /// Whether repeating the call could not have caused a second effect: the request never
    /// reached the function.
    pub fn retry_safe(&self) -> bool {
        matches!(
            self,
            Self::NoUpstream { .. }
                | Self::BadTarget(_)
                | Self::BodyTooLarge { .. }
                | Self::Loop { .. }
                | Self::OwnListener { .. }
        )
    }
}

/// Removes hop-by-hop headers, those the `Connection` header names, and every
/// `x-kpages-*` header (control headers only the router may set).
pub fn strip_headers(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in kpages_routing::rules::HOP_BY_HOP {
        headers.remove(n);
    }
    let control: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(kpages_crds::host::header::PREFIX))
        .cloned()
        .collect();
    for n in control {
        headers.remove(n);
    }
}

/// One call to make.
pub struct Call {
    /// Method.
    pub method: http::Method,
    /// `http://host:port/path?query`.
    pub uri: Uri,
    /// Headers, already stripped and decorated.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Body,
    /// Largest body accepted.
    pub body_limit: u64,
    /// Wall time of the whole call, body streaming included.
    pub timeout: Duration,
}

/// A pool of upstream connections.
#[derive(Clone)]
pub struct Upstreams {
    client: Client<HttpConnector, Body>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// A pool whose idle connections close before the host's 65 s keep-alive does, so a
    /// connection the host is closing is never reused.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Self { client }
    }

    /// Makes a call. The response body streams and is cut off at the call's deadline.
    pub async fn call(&self, call: Call) -> Result<Response<Body>, ProxyError> {
        let target = call
            .uri
            .authority()
            .map_or_else(|| call.uri.to_string(), |a| a.to_string());
        let declared = call
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > call.body_limit) {
            return Err(ProxyError::BodyTooLarge {
                limit: call.body_limit,
            });
        }
        let exceeded = Arc::new(AtomicBool::new(false));
        let limited = Limited::new(call.body, call.body_limit, exceeded.clone());
        let mut req = Request::new(body::boxed_dyn(limited));
        *req.method_mut() = call.method;
        *req.uri_mut() = call.uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = call.headers;
        let deadline = Instant::now() + call.timeout;
        let sent = tokio::time::timeout_at(deadline, self.client.request(req)).await;
        let resp = match sent {
            Err(_) => {
                return Err(ProxyError::Timeout {
                    target,
                    timeout: call.timeout,
                });
            }
            Ok(Err(_)) if exceeded.load(Ordering::Acquire) => {
                return Err(ProxyError::BodyTooLarge {
                    limit: call.body_limit,
                });
            }
            Ok(Err(e)) => {
                return Err(ProxyError::Unreachable {
                    target,
                    reason: error_chain(&e),
                });
            }
            Ok(Ok(resp)) => resp,
        };
        let (mut parts, incoming) = resp.into_parts();
        strip_headers(&mut parts.headers);
        let body = body::boxed_dyn(Deadline::new(body::incoming(incoming), deadline));
        Ok(Response::from_parts(parts, body))
    }
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The URI of a function host call: the public path and query on the host's address.
pub fn function_uri(addr: SocketAddr, path_and_query: &str) -> Result<Uri, ProxyError> {
    format!("http://{addr}{path_and_query}")
        .parse()
        .map_err(|_| ProxyError::BadTarget(path_and_query.to_string()))
}

/// Sets a header from a string, skipping values that cannot be header values.
pub fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Proxies the pipeline answers with: rule targets and Services.
impl super::Backends {
    /// Proxies to a Service a FunctionRoute names, keeping the request's Host (the Service
    /// serves the site's hosts) and saying who asked in `X-Forwarded-*`.
    pub(crate) async fn proxy_service(
        &self,
        req: Request<Body>,
        authority: &str,
        name: &str,
        facts: &RequestFacts,
        client_ip: IpAddr,
    ) -> Result<Response<Body>, ProxyError> {
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let uri: http::Uri = format!("http://{authority}{path_and_query}")
            .parse()
            .map_err(|_| ProxyError::BadTarget(format!("Service {name}")))?;
        let (method, mut headers, body) = proxied_parts(req, client_ip);
        set(&mut headers, "x-forwarded-host", &facts.host);
        set(&mut headers, "x-forwarded-proto", "http");
        self.forward(method, uri, headers, body).await
    }

    pub(crate) async fn proxy_rule(
        &self,
        req: Request<Body>,
        url: &str,
        extra: &[(String, String)],
        client_ip: IpAddr,
    ) -> Result<Response<Body>, ProxyError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| ProxyError::BadTarget(url.to_string()))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(ProxyError::BadTarget(url.to_string()));
        }
        let hops = kpages_hops(req.headers());
        if hops >= MAX_PROXY_HOPS {
            return Err(ProxyError::Loop {
                target: url.to_string(),
                hops,
            });
        }
        if let Some(addr) = self.own_listener(&uri).await {
            tracing::warn!(target = %url, listener = %addr, "proxy rule to the router's own listener refused");
            return Err(ProxyError::OwnListener {
                target: url.to_string(),
                addr,
            });
        }
        let (method, mut headers, body) = proxied_parts(req, client_ip);
        // Every rule proxy says it passed through kpages, so a rule that leads back to a
        // kpages router (this one or another) ends after a few hops instead of looping until
        // connections run out.
        headers.append(header::VIA, HeaderValue::from_static(VIA_KPAGES));
        headers.remove(header::HOST);
        if let Some(a) = uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            headers.insert(header::HOST, v);
        }
        for (k, v) in extra {
            // The routing core refuses such rules; a manifest from elsewhere is not trusted.
            if kpages_routing::rules::refused_proxy_header(k).is_some() {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(n, v);
            }
        }
        self.forward(method, uri, headers, body).await
    }

    /// The router's own listener that `uri` resolves to, if any. Resolved here and again by
    /// the connector: enough against a rule naming the router, not against DNS that changes
    /// in between (a target policy checked on every connection is still to come).
    async fn own_listener(&self, uri: &http::Uri) -> Option<SocketAddr> {
        if self.config.own_listeners.is_empty() {
            return None;
        }
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map(Iterator::collect)
                .unwrap_or_default(),
        };
        resolved.into_iter().find_map(|target| {
            self.config
                .own_listeners
                .iter()
                .find(|own| is_same_listener(own, &target))
                .copied()
        })
    }

    /// Sends a proxied request (a rule's URL, a Service) with the router's body limit and
    /// wall time.
    async fn forward(
        &self,
        method: Method,
        uri: http::Uri,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response<Body>, ProxyError> {
        self.upstreams
            .call(Call {
                method,
                uri,
                headers,
                body,
                body_limit: self.config.body_limit,
                timeout: self.config.sync_timeout,
            })
            .await
    }
}

/// A request's method, headers (hop and control headers stripped, `X-Forwarded-For` set) and
/// body, for proxying it elsewhere than a function host.
fn proxied_parts(req: Request<Body>, client_ip: IpAddr) -> (Method, HeaderMap, Body) {
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_headers(&mut headers);
    set(&mut headers, "x-forwarded-for", &client_ip.to_string());
    (parts.method, headers, body)
}

/// Whether connecting to `target` reaches listener `own`: the same port, and the same address
/// or, for a listener on every address, any loopback or unspecified one.
fn is_same_listener(own: &SocketAddr, target: &SocketAddr) -> bool {
    let (own_ip, ip) = (own.ip().to_canonical(), target.ip().to_canonical());
    own.port() == target.port()
        && (own_ip == ip || ip.is_unspecified() || (own_ip.is_unspecified() && ip.is_loopback()))
}

/// What a kpages router adds to `Via` on a rule proxy.
const VIA_KPAGES: &str = "1.1 kpages";

/// Rule proxies a request may already have passed before the next one is refused with 508.
pub const MAX_PROXY_HOPS: usize = 4;

/// How many kpages rule proxies the request passed through, from its `Via` entries.
fn kpages_hops(headers: &HeaderMap) -> usize {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|entry| entry.trim() == VIA_KPAGES)
        .count()
}

/// A header's value as text, if it is.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripping_removes_hop_by_hop_and_control_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, x-custom"),
            ("x-custom", "1"),
            ("keep-alive", "5"),
            ("transfer-encoding", "chunked"),
            ("x-kpages-function", "evil"),
            ("X-Kpages-Params", "{}"),
            ("accept", "*/*"),
            ("cookie", "a=1"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        strip_headers(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "cookie"]);
    }

    #[test]
    fn errors_know_their_side() {
        assert_eq!(
            ProxyError::BodyTooLarge { limit: 1 }.source_side(),
            ErrorSource::Downstream
        );
        let down = ProxyError::Unreachable {
            target: "127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(down.source_side(), ErrorSource::Upstream);
        assert!(!down.retry_safe());
        assert!(down.to_string().contains("127.0.0.1:1 is unreachable"));
    }

    #[test]
    fn own_listeners_match_by_port_and_address() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        for (own, target, same) in [
            ("127.0.0.1:9000", "127.0.0.1:9000", true),
            ("127.0.0.1:9000", "127.0.0.1:9001", false),
            ("127.0.0.1:9000", "0.0.0.0:9000", true),
            ("127.0.0.1:9000", "10.0.0.5:9000", false),
            ("0.0.0.0:8080", "127.0.0.1:8080", true),
            ("0.0.0.0:8080", "[::1]:8080", true),
            ("0.0.0.0:8080", "203.0.113.9:8080", false),
            ("[::1]:9000", "[::ffff:127.0.0.1]:9000", false),
            ("127.0.0.1:9000", "[::ffff:127.0.0.1]:9000", true),
        ] {
            assert_eq!(
                is_same_listener(&addr(own), &addr(target)),
                same,
                "{own} {target}"
            );
        }
    }
}
