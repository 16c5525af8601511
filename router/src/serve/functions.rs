//! Calls to a deploy's function host: a synchronous call proxied to a ready pod with the
//! control headers the host reads, or a background call put on the queue and answered 202.
//! The limits a call runs under come from [`kpages_crds::limits::effective`], the precedence
//! the operator and `kpages dev` give the host as well.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kpages_crds::host::{self as contract, header as control};
use kpages_crds::limits::{CallLimits, effective};
use kpages_crds::manifest::{Function, InvocationKind};
use kpages_routing::pattern::Params;

use crate::body::{self, Body, json_status, or_500};
use crate::config::Config;
use crate::http::client;
use crate::jobs::queue::{self, Job, QueueError};
use crate::observe::metrics::RouteKind;
use crate::serve::proxy::{self, Call, ProxyError, header_str};
use crate::table::Deploy;

/// Why a function call failed: the host or its pod (sync), or the queue (background).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Calling the host failed.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The queue refused the job.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// A function of a deploy that a request goes to.
pub(crate) struct FunctionTarget<'a> {
    /// The deploy.
    pub deploy: &'a Deploy,
    /// The function's manifest name.
    pub name: &'a str,
    /// Route parameters.
    pub params: Params,
    /// Sync, or background through the queue.
    pub invocation: InvocationKind,
    /// The FunctionRoute that named the function, if one did.
    pub route: Option<&'a str>,
}

impl super::Backends {
    /// Calls (or, for a background invocation, queues) a function; a 404 when the deploy has
    /// no such function.
    pub(crate) async fn invoke(
        &self,
        req: Request<Body>,
        call: &Caller<'_>,
        target: FunctionTarget<'_>,
    ) -> (String, RouteKind, Result<Response<Body>, CallError>) {
        let FunctionTarget {
            deploy,
            name,
            params,
            invocation,
            route,
        } = target;
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

    async fn call_function(
        &self,
        ctx: CallContext<'_>,
        req: Request<Body>,
    ) -> Result<Response<Body>, CallError> {
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
        ctx.control_headers(&mut headers, contract::invocation(InvocationKind::Sync));
        let CallLimits {
            max_body_bytes: body_limit,
            timeout,
            ..
        } = call_limits(&self.config, ctx.deploy, ctx.function);
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
    ) -> Result<Response<Body>, CallError> {
        let body_limit = call_limits(&self.config, ctx.deploy, ctx.function).max_body_bytes;
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
        ctx.control_headers(
            &mut headers,
            contract::invocation(InvocationKind::Background),
        );
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
            invocation: contract::invocation(InvocationKind::Background),
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
            .header(control::CALL_ID, call_id)
            .body(body::empty());
        Ok(or_500(resp))
    }
}

/// The limits a call of `f` in `deploy` runs under: the function's own, then the manifest's
/// site-wide ones, then the Site object's (cluster mode), then the router's flags.
pub(crate) fn call_limits(config: &Config, deploy: &Deploy, f: &Function) -> CallLimits {
    effective(
        &[
            &f.limits,
            &deploy.routes.manifest.site.limits,
            &deploy.site_limits,
        ],
        CallLimits {
            max_body_bytes: config.body_limit,
            timeout: config.sync_timeout,
            background_timeout: config.background_timeout,
        },
    )
}

pub(crate) struct Caller<'a> {
    pub(crate) site: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) traceparent: &'a str,
    pub(crate) client_ip: IpAddr,
    pub(crate) geo: Option<&'a crate::observe::geo::Geo>,
    pub(crate) host: &'a str,
    pub(crate) peer_trusted: bool,
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
    geo: Option<&'a crate::observe::geo::Geo>,
    host: &'a str,
    peer_trusted: bool,
}

impl CallContext<'_> {
    /// Strips what the client may not send and sets the control headers the host reads.
    fn control_headers(&self, headers: &mut HeaderMap, invocation: &str) {
        let forwarded_proto = header_str(headers, "x-forwarded-proto").map(str::to_string);
        let forwarded_host = header_str(headers, "x-forwarded-host").map(str::to_string);
        proxy::strip_headers(headers);
        proxy::set(headers, control::FUNCTION, &self.function.name);
        proxy::set(headers, control::PARAMS, &params_json(self.params));
        proxy::set(headers, control::REQUEST_ID, self.request_id);
        proxy::set(headers, control::CLIENT_IP, &self.client_ip.to_string());
        proxy::set(headers, control::INVOCATION, invocation);
        if let Some(g) = self.geo {
            proxy::set(headers, control::GEO, &g.header_value());
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
fn take_header(headers: &mut HeaderMap, name: &'static str) -> Result<Option<String>, QueueError> {
    match headers.remove(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim().to_string())).map_err(|_| {
            QueueError::Rejected(format!("{name}: the value must be a URL in visible ASCII"))
        }),
    }
}

fn params_json(params: &Params) -> String {
    serde_json::to_string(params).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::SiteLimits;
    use kpages_crds::Manifest;
    use std::time::Duration;

    /// The limits as (body, sync, background), for compact assertions.
    fn limits_for(config: &Config, d: &Deploy, f: &Function) -> (u64, Duration, Duration) {
        let l = call_limits(config, d, f);
        (l.max_body_bytes, l.timeout, l.background_timeout)
    }

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
            memory_mib: None,
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
