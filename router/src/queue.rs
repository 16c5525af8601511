//! Background function calls: a [`Queue`] the router puts jobs on before answering 202, and
//! an in-process implementation for `kpages dev` (bounded, with retries and backoff). NATS
//! JetStream implements the same trait in clusters.
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

use crate::metrics::Metrics;

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
}

/// Why a job could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds as many jobs as it may.
    #[error("the background queue is full ({0} jobs)")]
    Full(usize),
    /// The queue is shutting down.
    #[error("the background queue is closed")]
    Closed,
}

/// Where background jobs go.
pub trait Queue: Send + Sync {
    /// Stores the job durably (for this implementation's meaning of durable); the router
    /// answers 202 only after this returns `Ok`.
    fn enqueue(&self, job: Job) -> BoxFuture<'_, Result<(), QueueError>>;
}

/// Runs a job once; `Err` with the reason makes the queue retry.
pub trait Runner: Send + Sync + 'static {
    /// Invokes the job's function.
    fn run(&self, job: Job) -> BoxFuture<'static, Result<(), String>>;
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
    let result = runner.run(job.clone()).await;
    job.attempt += 1;
    match result {
        Ok(()) => {
            metrics.job("ok");
            metrics.queue_depth.dec();
            tracing::info!(call_id = %job.call_id, function = %job.function, site = %job.site, attempt = job.attempt, "background job done");
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
        fn run(&self, _job: Job) -> BoxFuture<'static, Result<(), String>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let result = if n <= self.fail_times {
                Err(format!("failure {n}"))
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

    #[tokio::test]
    async fn a_full_queue_refuses_jobs() {
        struct Never;
        impl Runner for Never {
            fn run(&self, _job: Job) -> BoxFuture<'static, Result<(), String>> {
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
}
