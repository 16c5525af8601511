//! Background function calls: a [`Queue`] the router puts jobs on before answering 202, and
//! an in-process implementation for `kpages dev` (bounded, with retries and backoff). NATS
//! JetStream implements the same trait in clusters ([`crate::jobs::jetstream`]), and adds call status
//! and dead-letter redrive, which the in-process queue does not keep.
//!
//! ```text
//!  handler ─ enqueue ─► bounded channel ─► workers ─ Runner::run ─► function host
//!                 (full → 503)                 │ failure
//!                                              └─ after backoff[i] ─► channel … ─► dead letter (logged)
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::{Mutex, mpsc};

use crate::observe::metrics::Metrics;

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A background or scheduled function call.
#[derive(Debug, Clone)]
pub struct Job {
    /// The call id returned to the client in `x-kpages-call-id`.
    pub call_id: String,
    /// The deploy the job was accepted for.
    pub deploy_id: String,
    /// The site, for logs and metrics.
    pub site: String,
    /// The function.
    pub function: String,
    /// `x-kpages-params` JSON.
    pub params: String,
    /// `background` or `schedule`.
    pub invocation: &'static str,
    /// Request method.
    pub method: http::Method,
    /// Public path and query.
    pub path_and_query: String,
    /// Request headers, control headers already stripped.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// How many times the job has run already.
    pub attempt: u32,
    /// The client's `Idempotency-Key`, when it sent one (the call id derives from it).
    pub idempotency_key: Option<String>,
    /// The client's `X-Callback-Url`: where the outcome is POSTed (JetStream queue only).
    pub callback_url: Option<String>,
}

/// The call id of a submission carrying an idempotency key: the same site, function and key
/// always give the same id, so a re-submission is recognised and answered with the first id.
pub fn idempotent_call_id(site: &str, function: &str, key: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for part in [site, function, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Why a job could not be queued (or a queue request answered).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds as many jobs as it may.
    #[error("the background queue is full ({0} jobs)")]
    Full(usize),
    /// The queue is shutting down.
    #[error("the background queue is closed")]
    Closed,
    /// The queue's backing store cannot take the job now (NATS down, no publish ack, object
    /// store unreachable); the client may retry.
    #[error("the background queue is unavailable: {0}")]
    Unavailable(String),
    /// The submission is invalid (a header the queue reads); retrying will not help.
    #[error("{0}")]
    Rejected(String),
    /// This queue does not offer the operation.
    #[error("the {0} needs the JetStream queue (start the router with --nats-url)")]
    Unsupported(&'static str),
}

impl QueueError {
    /// Whether a client should retry later (503 with `Retry-After`) rather than fix its request.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Full(_) | Self::Closed | Self::Unavailable(_))
    }
}

/// Where a call stands, as `GET /calls/<id>` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    /// Accepted and waiting for a worker, or waiting for a retry after a failed attempt.
    Queued,
    /// A worker is invoking the function.
    Running,
    /// The function answered 200.
    Succeeded,
    /// The function answered a client error (4xx): not retried, not dead-lettered.
    Failed,
    /// Every attempt failed; the job is in the dead-letter stream and can be re-driven.
    Dead,
}

impl CallState {
    /// Whether the call is over (its callback, if any, has been sent).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Dead)
    }
}

/// The status record of one background call. Times are RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallStatus {
    /// The id returned in `x-kpages-call-id`.
    pub call_id: String,
    /// The site.
    pub site: String,
    /// The function.
    pub function: String,
    /// The deploy the call was accepted for.
    pub deploy_id: String,
    /// Where the call stands.
    pub state: CallState,
    /// Attempts started so far (a redrive starts counting again).
    pub attempts: u32,
    /// Attempts allowed before the job is dead-lettered.
    pub max_attempts: u32,
    /// When the router accepted the call (answered 202).
    pub accepted_at: String,
    /// When the last attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the call reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// When the next attempt is due (queued after a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// How many times the call was re-driven from the dead letters.
    #[serde(default)]
    pub redrives: u32,
    /// When this record last changed.
    pub updated_at: String,
}

/// Which dead letters a redrive takes; every field left out matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveFilter {
    /// Only this site's.
    pub site: Option<String>,
    /// Only this function's.
    pub function: Option<String>,
    /// Only this call.
    pub call_id: Option<String>,
}

/// Where background jobs go.
pub trait Queue: Send + Sync {
    /// Stores the job durably (for this implementation's meaning of durable); the router
    /// answers 202 only after this returns `Ok`.
    fn enqueue(&self, job: Job) -> BoxFuture<'_, Result<(), QueueError>>;

    /// The status of a call, `None` when the queue does not know it (never accepted, or its
    /// record expired).
    fn status<'a>(
        &'a self,
        _call_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallStatus>, QueueError>> {
        Box::pin(async { Err(QueueError::Unsupported("call status API")) })
    }

