//! The background queue on a real nats-server with JetStream: nothing accepted is lost across
//! a NATS restart or a router killed mid-job, failures retry then dead-letter (and re-drive),
//! 6 MiB bodies arrive intact, the status API follows each call, idempotency keys dedup, and a
//! queue that cannot store answers 503 with Retry-After.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns fail the test on error too

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::fake_host::FakeHost;
use common::*;
use kpages_crds::Digest;
use kpages_crds::manifest::InvocationKind;
use kpages_router::jobs::jetstream::JetStreamConfig;
use kpages_router::jobs::jetstream::envelope::Envelope;
use kpages_store::BlobStore;
use kpages_testsupport::{Nats as NatsServer, free_port};

const LONG: Duration = Duration::from_secs(60);

fn site() -> SiteBuilder {
    ["ok", "gated", "fail", "reject"]
        .into_iter()
        .fold(SiteBuilder::new(), |s, f| {
            s.function(f, &[], InvocationKind::Background)
        })
}

/// Short waits so retries, redeliveries and busy functions take milliseconds.
fn js_config(nats: &NatsServer) -> JetStreamConfig {
    let mut c = JetStreamConfig::new(nats.url());
    c.backoff = vec![Duration::from_millis(100), Duration::from_millis(100)];
    c.ack_wait = Duration::from_secs(1);
    c.busy_delay = Duration::from_millis(100);
    c.callback_hosts = vec!["127.0.0.1".into()];
    c
}

