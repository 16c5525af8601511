//! The background queue on NATS JetStream: jobs are accepted (202) only after JetStream has
//! stored them, run by workers in every router replica, retried with backoff, dead-lettered
//! after the last attempt and re-driven on request; each call's status lives in a KV bucket.
//!
//! ```text
//!  handler ─ enqueue ─► [body > 64 KiB: put blob sha256:… in the object store]
//!                      ─► publish <S>.<site>.<function>  (Nats-Msg-Id = call id) ─► ack ─► 202
//!                      ─► KV <S>_CALLS[call id] = queued
//!
//!  stream <S>            work queue, file storage, R replicas, dedup window
//!    └─ durable pull consumer "workers", shared by every router replica
//!         └─ fetch n (n = free global slots) ─► per-function slot? ─ no ─► NAK(busy delay)
//!                                                                 └ yes ─► run ─► host
//!              while running: +WPI (progress) every ack_wait/3
//!              200 ─► KV succeeded, ack        4xx ─► KV failed, ack (not retried)
//!              else, attempts left ─► KV queued + nextAttemptAt, NAK(backoff[i])
//!              else ─► publish <S>_DEAD.<site>.<function>, KV dead, ack
//!  stream <S>_DEAD       limits retention, file storage: redrive = republish to <S>, delete
//!  KV     <S>_CALLS      call id ─► CallStatus JSON (history 1, TTL --queue-status-ttl)
//! ```
//!
//! Design choices:
//! - **Workers live in the router process.** A job names a deploy and a function; only the
//!   router has the live route table that maps them to ready function endpoints (and the
//!   limits from the manifest), so a separate worker deployment would have to rebuild the same
//!   index from the same watches. Every replica works: the single durable pull consumer
//!   balances messages across them, and a replica that dies mid-job stops sending progress,
//!   so JetStream redelivers the job to another after `ack_wait`.
//! - **Pull only what can run.** A worker fetches at most as many messages as it has free
//!   global slots (`--queue-workers`), and each function has its own limit
//!   (`--queue-function-concurrency`), so one busy function cannot take every slot. A message
//!   for a function at its limit is not held: it is NAKed with a short delay and comes back
//!   later, and does not count as an attempt (attempts are counted in the status record, not
//!   from JetStream's delivery count, which busy NAKs and crashes inflate). Busy NAKs keep
//!   messages pending, so the consumer has no `max_ack_pending` limit (it would let one
//!   function's backlog block the others again).
//! - **Per-function subjects** `<S>.<site>.<function>`: `nats stream subjects <S>` shows the
//!   backlog per function, and a function's jobs can be purged or its dead letters re-driven
//!   alone.
//! - **Blob-referenced bodies.** NATS's default max payload is 1 MiB; function bodies may be
//!   6 MiB. Bodies over 64 KiB (or that would not fit the server's max payload) are stored
//!   first as content-addressed blobs in the router's object store, and the message carries
//!   the digest; the worker reads and verifies the blob. Body blobs share the store's
//!   `blobs/sha256/` namespace with site files, so nothing deletes them (a body may equal a
//!   site file).
//! - **Idempotency.** The call id of a submission with an `Idempotency-Key` derives from site,
//!   function and key; it is the message's `Nats-Msg-Id`, so JetStream drops a re-submission
//!   inside the dedup window, and the status record (kept for the status TTL) catches later
//!   ones. Either way the client gets the same call id back.
//! - **Callbacks** (`X-Callback-Url`) are POSTed the final status once, with a timeout and no
//!   retries, and only to hosts listed in `--queue-callback-hosts`: otherwise any client could
//!   make the router POST to internal addresses (its own admin port among them).

mod config;
pub mod envelope;
mod worker;

pub use config::{Backoff, JetStreamConfig, NatsAuth, QueueArgs, parse_backoff, parse_duration};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, kv, message::PublishMessage, stream};
use kpages_store::BlobStore;
use tokio::sync::Semaphore;

use crate::jobs::queue::{
    BoxFuture, CallState, CallStatus, Job, Queue, QueueError, RedriveFilter, Runner,
};
use crate::observe::metrics::Metrics;
use crate::serve::proxy::Upstreams;
use envelope::{BodyRef, Envelope, now_ms, rfc3339_ms, token, valid_call_id};

/// Bodies up to this size travel in the message; larger ones as blobs.
pub const DEFAULT_INLINE_BODY_MAX: usize = 64 * 1024;

/// The durable consumer every router replica pulls from.
const CONSUMER: &str = "workers";

