//! The workers: pull jobs within the global and per-function limits, run them with progress
//! heartbeats, then ack, retry (NAK with the backoff delay), fail or dead-letter; and POST
//! the final status to the call's callback URL.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message, consumer::PullConsumer, message::PublishMessage};
use futures::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Shared;
use super::envelope::{DeadLetter, Envelope, now_ms, rfc3339_ms};
use crate::body;
use crate::jobs::queue::{CallState, CallStatus, QueueError, RunError};
use crate::serve::proxy::Call;

/// Largest body blob a worker reads (the site body limit is 6 MiB by default; a deploy may
/// raise it).
const MAX_BODY_BLOB: u64 = 256 * 1024 * 1024;

/// How long one fetch waits for messages before asking again.
const FETCH_EXPIRES: Duration = Duration::from_secs(5);

/// Pause after a failed fetch (NATS away), so the loop does not spin while the client
/// reconnects.
const FETCH_RETRY: Duration = Duration::from_millis(500);

/// Fetches as many messages as there are free global slots and hands each to a task.
pub(super) async fn pull_loop(s: Arc<Shared>, consumer: PullConsumer) {
    loop {
        let Ok(first) = s.global.clone().acquire_owned().await else {
            return;
        };
        let mut slots = vec![first];
        while slots.len() < 64 {
            match s.global.clone().try_acquire_owned() {
                Ok(p) => slots.push(p),
                Err(_) => break,
            }
        }
        let batch = consumer
            .fetch()
            .max_messages(slots.len())
            .expires(FETCH_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "fetching background jobs failed; retrying");
                drop(slots);
                tokio::time::sleep(FETCH_RETRY).await;
                continue;
            }
        };
        while let Some(msg) = batch.next().await {
            match msg {
                Ok(msg) => {
                    let Some(slot) = slots.pop() else { break };
                    tokio::spawn(deliver(s.clone(), msg, slot));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "background job batch ended");
                    tokio::time::sleep(FETCH_RETRY).await;
                    break;
                }
            }
        }
    }
}

/// One delivery of one message.
async fn deliver(s: Arc<Shared>, msg: Message, slot: OwnedSemaphorePermit) {
    let env = match Envelope::decode(&msg.payload) {
        Ok(env) => env,
        Err(e) => {
            set_aside(&s, &msg, &e.to_string()).await;
            return;
        }
    };
    let Ok(fn_slot) = function_slots(&s, &env).try_acquire_owned() else {
        // Not held: another router or a later fetch runs it when the function has room.
        // A busy NAK is not an attempt.
        drop(slot);
        let _ = msg.ack_with(AckKind::Nak(Some(s.config.busy_delay))).await;
        return;
    };
    let now = now_ms();
    let max_attempts = s.config.max_attempts();
    let mut status = match s.load_status(&env.call_id).await {
        Ok(Some(st)) => st,
        Ok(None) => env.status(CallState::Queued, max_attempts, now),
        Err(e) => {
            // Without the attempt count the budget cannot be kept; the status bucket is on
            // the same NATS, so this passes when NATS does.
            tracing::warn!(call_id = %env.call_id, error = %e, "cannot read call status; job comes back later");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return;
        }
    };
    status.max_attempts = max_attempts;
    if status.state.is_final() {
        // Finished before, but the ack was lost (router stopped between the two).
        let _ = msg.double_ack().await;
        return;
    }
    if status.attempts >= max_attempts {
        // The last attempt started but never reported (the router running it stopped).
        let reason = status
            .last_error
            .clone()
            .unwrap_or_else(|| "the last attempt did not finish (its router stopped)".into());
        dead_letter(&s, &msg, &env, &mut status, reason).await;
        return;
    }
    status.attempts += 1;
    status.state = CallState::Running;
    status.started_at = Some(rfc3339_ms(now));
    status.next_attempt_at = None;
    if let Err(e) = s.save_status(&mut status).await {
        tracing::warn!(call_id = %env.call_id, error = %e, "running without a saved status");
    }
    s.metrics.job_attempts.inc();
    s.metrics.jobs_in_flight.inc();
    let result = run_with_progress(&s, &msg, &env).await;
    s.metrics.jobs_in_flight.dec();
    drop(fn_slot);
    drop(slot);
    let now = now_ms();
    match result {
        Ok(()) => {
            status.state = CallState::Succeeded;
            status.finished_at = Some(rfc3339_ms(now));
            status.last_error = None;
            finish(&s, &msg, &env, &mut status).await;
            s.metrics.job("ok");
            tracing::info!(call_id = %env.call_id, site = %env.site, function = %env.function, attempt = status.attempts, "background job done");
        }
        Err(e) => {
            s.metrics.job_failures.inc();
            status.last_error = Some(e.message.clone());
            if !e.retry {
                status.state = CallState::Failed;
                status.finished_at = Some(rfc3339_ms(now));
                finish(&s, &msg, &env, &mut status).await;
                s.metrics.job("failed");
                tracing::error!(call_id = %env.call_id, site = %env.site, function = %env.function, attempt = status.attempts, reason = %e, "background job failed with a client error; not retried");
            } else if let Some(wait) = s.config.backoff.get(status.attempts as usize - 1) {
                status.state = CallState::Queued;
                status.next_attempt_at = Some(rfc3339_ms(now + wait.as_millis() as i64));
                save(&s, &mut status).await;
                let _ = msg.ack_with(AckKind::Nak(Some(*wait))).await;
                s.metrics.job("retry");
                tracing::warn!(call_id = %env.call_id, site = %env.site, function = %env.function, attempt = status.attempts, retry_in = ?wait, reason = %e, "background job failed; will retry");
            } else {
                dead_letter(&s, &msg, &env, &mut status, e.message).await;
            }
        }
    }
}