async fn submit(
    c: &TestClient,
    base: &str,
    function: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Answer {
    send(
        c,
        "POST",
        &format!("{base}/.netlify/functions/{function}"),
        headers,
        body,
    )
    .await
}

fn accepted(a: &Answer) -> String {
    assert_eq!(a.status, 202, "{}", a.text());
    a.header("x-kpages-call-id").unwrap().to_string()
}

async fn status(c: &TestClient, admin: &str, id: &str) -> (u16, serde_json::Value) {
    let a = get(c, &format!("{admin}/calls/{id}"), &[]).await;
    (a.status.as_u16(), a.json())
}

/// Polls the status API until the call is in `state`.
async fn wait_state(c: &TestClient, admin: &str, id: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + LONG;
    loop {
        let last = get(c, &format!("{admin}/calls/{id}"), &[]).await;
        if last.status == 200 && last.json()["state"] == state {
            return last.json();
        }
        assert!(
            Instant::now() < deadline,
            "call {id} never reached {state}: {} {}",
            last.status,
            last.text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn nats_js(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.unwrap())
}

async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
    js.get_stream(name)
        .await
        .unwrap()
        .cached_info()
        .state
        .messages
}

/// Waits until the workers' consumer has nothing pending, waiting or unacknowledged.
async fn wait_consumer_idle(js: &jetstream::Context) {
    let deadline = Instant::now() + LONG;
    loop {
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_stream("KPAGES_JOBS")
            .await
            .unwrap()
            .get_consumer("workers")
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "consumer still busy: {info:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_survive_a_nats_restart_and_a_down_nats_answers_503() {
    let mut nats = NatsServer::start();
    let host = FakeHost::start().await;
    let mut js = js_config(&nats);
    js.function_concurrency = 2;
    let router = Router::start_jetstream(&site(), vec![host.addr], test_config(), js).await;
    let (c, base, admin) = (client(), router.url(""), router.admin_url(""));

    let mut ids = vec![];
    for i in 0..8 {
        ids.push(accepted(
            &submit(&c, &base, "gated", &[], format!("job {i}")).await,
        ));
    }
    // Two run (held by the host), six wait in the stream.
    host.wait_for(LONG, "two gated calls", |v| v.len() >= 2)
        .await;

    tokio::task::block_in_place(|| nats.kill());
    let refused = submit(&c, &base, "gated", &[], "while NATS is down").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(refused.text().contains("unavailable"), "{}", refused.text());

    tokio::task::block_in_place(|| nats.restart());
    host.open_gate();
    for id in &ids {
        wait_state(&c, &admin, id, "succeeded").await;
        assert!(
            host.seen().iter().any(|s| s.call_id == *id && s.answered),
            "{id} never ran to the end"
        );
    }
    let js = nats_js(&nats).await;
    wait_consumer_idle(&js).await;
    assert_eq!(stream_len(&js, "KPAGES_JOBS").await, 0);
}

/// The real `kpages-router` binary serving a file store, with JetStream.
struct RouterProcess {
    child: tokio::process::Child,
    base: String,
    admin: String,
}

impl RouterProcess {
    async fn start(store: &Path, manifest: &Digest, host: SocketAddr, nats: &NatsServer) -> Self {
        let (port, admin) = (free_port(), free_port());
        let logs = std::env::var_os("KPAGES_TEST_LOGS").is_some();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kpages-router"))
            .arg("--store")
            .arg(format!("file://{}", store.display()))
            .args(["--manifest", &manifest.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--function-host", &host.to_string()])
            .args(["--nats-url", &nats.url()])
            .args(["--queue-ack-wait", "1s", "--queue-backoff", "200ms,200ms"])
            .env_remove("KPAGES_NATS_URL")
            .stdout(if logs {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut p = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
        };
        let c = client();
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("kpages-router exited with {status} before serving");
            }
            let req = http::Request::get(format!("{}/healthz", p.admin))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            if let Ok(r) = c.request(req).await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "kpages-router never served");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        p
    }

    /// SIGKILL: no graceful shutdown, no chance to NAK or ack anything.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_killed_mid_job_leaves_every_accepted_job_to_another() {
    let nats = NatsServer::start();
    let host = FakeHost::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::local(dir.path()).unwrap();
    let manifest = store.put_manifest(&site().manifest).await.unwrap();
    let c = client();

    let first = RouterProcess::start(dir.path(), &manifest, host.addr, &nats).await;
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(accepted(
            &submit(&c, &first.base, "gated", &[], format!("job {i}")).await,
        ));
    }
    // Four run (the default per-function limit) and are held by the host: mid-job.
    host.wait_for(LONG, "four gated calls", |v| v.len() >= 4)
        .await;
    first.kill().await;
    host.open_gate();

    let second = RouterProcess::start(dir.path(), &manifest, host.addr, &nats).await;
    let mut rerun = 0;
    for id in &ids {
        let st = wait_state(&c, &second.admin, id, "succeeded").await;
        // The four cut off mid-run count that run as an attempt and ran again.
        if st["attempts"].as_u64().unwrap() >= 2 {
            rerun += 1;
            assert!(host.runs(id) >= 2, "{st}");
        }
        assert!(
            host.seen().iter().any(|s| s.call_id == *id && s.answered),
            "{id} never ran to the end"
        );
    }
    assert_eq!(rerun, 4, "the jobs running when the router died run again");
    let js = nats_js(&nats).await;
    wait_consumer_idle(&js).await;
    second.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_always_fails_is_dead_lettered_then_re_driven() {
    let nats = NatsServer::start();
    let host = FakeHost::start().await;
    let mut callback = Callback::start().await;
    let router =
        Router::start_jetstream(&site(), vec![host.addr], test_config(), js_config(&nats)).await;
    let (c, base, admin) = (client(), router.url(""), router.admin_url(""));

    let id = accepted(
        &submit(
            &c,
            &base,
            "fail",
            &[("x-callback-url", &callback.url)],
            r#"{"to":"ann"}"#,
        )
        .await,
    );
    let dead = wait_state(&c, &admin, &id, "dead").await;
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert_eq!(dead["maxAttempts"], 3, "{dead}");
    assert!(
        dead["lastError"].as_str().unwrap().contains("500"),
        "{dead}"
    );
    assert!(dead["finishedAt"].is_string(), "{dead}");
    assert_eq!(host.runs(&id), 3, "one run per attempt");
    assert!(
        host.seen()
            .iter()
            .all(|s| s.invocation == "background" && s.function == "fail")
    );
    let (_, body) = callback.next().await;
    let outcome: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(outcome["callId"], id.as_str());
    assert_eq!(outcome["state"], "dead");

    let js = nats_js(&nats).await;
    assert_eq!(stream_len(&js, "KPAGES_JOBS_DEAD").await, 1);
    let letter = js
        .get_stream("KPAGES_JOBS_DEAD")
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    assert_eq!(letter.subject.as_str(), "KPAGES_JOBS_DEAD.test-site.fail");
    let letter = Envelope::decode(&letter.payload).unwrap();
    assert_eq!(letter.call_id, id);
    assert_eq!(letter.dead.as_ref().unwrap().attempts, 3);
    wait_consumer_idle(&js).await;

    let metrics = get(&c, &router.admin_url("/metrics"), &[]).await.text();
    for line in [
        "kpages_router_background_attempts_total 3",
        "kpages_router_background_failures_total 3",
        "kpages_router_background_dead_lettered_total 1",
        "kpages_router_enqueue_duration_seconds_count 1",
        r#"kpages_router_background_jobs_total{outcome="retry"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }

    // Fixed function, re-driven letter: it runs again with a fresh budget and succeeds.
    host.stop_failing();
    let nothing = send(
        &c,
        "POST",
        &router.admin_url("/queue/dead-letters/redrive?function=other"),
        &[],
        "",
    )
    .await;
    assert_eq!(nothing.json()["redriven"], 0, "{}", nothing.text());
    let redrive = send(
        &c,
        "POST",
        &router.admin_url("/queue/dead-letters/redrive?function=fail"),
        &[],
        "",
    )
    .await;
    assert_eq!(redrive.status, 200, "{}", redrive.text());
    assert_eq!(redrive.json()["redriven"], 1, "{}", redrive.text());
    let done = wait_state(&c, &admin, &id, "succeeded").await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["redrives"], 1, "{done}");
    assert_eq!(host.runs(&id), 4);
    assert_eq!(stream_len(&js, "KPAGES_JOBS_DEAD").await, 0);
    let (_, body) = callback.next().await;
    let outcome: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(outcome["state"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_api_follows_a_call_through_each_state() {
    let nats = NatsServer::start();
    let host = FakeHost::start().await;
    let mut js = js_config(&nats);
    js.function_concurrency = 1;
    js.workers = 2;
    let router = Router::start_jetstream(&site(), vec![host.addr], test_config(), js).await;
    let (c, base, admin) = (client(), router.url(""), router.admin_url(""));

    let first = accepted(&submit(&c, &base, "gated", &[], "1").await);
    host.wait_for(LONG, "the first gated call", |v| v.len() == 1)
        .await;
    let running = wait_state(&c, &admin, &first, "running").await;
    assert_eq!(running["attempts"], 1, "{running}");
    assert!(running["startedAt"].is_string(), "{running}");
    assert_eq!(running["function"], "gated");
    assert_eq!(running["site"], "test-site");

    // The function's one slot is taken: the second call waits, and its status says so.
    let second = accepted(&submit(&c, &base, "gated", &[], "2").await);
    let (code, queued) = status(&c, &admin, &second).await;
    assert_eq!(code, 200, "{queued}");
    assert_eq!(queued["state"], "queued", "{queued}");
    assert_eq!(queued["attempts"], 0, "{queued}");
    assert!(queued["acceptedAt"].is_string(), "{queued}");

    // A backlog of the busy function does not starve another one: its job runs while the
    // gated ones still wait (two global slots, one per function).
    let mut backlog = vec![];
    for i in 0..5 {
        backlog.push(accepted(
            &submit(&c, &base, "gated", &[], format!("more {i}")).await,
        ));
    }
    let other = accepted(&submit(&c, &base, "ok", &[], "meanwhile").await);
    wait_state(&c, &admin, &other, "succeeded").await;
    let (_, still) = status(&c, &admin, &second).await;
    assert_eq!(still["state"], "queued", "{still}");
    assert_eq!(
        host.seen().iter().filter(|s| s.function == "gated").count(),
        1
    );

    host.open_gate();
    for id in &backlog {
        wait_state(&c, &admin, id, "succeeded").await;
    }
    for id in [&first, &second] {
        let done = wait_state(&c, &admin, id, "succeeded").await;
        assert_eq!(done["attempts"], 1, "{done}");
        assert!(done["finishedAt"].is_string(), "{done}");
    }

    // A client error is final after one attempt: no retry is scheduled.
    let rejected = accepted(&submit(&c, &base, "reject", &[], "bad").await);
    let failed = wait_state(&c, &admin, &rejected, "failed").await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["lastError"].as_str().unwrap().contains("400"),
        "{failed}"
    );
    wait_consumer_idle(&nats_js(&nats).await).await;
    assert_eq!(host.runs(&rejected), 1);

    let (code, _) = status(&c, &admin, "0123456789abcdef0123456789abcdef").await;
    assert_eq!(code, 404);
    let (code, _) = status(&c, &admin, "not.a.call").await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_call_and_runs_it_once() {
    let nats = NatsServer::start();
    let host = FakeHost::start().await;
    let router =
        Router::start_jetstream(&site(), vec![host.addr], test_config(), js_config(&nats)).await;
    let (c, base, admin) = (client(), router.url(""), router.admin_url(""));

    let key = [("idempotency-key", "order-42")];
    let id = accepted(&submit(&c, &base, "ok", &key, "a").await);
    let again = accepted(&submit(&c, &base, "ok", &key, "a").await);
    assert_eq!(again, id);
    wait_state(&c, &admin, &id, "succeeded").await;
    // After the call finished, the key still names the same call and nothing runs again.
    let later = accepted(&submit(&c, &base, "ok", &key, "a").await);
    assert_eq!(later, id);
    let other = accepted(&submit(&c, &base, "ok", &[("idempotency-key", "order-43")], "b").await);
    assert_ne!(other, id);
    wait_state(&c, &admin, &other, "succeeded").await;
    let js = nats_js(&nats).await;
    wait_consumer_idle(&js).await;
    assert_eq!(host.runs(&id), 1, "{:#?}", host.seen());
    assert_eq!(host.runs(&other), 1);
    // Without a key every submission is its own call.
    let x = accepted(&submit(&c, &base, "ok", &[], "c").await);
    let y = accepted(&submit(&c, &base, "ok", &[], "c").await);
    assert_ne!(x, y);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_6_mib_body_travels_as_a_blob_and_arrives_intact() {
    let nats = NatsServer::start();
    let host = FakeHost::start().await;
    let site = site();
    let router =
        Router::start_jetstream(&site, vec![host.addr], test_config(), js_config(&nats)).await;
    let (c, base, admin) = (client(), router.url(""), router.admin_url(""));

    let big: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let small = b"{\"small\":true}".to_vec();
    let big_id = accepted(&submit(&c, &base, "ok", &[], big.clone()).await);
    let small_id = accepted(&submit(&c, &base, "ok", &[], small.clone()).await);
    for id in [&big_id, &small_id] {
        wait_state(&c, &admin, id, "succeeded").await;
    }
    let seen = host.seen();
    for (id, body) in [(&big_id, &big), (&small_id, &small)] {
        let s = seen.iter().find(|s| s.call_id == *id).unwrap();
        assert_eq!(s.body_len, body.len());
        assert_eq!(
            s.body_sha256,
            Digest::of(body).to_string().trim_start_matches("sha256:")
        );
    }
    // The large body went through the object store; the small one inside the message.
    assert!(site.store.contains(&Digest::of(&big)).await.unwrap());
    assert!(!site.store.contains(&Digest::of(&small)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_to_hosts_not_allowed_are_refused_up_front() {
    let nats = NatsServer::start();
    let host = FakeHost::start().await;
    let router =
        Router::start_jetstream(&site(), vec![host.addr], test_config(), js_config(&nats)).await;
    let (c, base) = (client(), router.url(""));
    for url in [
        "http://10.0.0.1/hook",
        "https://127.0.0.1/hook",
        "not a url",
    ] {
        let a = submit(&c, &base, "ok", &[("x-callback-url", url)], "").await;
        assert_eq!(a.status, 400, "{url}: {}", a.text());
        assert!(a.text().contains("X-Callback-Url"), "{}", a.text());
    }
    assert!(host.seen().is_empty());
    assert_eq!(stream_len(&nats_js(&nats).await, "KPAGES_JOBS").await, 0);
}