/// How often the stream sizes are sampled into the depth and dead-letter gauges.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The queue cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    /// NATS did not answer.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A credential is malformed.
    #[error("NATS_CREDS: {0}")]
    Credentials(String),
    /// A stream, consumer or bucket cannot be created or updated.
    #[error("setting up JetStream {what}: {reason} (is JetStream enabled on the server?)")]
    Setup {
        /// Which.
        what: String,
        /// Why.
        reason: String,
    },
}

/// A NATS connection with the queue's streams, consumer and bucket in place; [`Connected::start`]
/// starts the workers.
pub struct Connected {
    client: async_nats::Client,
    js: jetstream::Context,
    calls: kv::Store,
    consumer: consumer::PullConsumer,
    config: JetStreamConfig,
}

/// Connects and creates (or updates) the jobs stream, the dead-letter stream, the status
/// bucket and the workers' consumer.
pub async fn connect(config: JetStreamConfig) -> Result<Connected, JetStreamError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name("kpages-router")
        .connection_timeout(Duration::from_secs(5));
    let auth = &config.auth;
    if let Some(creds) = &auth.creds {
        opts = opts
            .credentials(creds)
            .map_err(|e| JetStreamError::Credentials(e.to_string()))?;
    } else if let Some(token) = &auth.token {
        opts = opts.token(token.clone());
    } else if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
        opts = opts.user_and_password(user.clone(), password.clone());
    }
    let client = opts
        .connect(config.url.as_str())
        .await
        .map_err(|e| JetStreamError::Connect {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(config.publish_timeout);
    let setup = |what: &str, e: &dyn std::fmt::Display| JetStreamError::Setup {
        what: what.to_string(),
        reason: e.to_string(),
    };
    let jobs = js
        .create_or_update_stream(stream::Config {
            name: config.stream.clone(),
            description: Some("kpages background function jobs".into()),
            subjects: vec![format!("{}.>", config.stream)],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            duplicate_window: config.dedup_window,
            ..Default::default()
        })
        .await
        .map_err(|e| setup(&format!("stream {}", config.stream), &e))?;
    tracing::debug!(stream = %jobs.config.name, "jobs stream ready");
    js.create_or_update_stream(stream::Config {
        name: config.dead_stream(),
        description: Some("kpages background jobs that failed every attempt".into()),
        subjects: vec![format!("{}.>", config.dead_stream())],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: config.dedup_window,
        ..Default::default()
    })
    .await
    .map_err(|e| setup(&format!("stream {}", config.dead_stream()), &e))?;
    let calls = js
        .create_or_update_key_value(kv::Config {
            bucket: config.calls_bucket(),
            description: "kpages background call statuses".into(),
            history: 1,
            max_age: config.status_ttl,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| setup(&format!("key-value bucket {}", config.calls_bucket()), &e))?;
    let consumer = js
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                description: Some("kpages router workers".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_deliver: -1,
                max_ack_pending: -1,
                filter_subject: format!("{}.>", config.stream),
                ..Default::default()
            },
            config.stream.as_str(),
        )
        .await
        .map_err(|e| setup(&format!("consumer {CONSUMER}"), &e))?;
    tracing::info!(url = %config.url, stream = %config.stream, replicas = config.replicas, "background queue on NATS JetStream");
    Ok(Connected {
        client,
        js,
        calls,
        consumer,
        config,
    })
}

impl Connected {
    /// Starts the workers and the gauge sampler; they stop when the queue is dropped.
    pub fn start(
        self,
        runner: Arc<dyn Runner>,
        metrics: Arc<Metrics>,
        store: BlobStore,
    ) -> Arc<JetStreamQueue> {
        let shared = Arc::new(Shared {
            client: self.client,
            js: self.js,
            calls: self.calls,
            global: Arc::new(Semaphore::new(self.config.workers)),
            config: self.config,
            runner,
            metrics,
            store,
            callbacks: Upstreams::new(),
            per_function: Mutex::new(HashMap::new()),
        });
        let tasks = vec![
            tokio::spawn(worker::pull_loop(shared.clone(), self.consumer)),
            tokio::spawn(sample_gauges(shared.clone())),
        ];
        Arc::new(JetStreamQueue { shared, tasks })
    }
}

/// What the queue, its workers and its admin operations share.
pub(crate) struct Shared {
    client: async_nats::Client,
    js: jetstream::Context,
    calls: kv::Store,
    config: JetStreamConfig,
    runner: Arc<dyn Runner>,
    metrics: Arc<Metrics>,
    store: BlobStore,
    callbacks: Upstreams,
    global: Arc<Semaphore>,
    per_function: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Shared {
    fn connected(&self) -> Result<(), QueueError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => Err(QueueError::Unavailable(format!(
                "NATS is not connected ({state})"
            ))),
        }
    }

    async fn load_status(&self, call_id: &str) -> Result<Option<CallStatus>, String> {
        match self.calls.get(call_id).await {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("status of {call_id} is not readable: {e}")),
            Err(e) => Err(format!("reading the status of {call_id}: {e}")),
        }
    }

    async fn save_status(&self, status: &mut CallStatus) -> Result<(), String> {
        status.updated_at = rfc3339_ms(now_ms());
        let bytes = serde_json::to_vec(status).unwrap_or_default();
        self.calls
            .put(&status.call_id, bytes.into())
            .await
            .map(drop)
            .map_err(|e| format!("saving the status of {}: {e}", status.call_id))
    }
}

