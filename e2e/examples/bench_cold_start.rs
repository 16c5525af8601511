//! bench/run row 6: the first response from a deploy scaled to zero, against warm responses of
//! the same function, through the helm-installed router on the testbed.
//!
//! ```text
//!  host: MinIO 127.0.0.1:p ◄── Bridge ── operator, router, function pods (10.200.0.1:p')
//!  curl (inside the testbed's network namespace) ──► router Service ClusterIP:80 ──► pod IP
//!  this program ── watches ──► the deploy's Deployment and function pods (a timestamp per step)
//! ```
//!
//! One Site (`scaleToZeroAfterSeconds: 30`, the CRD's minimum) with one Netlify v2 hello-world
//! function, deployed with `kpages deploy --prod`. Warm: `BENCH_WARM_REQUESTS` (50) sequential
//! GETs after a few unrecorded ones. Cold, `BENCH_COLD_STARTS` (8) times: wait until the
//! operator has scaled the Deployment to zero and no function pod is left (not even a
//! terminating one), then one GET, timed by curl from sending it to the last byte. Every
//! request is its own curl process and connection, warm or cold, so both pay the same
//! connection set-up. Each measurement is one JSON line on stdout; progress goes to stderr.
//! Anything that does not happen in time ends the program with a panic (non-zero exit).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, Secret, Service};
use kpages_crds::Site;
use kpages_crds::names;
use kpages_e2e::bench::env_number;
use kpages_e2e::platform::{Cli, helm_install};
use kpages_e2e::services::{Bridge, NODE_IP};
use kpages_e2e::{Cluster, TestNamespace, wait};
use kpages_testsupport::{MinIo, eventually_async};
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

const SITE: &str = "cold";
const PREVIEW: &str = "preview.kpages.localhost";
/// The CRD's minimum: the shortest a cycle can be.
const SCALE_TO_ZERO_AFTER_SECONDS: u32 = 30;
/// The router holds a call this long while a pod starts (chart value).
const COLD_START_TIMEOUT_SECONDS: u32 = 120;
const HELLO: &str = "hello from kpages";

/// A point in the wake-up of a deploy, as this program's watches saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The Deployment's spec.replicas went from 0 to more (the operator acted on the router's note).
    ScaledUp,
    /// A function pod exists.
    PodCreated,
    /// The scheduler bound it to the node.
    PodScheduled,
    /// The kubelet reports its init container (`fetch-bundles`) running (or done).
    InitStarted,
    /// Its init container finished.
    PodInitialized,
    /// The kubelet reports the Node host container running.
    HostStarted,
    /// Its readiness probe passed.
    PodReady,
}

impl Step {
    const ALL: [Step; 7] = [
        Step::ScaledUp,
        Step::PodCreated,
        Step::PodScheduled,
        Step::InitStarted,
        Step::PodInitialized,
        Step::HostStarted,
        Step::PodReady,
    ];

    fn key(self) -> &'static str {
        match self {
            Step::ScaledUp => "scaled_up",
            Step::PodCreated => "pod_created",
            Step::PodScheduled => "pod_scheduled",
            Step::InitStarted => "init_started",
            Step::PodInitialized => "pod_initialized",
            Step::HostStarted => "host_started",
            Step::PodReady => "pod_ready",
        }
    }
}

/// Every step seen, with when this program received the watch event.
type Timeline = Arc<Mutex<Vec<(Instant, Step)>>>;

fn note(timeline: &Timeline, step: Step) {
    timeline
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Instant::now(), step));
}