/// The function's own limiter, created on first use.
fn function_slots(s: &Shared, env: &Envelope) -> Arc<Semaphore> {
    let key = format!("{}\n{}", env.site, env.function);
    let mut map = s
        .per_function
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(key)
        .or_insert_with(|| Arc::new(Semaphore::new(s.config.function_concurrency)))
        .clone()
}

/// Runs the job, telling JetStream every third of `ack_wait` that it is still at it.
async fn run_with_progress(s: &Shared, msg: &Message, env: &Envelope) -> Result<(), RunError> {
    let blob = match env.body_blob() {
        Ok(None) => None,
        Ok(Some((digest, size))) => {
            match s.store.get_bytes(&digest, size.min(MAX_BODY_BLOB)).await {
                Ok(b) => Some(b),
                // The store may be back later: transient.
                Err(e) => {
                    return Err(RunError::transient(format!(
                        "reading the job's body {digest}: {e}"
                    )));
                }
            }
        }
        Err(e) => return Err(RunError::permanent(e.to_string())),
    };
    let job = env
        .to_job(blob)
        .map_err(|e| RunError::permanent(e.to_string()))?;
    let run = s.runner.run(job);
    tokio::pin!(run);
    let every = (s.config.ack_wait / 3).max(Duration::from_millis(100));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            result = &mut run => return result,
            _ = beat.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::debug!(call_id = %env.call_id, error = %e, "progress not sent");
                }
            }
        }
    }
}

async fn save(s: &Shared, status: &mut CallStatus) {
    if let Err(e) = s.save_status(status).await {
        tracing::warn!(call_id = %status.call_id, error = %e, "call status not saved");
    }
}

/// Saves a final status, acks the message (waiting for the server's confirmation, so a lost
/// ack is noticed in the logs) and sends the callback.
async fn finish(s: &Shared, msg: &Message, env: &Envelope, status: &mut CallStatus) {
    save(s, status).await;
    if let Err(e) = msg.double_ack().await {
        // The job comes back; its final status makes the next delivery only ack.
        tracing::warn!(call_id = %env.call_id, error = %e, "ack not confirmed");
    }
    callback(s, env, status);
}