    /// Puts dead-lettered jobs matching `filter` back on the queue with a fresh attempt
    /// budget; returns how many.
    fn redrive(&self, _filter: RedriveFilter) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(async { Err(QueueError::Unsupported("dead-letter redrive")) })
    }
}

/// A queue that takes no jobs: a router in a cluster without NATS answers background calls
/// 503 rather than accept jobs a restart would lose.
#[derive(Debug, Clone)]
pub struct NoQueue(pub &'static str);

impl Queue for NoQueue {
    fn enqueue(&self, _job: Job) -> BoxFuture<'_, Result<(), QueueError>> {
        let why = self.0;
        Box::pin(async move { Err(QueueError::Unavailable(why.to_string())) })
    }
}

/// Why a run failed, and whether running it again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    /// What went wrong, for logs and the call status.
    pub message: String,
    /// `false` for failures a retry cannot fix (the function answered 4xx).
    pub retry: bool,
}

impl RunError {
    /// A failure worth retrying (host unreachable, 5xx, wall time).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: true,
        }
    }

    /// A failure a retry cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: false,
        }
    }
}

/// Runs a job once; `Err` makes the queue retry when the error allows it.
pub trait Runner: Send + Sync + 'static {
    /// Invokes the job's function.
    fn run(&self, job: Job) -> BoxFuture<'static, Result<(), RunError>>;
}

/// Settings of the in-process queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Jobs waiting at most.
    pub capacity: usize,
    /// Jobs running at once.
    pub workers: usize,
    /// Wait before each retry; its length is the number of retries (default 1 min, 2 min).
    pub backoff: Vec<Duration>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            workers: 4,
            backoff: vec![Duration::from_secs(60), Duration::from_secs(120)],
        }
    }
}

/// The in-process queue of `kpages dev`: jobs live in memory and are lost if the process
/// stops.
pub struct InProcessQueue {
    tx: mpsc::Sender<Job>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

impl InProcessQueue {
    /// Starts the workers; they stop when the queue is dropped.
    pub fn start(config: QueueConfig, runner: Arc<dyn Runner>, metrics: Arc<Metrics>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let retry_tx = tx.downgrade();
        for _ in 0..config.workers.max(1) {
            let rx = rx.clone();
            let runner = runner.clone();
            let metrics = metrics.clone();
            let retry_tx = retry_tx.clone();
            let backoff = config.backoff.clone();
            tokio::spawn(async move {
                loop {
                    // The lock is held only while waiting for the next job, by one idle
                    // worker at a time; never on the request path.
                    let job = rx.lock().await.recv().await;
                    let Some(job) = job else { break };
                    run_one(job, &*runner, &metrics, &retry_tx, &backoff).await;
                }
            });
        }
        Arc::new(Self {
            tx,
            capacity: config.capacity,
            metrics,
        })
    }
}

async fn run_one(
    mut job: Job,
    runner: &dyn Runner,
    metrics: &Metrics,
    retry_tx: &mpsc::WeakSender<Job>,
    backoff: &[Duration],
) {
    metrics.job_attempts.inc();
    metrics.jobs_in_flight.inc();
    let result = runner.run(job.clone()).await;
    metrics.jobs_in_flight.dec();
    job.attempt += 1;
    if result.is_err() {
        metrics.job_failures.inc();
    }
    match result {
        Ok(()) => {
            metrics.job("ok");
            metrics.queue_depth.dec();
            tracing::info!(call_id = %job.call_id, function = %job.function, site = %job.site, attempt = job.attempt, "background job done");
        }
        Err(reason) if !reason.retry => {
            metrics.job("failed");
            metrics.queue_depth.dec();
            tracing::error!(call_id = %job.call_id, function = %job.function, site = %job.site, attempts = job.attempt, %reason, "background job failed with a client error; not retried");
        }
        Err(reason) => match backoff.get(job.attempt as usize - 1) {
            Some(wait) => {
                metrics.job("retry");
                tracing::warn!(call_id = %job.call_id, function = %job.function, attempt = job.attempt, retry_in = ?wait, %reason, "background job failed; will retry");
                let wait = *wait;
                let retry_tx = retry_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let call_id = job.call_id.clone();
                    let sent = match retry_tx.upgrade() {
                        Some(tx) => tx.send(job).await.is_ok(),
                        None => false,
                    };
                    if !sent {
                        tracing::error!(%call_id, "background job dropped: the queue closed before its retry");
                    }
                });
            }
            None => {
                metrics.job("failed");
                metrics.job_dead_letters.inc();
                metrics.queue_depth.dec();
                tracing::error!(call_id = %job.call_id, function = %job.function, site = %job.site, attempts = job.attempt, %reason, "background job failed for good (dead letter)");
            }
        },
    }
}

