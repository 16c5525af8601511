//! Runs a queued job (a background call or a scheduled run) against its deploy's function
//! host, outside any client request, and says whether a retry could help.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use kpages_crds::host::header as control;

use crate::body;
use crate::config::Config;
use crate::http::client;
use crate::jobs::queue::{BoxFuture, Job, RunError, Runner};
use crate::serve::functions::call_limits;
use crate::serve::proxy::{self, Call, Upstreams};
use crate::table::{Deploy, Routes};

/// Runs background and scheduled functions: finds the job's deploy in the current table
/// and calls its host with the background wall time.
pub struct FunctionRunner {
    pub(crate) routes: Arc<Routes>,
    pub(crate) upstreams: Upstreams,
    pub(crate) config: Config,
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
        let timeout = call_limits(&self.config, &deploy, function).background_timeout;
        let mut headers = job.headers.clone();
        proxy::set(&mut headers, control::FUNCTION, &job.function);
        proxy::set(&mut headers, control::PARAMS, &job.params);
        proxy::set(&mut headers, control::REQUEST_ID, &job.call_id);
        proxy::set(&mut headers, control::INVOCATION, job.invocation);
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