/// Watches the deploy's Deployment and function pods, noting each step once per pod.
fn watch_steps(ns: &TestNamespace, deploy: &str) -> (Timeline, Vec<tokio::task::JoinHandle<()>>) {
    let timeline: Timeline = Arc::default();
    let workload = names::workload_name(deploy);
    let deployments = watcher(
        ns.api::<Deployment>(),
        watcher::Config::default().fields(&format!("metadata.name={workload}")),
    );
    let t = timeline.clone();
    let deployment_task = tokio::spawn(async move {
        let mut replicas: Option<i32> = None;
        let mut stream = std::pin::pin!(deployments);
        while let Some(event) = stream.next().await {
            let Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = event else {
                continue;
            };
            let now = d.spec.as_ref().and_then(|s| s.replicas);
            if replicas == Some(0) && now.is_some_and(|r| r > 0) {
                note(&t, Step::ScaledUp);
            }
            replicas = now;
        }
    });
    let selector = format!(
        "{}={},{}={}",
        names::DEPLOY_LABEL,
        names::label_value(deploy),
        names::COMPONENT_LABEL,
        names::FUNCTION_COMPONENT
    );
    let pods = watcher(
        ns.api::<Pod>(),
        watcher::Config::default().labels(&selector),
    );
    let t = timeline.clone();
    let pod_task = tokio::spawn(async move {
        let mut seen: std::collections::HashMap<String, Vec<Step>> = Default::default();
        let mut stream = std::pin::pin!(pods);
        while let Some(event) = stream.next().await {
            let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = event else {
                continue;
            };
            let done = seen.entry(p.uid().unwrap_or_default()).or_default();
            let conditions = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let holds = |type_: &str| {
                conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == "True")
            };
            let started = |statuses: Option<&Vec<ContainerStatus>>| {
                statuses.is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.state
                            .as_ref()
                            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
                    })
                })
            };
            let status = p.status.as_ref();
            let steps = [
                (Step::PodCreated, true),
                (Step::PodScheduled, holds("PodScheduled")),
                (
                    Step::InitStarted,
                    started(status.and_then(|s| s.init_container_statuses.as_ref())),
                ),
                (Step::PodInitialized, holds("Initialized")),
                (
                    Step::HostStarted,
                    started(status.and_then(|s| s.container_statuses.as_ref())),
                ),
                (Step::PodReady, holds("Ready")),
            ];
            for (step, now) in steps {
                if now && !done.contains(&step) {
                    done.push(step);
                    note(&t, step);
                }
            }
        }
    });
    (timeline, vec![deployment_task, pod_task])
}

/// Seconds from `start` to the first `step` seen at or after it.
fn step_after(timeline: &Timeline, start: Instant, step: Step) -> Option<f64> {
    timeline
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(at, s)| *s == step && *at >= start)
        .map(|(at, _)| at.duration_since(start).as_secs_f64())
}

/// One GET as curl inside the testbed's namespace timed it.
struct Timed {
    status: u16,
    body: String,
    /// When the request started (curl's clock, mapped onto ours).
    sent: Instant,
    connect: f64,
    first_byte: f64,
    total: f64,
}

/// `curl http://<router>/api/hello` with the site's host, from inside the testbed's network
/// namespace (no forwarder between the client and the router Service).
async fn get(cluster: &Cluster, router: &str, host: &str) -> Timed {
    let url = format!("http://{router}/api/hello");
    let out = cluster
        .netns(&[
            "curl",
            "-sS",
            "--max-time",
            &(COLD_START_TIMEOUT_SECONDS + 30).to_string(),
            "-H",
            &format!("host: {host}"),
            "-w",
            "\n%{http_code} %{time_connect} %{time_starttransfer} %{time_total}",
            &url,
        ])
        .await
        .unwrap_or_else(|e| panic!("curl {url}: {e}"));
    let done = Instant::now();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl {url} (host {host}) failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, stats) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let fields: Vec<f64> = stats
        .split_whitespace()
        .map(|f| {
            f.parse()
                .unwrap_or_else(|_| panic!("curl printed {stats:?}"))
        })
        .collect();
    let [status, connect, first_byte, total] = fields[..] else {
        panic!("curl printed {stats:?}");
    };
    Timed {
        status: status as u16,
        body: body.to_string(),
        sent: done
            .checked_sub(Duration::from_secs_f64(total))
            .unwrap_or(done),
        connect,
        first_byte,
        total,
    }
}

fn check(r: &Timed, what: &str) {
    assert!(
        r.status == 200 && r.body.trim() == HELLO,
        "{what}: expected 200 {HELLO:?}, got {} {:?}",
        r.status,
        r.body
    );
}

/// A Netlify v2 site with one hello-world function on `/api/hello`.
fn hello_site(dir: &std::path::Path) {
    let functions = dir.join("netlify/functions");
    std::fs::create_dir_all(&functions).expect("site dir");
    std::fs::create_dir_all(dir.join("public")).expect("site dir");
    std::fs::write(
        dir.join("netlify.toml"),
        "[build]\n  publish = \"public\"\n[functions]\n  directory = \"netlify/functions\"\n",
    )
    .expect("netlify.toml");
    std::fs::write(
        dir.join("public/index.html"),
        "<!doctype html><title>cold</title>\n",
    )
    .expect("index.html");
    std::fs::write(
        functions.join("hello.mjs"),
        format!(
            "export default async () => new Response('{HELLO}\\n');\nexport const config = {{ path: '/api/hello' }};\n"
        ),
    )
    .expect("hello.mjs");
}