impl Queue for InProcessQueue {
    fn enqueue(&self, job: Job) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            match self.tx.try_send(job) {
                Ok(()) => {
                    self.metrics.queue_depth.inc();
                    Ok(())
                }
                Err(mpsc::error::TrySendError::Full(_)) => Err(QueueError::Full(self.capacity)),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(QueueError::Closed),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Flaky {
        fail_times: u32,
        calls: AtomicU32,
        done: mpsc::UnboundedSender<u32>,
    }

    impl Runner for Flaky {
        fn run(&self, _job: Job) -> BoxFuture<'static, Result<(), RunError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let result = if n <= self.fail_times {
                Err(RunError::transient(format!("failure {n}")))
            } else {
                Ok(())
            };
            let _ = self.done.send(n);
            Box::pin(async move { result })
        }
    }

    fn job() -> Job {
        Job {
            call_id: "c1".into(),
            deploy_id: "d".into(),
            site: "s".into(),
            function: "f".into(),
            params: "{}".into(),
            invocation: "background",
            method: http::Method::POST,
            path_and_query: "/".into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            attempt: 0,
            idempotency_key: None,
            callback_url: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_retry_after_the_backoff_then_dead_letter() {
        let (done, mut calls) = mpsc::unbounded_channel();
        let runner = Arc::new(Flaky {
            fail_times: 5,
            calls: AtomicU32::new(0),
            done,
        });
        let metrics = Arc::new(Metrics::new());
        let config = QueueConfig {
            capacity: 4,
            workers: 1,
            backoff: vec![Duration::from_secs(60), Duration::from_secs(120)],
        };
        let q = InProcessQueue::start(config, runner, metrics.clone());
        let start = tokio::time::Instant::now();
        q.enqueue(job()).await.unwrap();
        assert_eq!(calls.recv().await, Some(1));
        assert_eq!(calls.recv().await, Some(2));
        assert_eq!(start.elapsed().as_secs(), 60);
        assert_eq!(calls.recv().await, Some(3));
        assert_eq!(start.elapsed().as_secs(), 180);
        // No fourth attempt: the job is dead-lettered and leaves the depth gauge.
        tokio::task::yield_now().await;
        assert_eq!(metrics.queue_depth.get(), 0);
        assert!(
            metrics
                .encode()
                .contains(r#"background_jobs_total{outcome="failed"} 1"#)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_not_retried() {
        struct Rejects(mpsc::UnboundedSender<()>);
        impl Runner for Rejects {
            fn run(&self, _job: Job) -> BoxFuture<'static, Result<(), RunError>> {
                let _ = self.0.send(());
                Box::pin(async { Err(RunError::permanent("function host answered 400")) })
            }
        }
        let (tx, mut calls) = mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::new());
        let config = QueueConfig {
            capacity: 4,
            workers: 1,
            backoff: vec![Duration::from_secs(1)],
        };
        let q = InProcessQueue::start(config, Arc::new(Rejects(tx)), metrics.clone());
        q.enqueue(job()).await.unwrap();
        assert_eq!(calls.recv().await, Some(()));
        // Well past the backoff: still one call, and the job has left the queue.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(calls.try_recv().is_err());
        assert_eq!(metrics.queue_depth.get(), 0);
        let text = metrics.encode();
        assert!(
            text.contains(r#"background_jobs_total{outcome="failed"} 1"#),
            "{text}"
        );
        assert!(!text.contains(r#"outcome="retry""#), "{text}");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_jobs() {
        struct Never;
        impl Runner for Never {
            fn run(&self, _job: Job) -> BoxFuture<'static, Result<(), RunError>> {
                Box::pin(futures::future::pending())
            }
        }
        let config = QueueConfig {
            capacity: 1,
            workers: 1,
            backoff: vec![],
        };
        let q = InProcessQueue::start(config, Arc::new(Never), Arc::new(Metrics::new()));
        // One job is taken by the worker, one waits, the next is refused.
        let mut refused = false;
        for _ in 0..3 {
            if matches!(q.enqueue(job()).await, Err(QueueError::Full(1))) {
                refused = true;
            }
            tokio::task::yield_now().await;
        }
        assert!(refused);
    }

    #[test]
    fn idempotent_call_ids_are_stable_and_scoped() {
        let a = idempotent_call_id("blog", "send", "k1");
        assert_eq!(a, idempotent_call_id("blog", "send", "k1"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, idempotent_call_id("blog", "send", "k2"));
        assert_ne!(a, idempotent_call_id("blog", "other", "k1"));
        // Length-prefixed parts: moving a boundary changes the id.
        assert_ne!(
            idempotent_call_id("ab", "c", "k"),
            idempotent_call_id("a", "bc", "k")
        );
    }
}