/// Moves the job to the dead letters: stored there first, then acked here.
async fn dead_letter(
    s: &Shared,
    msg: &Message,
    env: &Envelope,
    status: &mut CallStatus,
    reason: String,
) {
    let now = now_ms();
    let mut dead = env.clone();
    dead.dead = Some(DeadLetter {
        attempts: status.attempts,
        last_error: reason.clone(),
        dead_at_ms: now,
    });
    let subject = s.config.dead_subject(&env.site, &env.function);
    let publish = PublishMessage::build()
        .payload(dead.encode())
        .message_id(format!("{}-dead-{}", env.call_id, status.redrives));
    let stored = async {
        s.js.send_publish(subject, publish)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = stored {
        // Not acked: the job comes back and is dead-lettered again.
        tracing::error!(call_id = %env.call_id, error = %e, "cannot store the dead letter; job comes back");
        let _ = msg
            .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
            .await;
        return;
    }
    status.state = CallState::Dead;
    status.finished_at = Some(rfc3339_ms(now));
    status.last_error = Some(reason.clone());
    status.next_attempt_at = None;
    s.metrics.job("failed");
    s.metrics.job_dead_letters.inc();
    tracing::error!(call_id = %env.call_id, site = %env.site, function = %env.function, attempts = status.attempts, %reason, "background job failed every attempt; moved to the dead letters");
    finish(s, msg, env, status).await;
}

/// A message that is not a job: kept in the dead letters (under `_invalid`) for inspection.
async fn set_aside(s: &Shared, msg: &Message, reason: &str) {
    tracing::error!(subject = %msg.subject, %reason, "background queue message is not a job; moved to the dead letters");
    let subject = format!("{}._invalid._invalid", s.config.dead_stream());
    let stored = async {
        s.js.publish(subject, msg.payload.clone())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match stored {
        Ok(_) => {
            let _ = msg.double_ack().await;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot set the message aside; it comes back");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                .await;
        }
    }
}

/// Puts a dead letter back on the jobs stream with a fresh attempt budget. The status is
/// reset first, so the worker that picks the job up does not see the spent budget; if the
/// publish then fails, the status goes back to dead.
pub(super) async fn requeue(s: &Shared, mut env: Envelope) -> Result<(), QueueError> {
    let dead = env.dead.take();
    let now = now_ms();
    let mut status = match s.load_status(&env.call_id).await {
        Ok(Some(st)) => st,
        Ok(None) => env.status(CallState::Dead, s.config.max_attempts(), now),
        Err(e) => return Err(QueueError::Unavailable(e)),
    };
    let before = status.clone();
    status.state = CallState::Queued;
    status.attempts = 0;
    status.max_attempts = s.config.max_attempts();
    status.redrives += 1;
    status.finished_at = None;
    status.next_attempt_at = None;
    s.save_status(&mut status)
        .await
        .map_err(QueueError::Unavailable)?;
    let publish = PublishMessage::build()
        .payload(env.encode())
        .message_id(format!("{}-redrive-{}", env.call_id, status.redrives));
    let stored = async {
        s.js.send_publish(s.config.job_subject(&env.site, &env.function), publish)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = stored {
        let mut restore = before;
        if restore.last_error.is_none() {
            restore.last_error = dead.map(|d| d.last_error);
        }
        save(s, &mut restore).await;
        return Err(QueueError::Unavailable(format!(
            "re-driving {}: {e}",
            env.call_id
        )));
    }
    tracing::info!(call_id = %env.call_id, site = %env.site, function = %env.function, "dead letter re-driven");
    Ok(())
}

/// POSTs the final status to the call's callback URL: once, bounded by the callback timeout,
/// in the background (a slow receiver holds no worker slot).
fn callback(s: &Shared, env: &Envelope, status: &CallStatus) {
    let Some(url) = env.callback_url.clone() else {
        return;
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return;
    };
    let upstreams = s.callbacks.clone();
    let timeout = s.config.callback_timeout;
    let body = serde_json::to_vec(status).unwrap_or_default();
    let call_id = status.call_id.clone();
    tokio::spawn(async move {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(host) = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, host);
        }
        if let Ok(v) = HeaderValue::from_str(&call_id) {
            headers.insert(kpages_crds::host::header::CALL_ID, v);
        }
        let sent = upstreams
            .call(Call {
                method: Method::POST,
                uri,
                headers,
                body: body::full(body),
                body_limit: u64::MAX,
                timeout,
            })
            .await;
        match sent {
            Ok(resp) => {
                tracing::info!(%call_id, %url, status = resp.status().as_u16(), "callback sent")
            }
            Err(e) => tracing::warn!(%call_id, %url, error = %e, "callback failed (not retried)"),
        }
    });
}