fn quantiles(label: &str, xs: &[f64]) -> String {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize] * 1000.0;
    format!(
        "{label}: n={} p50 {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms",
        v.len(),
        q(0.5),
        q(0.95),
        v[0] * 1000.0,
        v[v.len() - 1] * 1000.0
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cold_starts = env_number("BENCH_COLD_STARTS", 8).max(1);
    let warm_requests = env_number("BENCH_WARM_REQUESTS", 50).max(1);
    let cluster = Cluster::get().unwrap_or_else(|e| panic!("the testbed: {e}"));
    // Blocking (a cargo build may run): before any deadline starts.
    cluster
        .load_kpages_image()
        .unwrap_or_else(|e| panic!("the kpages image with the current binaries: {e}"));
    TestNamespace::run("bench-cold", |ns| async move {
        run(ns, cold_starts, warm_requests).await;
    })
    .await;
}

async fn run(ns: TestNamespace, cold_starts: usize, warm_requests: usize) {
    let cluster = ns.cluster.clone();
    let n = ns.name().to_string();
    let work = tempfile::tempdir().expect("temp dir");

    // Object storage on the host, reachable from pods at the node IP.
    let minio = MinIo::start_async("kpages").await;
    let bridge = Bridge::start(&cluster, minio.port()).await;
    let pod_store = minio.url_at(&format!("http://{NODE_IP}:{}", bridge.port), &n);
    let host_store = minio.url(&n);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "kpages-store"},
        "stringData": {"AWS_ACCESS_KEY_ID": MinIo::USER, "AWS_SECRET_ACCESS_KEY": MinIo::PASSWORD}
    }))
    .expect("secret");
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the store Secret");

    // The chart as the platform test installs it, minus NATS (no background functions here).
    let release = format!("kp{}", &n[n.len() - 6..]);
    let values = [
        format!("store.url={pod_store}"),
        "store.existingSecret=kpages-store".into(),
        "store.functionPodSecretName=kpages-store".into(),
        format!("watchNamespaces={{{n}}}"),
        "router.replicas=1".into(),
        format!("router.coldStartTimeoutSeconds={COLD_START_TIMEOUT_SECONDS}"),
        // Calls are noted on the Deploy within 5 s (default 30 s): the operator never scales
        // to zero on a stale note and back up when the note lands, so a cold request is cold.
        "router.extraEnv[0].name=KPAGES_ACTIVITY_INTERVAL_SECONDS".into(),
        "string:router.extraEnv[0].value=5".into(),
        "operator.urlScheme=http".into(),
        "router.resources.requests.cpu=10m".into(),
        "operator.resources.requests.cpu=10m".into(),
    ];
    let started = Instant::now();
    helm_install(&cluster, &release, &n, &values).await;
    eprintln!(
        "bench row 6: helm install in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let router_ip = ns
        .api::<Service>()
        .get(&format!("{release}-kpages-router"))
        .await
        .expect("the router Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the router Service's ClusterIP");
    let router = format!("{router_ip}:80");

    let site: Site = serde_json::from_value(json!({
        "apiVersion": "kpages.dev/v1alpha1", "kind": "Site",
        "metadata": {"name": SITE},
        "spec": {"retention": {"scaleToZeroAfterSeconds": SCALE_TO_ZERO_AFTER_SECONDS}}
    }))
    .expect("site");
    let sites: Api<Site> = ns.api();
    sites
        .create(&PostParams::default(), &site)
        .await
        .expect("creating the Site");
    let dir = work.path().join("site");
    hello_site(&dir);
    let cli = Cli::new(&cluster, &host_store, &n);
    let deploy = cli.deploy_prod(&dir, SITE, &sites).await;
    let host = format!("{SITE}.{n}.{PREVIEW}");
    let (timeline, watches) = watch_steps(&ns, &deploy);

    // The deploy is live (kpages deploy waited); its first pod is up since its creation.
    eventually_async(
        Duration::from_secs(180),
        format!("GET {host}/api/hello to answer {HELLO:?}"),
        || {
            let (cluster, router, host) = (&cluster, &router, &host);
            async move {
                let r = get(cluster, router, host).await;
                if r.status == 200 && r.body.trim() == HELLO {
                    Ok(())
                } else {
                    Err(format!("{} {:?}", r.status, r.body))
                }
            }
        },
    )
    .await;
    println!(
        "{}",
        json!({"kind": "coldstart", "row": 6, "phase": "setup", "cold_starts": cold_starts,
               "warm_requests": warm_requests,
               "scale_to_zero_after_seconds": SCALE_TO_ZERO_AFTER_SECONDS,
               "router_replicas": 1, "deploy": deploy,
               "client": "curl in the testbed's network namespace, one process and connection per request, to the router Service's ClusterIP"})
    );

    // Warm: the pod that came up with the deploy answers.
    for _ in 0..5 {
        check(&get(&cluster, &router, &host).await, "warm-up");
    }
    let mut warm = Vec::with_capacity(warm_requests);
    for i in 0..warm_requests {
        let r = get(&cluster, &router, &host).await;
        check(&r, "warm request");
        println!(
            "{}",
            json!({"kind": "coldstart", "row": 6, "phase": "warm", "n": i + 1,
                   "seconds": r.total, "connect_seconds": r.connect, "first_byte_seconds": r.first_byte})
        );
        warm.push(r.total);
    }
    eprintln!("bench row 6: {}", quantiles("warm", &warm));

    // Cold: the operator scales the idle deploy to zero, then one request wakes it.
    let deployments: Api<Deployment> = ns.api();
    let pods: Api<Pod> = ns.api();
    let workload = names::workload_name(&deploy);
    let by_deploy = ListParams::default().labels(&format!(
        "{}={},{}={}",
        names::DEPLOY_LABEL,
        names::label_value(&deploy),
        names::COMPONENT_LABEL,
        names::FUNCTION_COMPONENT
    ));
    let mut cold = Vec::with_capacity(cold_starts);
    let mut last_answer = Instant::now();
    for i in 0..cold_starts {
        // Idle for scaleToZeroAfterSeconds after the last call the router noted (within 5 s),
        // then the operator's next look (+1 s), then the pod's 5 s preStop pause.
        wait::until(
            &deployments,
            &workload,
            Duration::from_secs(u64::from(SCALE_TO_ZERO_AFTER_SECONDS) + 120),
            |d: Option<&Deployment>| {
                d.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas) == Some(0)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("cold start {}: never scaled to zero: {e}", i + 1));
        eventually_async(
            Duration::from_secs(120),
            format!(
                "cold start {}: no function pod left after scaling to zero",
                i + 1
            ),
            || {
                let (pods, by_deploy) = (&pods, &by_deploy);
                async move {
                    let left = pods
                        .list(by_deploy)
                        .await
                        .expect("listing function pods")
                        .items
                        .len();
                    if left == 0 {
                        Ok(())
                    } else {
                        Err(format!("{left} function pod(s) still there"))
                    }
                }
            },
        )
        .await;
        let idle = last_answer.elapsed().as_secs_f64();
        let r = get(&cluster, &router, &host).await;
        last_answer = Instant::now();
        check(&r, &format!("cold start {}", i + 1));
        // The pod's Ready event may reach this watch just after the router's: wait briefly.
        let settle = Instant::now() + Duration::from_secs(5);
        while step_after(&timeline, r.sent, Step::PodReady).is_none() && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut breakdown = serde_json::Map::new();
        for step in Step::ALL {
            breakdown.insert(
                step.key().into(),
                json!(step_after(&timeline, r.sent, step)),
            );
        }
        assert!(
            breakdown["scaled_up"].is_number() && breakdown["pod_created"].is_number(),
            "cold start {}: answered in {:.3} s, but the Deployment was not scaled up and a pod created after the request was sent: it was not cold ({breakdown:?})",
            i + 1,
            r.total
        );
        println!(
            "{}",
            json!({"kind": "coldstart", "row": 6, "phase": "cold", "n": i + 1,
                   "seconds": r.total, "connect_seconds": r.connect, "first_byte_seconds": r.first_byte,
                   "idle_seconds": idle, "steps": breakdown})
        );
        eprintln!(
            "bench row 6: cold start {}/{cold_starts}: {:.3} s ({})",
            i + 1,
            r.total,
            Step::ALL
                .iter()
                .map(|s| format!(
                    "{} +{}",
                    s.key(),
                    breakdown[s.key()]
                        .as_f64()
                        .map_or("?".into(), |v| format!("{v:.2}s"))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        cold.push(r.total);
    }
    eprintln!("bench row 6: {}", quantiles("cold", &cold));
    eprintln!("bench row 6: {}", quantiles("warm", &warm));

    for w in watches {
        w.abort();
    }
    let out = cluster
        .helm(&["uninstall", &release, "--namespace", &n])
        .await
        .expect("helm uninstall");
    assert!(
        out.status.success(),
        "helm uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop((bridge, minio));
}