/// The JetStream [`Queue`].
pub struct JetStreamQueue {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for JetStreamQueue {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl JetStreamQueue {
    async fn put(&self, job: Job) -> Result<(), QueueError> {
        let s = &self.shared;
        let config = &s.config;
        if let Some(url) = &job.callback_url {
            check_callback(url, &config.callback_hosts)?;
        }
        s.connected()?;
        if job.idempotency_key.is_some()
            && let Ok(Some(_)) = s.load_status(&job.call_id).await
        {
            // Accepted before, outside JetStream's dedup window but within the status TTL.
            tracing::info!(call_id = %job.call_id, "idempotent re-submission of a known call");
            return Ok(());
        }
        let accepted_at = now_ms();
        // Inline when small and the whole message (headers included) fits the server's max
        // payload, with room for the NATS headers; else the body goes to the object store.
        let max_payload = s.client.server_info().max_payload.saturating_sub(1024);
        let inline = (job.body.len() <= config.inline_body_max)
            .then(|| Envelope::new(&job, Envelope::inline(&job.body), accepted_at).encode())
            .filter(|payload| payload.len() <= max_payload);
        let payload = match inline {
            Some(payload) => payload,
            None => {
                let size = job.body.len() as u64;
                let digest = s.store.put_bytes(job.body.clone()).await.map_err(|e| {
                    QueueError::Unavailable(format!(
                        "storing the job's body in the object store: {e}"
                    ))
                })?;
                let body = BodyRef::Blob {
                    digest: digest.to_string(),
                    size,
                };
                Envelope::new(&job, body, accepted_at).encode()
            }
        };
        let subject = config.job_subject(&job.site, &job.function);
        let publish = PublishMessage::build()
            .payload(payload)
            .message_id(&job.call_id);
        let ack = tokio::time::timeout(config.publish_timeout, async {
            s.js.send_publish(subject, publish)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| {
            QueueError::Unavailable(format!(
                "JetStream did not acknowledge the job within {:?}",
                config.publish_timeout
            ))
        })?
        .map_err(|e| QueueError::Unavailable(format!("publishing the job: {e}")))?;
        if ack.duplicate {
            tracing::info!(call_id = %job.call_id, "idempotent re-submission dropped by JetStream");
            return Ok(());
        }
        let status = Envelope::new(&job, Envelope::inline(b""), accepted_at).status(
            CallState::Queued,
            config.max_attempts(),
            accepted_at,
        );
        let bytes = serde_json::to_vec(&status).unwrap_or_default();
        // `create`: a worker may already have written `running`.
        if let Err(e) = s.calls.create(&job.call_id, bytes.into()).await
            && e.kind() != kv::CreateErrorKind::AlreadyExists
        {
            // The job is stored; only its status is late. The worker writes it.
            tracing::warn!(call_id = %job.call_id, error = %e, "job queued but its status was not saved");
        }
        Ok(())
    }

    async fn redrive_all(&self, filter: RedriveFilter) -> Result<u64, QueueError> {
        let s = &self.shared;
        s.connected()?;
        let unavailable =
            |what: &str, e: &dyn std::fmt::Display| QueueError::Unavailable(format!("{what}: {e}"));
        let dead_name = s.config.dead_stream();
        let dead =
            s.js.get_stream(&dead_name)
                .await
                .map_err(|e| unavailable("opening the dead letters", &e))?;
        let filter_subject = match (&filter.site, &filter.function) {
            (Some(site), Some(f)) => s.config.dead_subject(site, f),
            (Some(site), None) => format!("{dead_name}.{}.>", token(site)),
            (None, Some(f)) => format!("{dead_name}.*.{}", token(f)),
            (None, None) => format!("{dead_name}.>"),
        };
        // An ephemeral consumer that reads the dead letters once; messages are removed by
        // sequence after they are back on the jobs stream.
        let reader: consumer::PullConsumer = dead
            .create_consumer(consumer::pull::Config {
                filter_subject,
                ack_policy: consumer::AckPolicy::Explicit,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("reading the dead letters", &e))?;
        let mut redriven = 0;
        loop {
            let mut batch = reader
                .fetch()
                .max_messages(100)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .map_err(|e| unavailable("reading the dead letters", &e))?;
            let mut seen = 0;
            while let Some(msg) = futures::StreamExt::next(&mut batch).await {
                let msg = msg.map_err(|e| unavailable("reading the dead letters", &e))?;
                seen += 1;
                let seq = msg
                    .info()
                    .map_err(|e| unavailable("reading the dead letters", &e))?
                    .stream_sequence;
                let env = match Envelope::decode(&msg.payload) {
                    Ok(env) => env,
                    Err(e) => {
                        tracing::warn!(seq, error = %e, "dead letter is not a job; left in place");
                        let _ = msg.ack().await;
                        continue;
                    }
                };
                let wanted = filter.site.as_ref().is_none_or(|x| *x == env.site)
                    && filter.function.as_ref().is_none_or(|x| *x == env.function)
                    && filter.call_id.as_ref().is_none_or(|x| *x == env.call_id);
                if wanted {
                    worker::requeue(s, env).await?;
                    dead.delete_message(seq)
                        .await
                        .map_err(|e| unavailable("removing a re-driven dead letter", &e))?;
                    redriven += 1;
                }
                let _ = msg.ack().await;
            }
            if seen == 0 {
                break;
            }
        }
        let name = reader.cached_info().name.clone();
        let _ = dead.delete_consumer(&name).await;
        Ok(redriven)
    }
}

impl Queue for JetStreamQueue {
    fn enqueue(&self, job: Job) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.put(job).await;
            self.shared
                .metrics
                .enqueue_latency
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }

    fn status<'a>(
        &'a self,
        call_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallStatus>, QueueError>> {
        Box::pin(async move {
            if !valid_call_id(call_id) {
                return Ok(None);
            }
            self.shared
                .load_status(call_id)
                .await
                .map_err(QueueError::Unavailable)
        })
    }

    fn redrive(&self, filter: RedriveFilter) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(self.redrive_all(filter))
    }
}

/// Refuses a callback URL the router will not call.
fn check_callback(url: &str, allowed: &[String]) -> Result<(), QueueError> {
    let reject = |why: String| QueueError::Rejected(format!("X-Callback-Url: {why}"));
    let parsed = url::Url::parse(url)
        .map_err(|e| reject(format!("{url:?} is not an absolute URL ({e})")))?;
    if parsed.scheme() != "http" {
        return Err(reject(format!(
            "{url:?}: only http:// callbacks are supported (the router has no TLS client yet)"
        )));
    }
    let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
    if allowed.is_empty() {
        return Err(reject(
            "callbacks are off on this router (allow hosts with --queue-callback-hosts)".into(),
        ));
    }
    if !allowed.iter().any(|h| h == "*" || *h == host) {
        return Err(reject(format!(
            "host {host:?} is not one of the allowed callback hosts ({})",
            allowed.join(", ")
        )));
    }
    Ok(())
}

/// Samples the jobs and dead-letter streams' sizes into the depth gauges (the whole queue's,
/// across replicas).
async fn sample_gauges(s: Arc<Shared>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if s.connected().is_err() {
            continue;
        }
        if let Ok(st) = s.js.get_stream(&s.config.stream).await {
            s.metrics
                .queue_depth
                .set(i64::try_from(st.cached_info().state.messages).unwrap_or(i64::MAX));
        }
        if let Ok(st) = s.js.get_stream(s.config.dead_stream()).await {
            s.metrics
                .dead_letters
                .set(i64::try_from(st.cached_info().state.messages).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_only_to_allowed_http_hosts() {
        let allowed = vec!["hooks.test".to_string()];
        assert!(check_callback("http://hooks.test/done", &allowed).is_ok());
        assert!(check_callback("http://HOOKS.test:81/x", &allowed).is_ok());
        for (url, hosts) in [
            ("http://other.test/", allowed.clone()),
            ("https://hooks.test/", allowed.clone()),
            ("/relative", allowed.clone()),
            ("http://hooks.test/", vec![]),
        ] {
            assert!(
                matches!(check_callback(url, &hosts), Err(QueueError::Rejected(_))),
                "{url} {hosts:?}"
            );
        }
        assert!(check_callback("http://127.0.0.1:9/", &["*".to_string()]).is_ok());
    }
}
