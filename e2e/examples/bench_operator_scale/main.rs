//! bench/run row 7: the operator bringing 1,000 Sites, each with one production Deploy, to
//! Ready, timed from the first create, with the operator's peak RSS.
//!
//! ```text
//!  host: kpages-operator (release, static: the image's binary) ── 127.0.0.1:16443 forwarder ──► apiserver
//!          │  /proc/<pid>/status: VmHWM, VmRSS every 100 ms; /proc/<pid>/stat: CPU time
//!          └─► MinIO 127.0.0.1:p (manifests)
//!  this program ── 32 creates in flight ──► Site sNNNN + Deploy sNNNN-<digest> ×1,000
//!               ── watches Deploys and Sites ──► done when every Deploy is Ready and every
//!                                                Site's status.activeDeploy names it (Ready)
//! ```
//!
//! The operator runs as a host process (not in a pod) so its memory and CPU can be read from
//! `/proc`; it watches only the benchmark's namespace, where it also holds its Lease.
//! The Deploys share one manifest that `kpages build` made from a tiny static site (two small
//! files, no functions): a function pod each would not fit a 2-core testbed, and a static deploy
//! is Ready without pods. With `BENCH_FUNCTION_PERCENT` > 0 (default 10) a second round runs in
//! a fresh namespace with a fresh operator: that share of the Sites get a manifest with one
//! function, so the operator creates their Deployment, Service, NetworkPolicy and FunctionRoute
//! too; those Sites ask for `functions.resources.requests.cpu: 1000`, which no node offers, so
//! their pods stay Pending (nothing runs on the node) until the deploy idles to zero after
//! `scaleToZeroAfterSeconds` (30 s, the minimum), when the operator reports it Ready
//! (`ScaledToZero`). That round's time therefore includes that 30 s idle period by design.
//!
//! One JSON line per round on stdout, progress on stderr. A round that is not done within
//! `BENCH_OPERATOR_DEADLINE` seconds (600) ends the program with a panic and what was still
//! missing: no figure is printed for it.

mod measure;
mod operator;
mod progress;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kpages_crds::{Deploy, DeployPhase, FunctionRoute, Site};
use kpages_e2e::bench::env_number;
use kpages_e2e::platform::release_binary;
use kpages_e2e::{Cluster, TestNamespace};
use kpages_testsupport::MinIo;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use measure::{apiserver_requests, clock_ticks, count, testbed_ticks};
use operator::Operator;
use progress::{Shared, lock, track};

const STORE_PREFIX: &str = "bench-operator";
/// Functions' CPU request in the function round: more than any node has, so pods stay Pending.
const UNSCHEDULABLE_CPU: &str = "1000";

/// A round's settings.
#[derive(Clone)]
struct Round {
    name: &'static str,
    sites: u64,
    /// Every `function_every`-th Site gets the function manifest (0: none).
    function_every: u64,
    concurrency: usize,
    deadline: Duration,
}

/// The two manifests, built and uploaded once.
struct Manifests {
    static_site: String,
    function_site: String,
}

/// `kpages build DIR --out OUT`; returns the manifest digest it prints last.
fn build(kpages: &Path, dir: &Path, out: &Path) -> String {
    let o = std::process::Command::new(kpages)
        .arg("build")
        .arg(dir)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", kpages.display()));
    assert!(
        o.status.success(),
        "kpages build {}: {}",
        dir.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let digest = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        digest.starts_with("sha256:"),
        "kpages build printed no digest: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    digest
}

/// Builds the static and the function site with `kpages build` and uploads every blob.
async fn manifests(kpages: &Path, work: &Path, minio: &MinIo) -> Manifests {
    let static_dir = work.join("static-site");
    std::fs::create_dir_all(&static_dir).expect("site dir");
    std::fs::write(
        static_dir.join("index.html"),
        "<!doctype html><title>bench</title><p>one of a thousand\n",
    )
    .expect("index.html");
    std::fs::write(static_dir.join("404.html"), "<!doctype html><p>not here\n").expect("404");
    let fn_dir = work.join("function-site");
    std::fs::create_dir_all(fn_dir.join("netlify/functions")).expect("site dir");
    std::fs::create_dir_all(fn_dir.join("public")).expect("site dir");
    std::fs::write(
        fn_dir.join("netlify.toml"),
        "[build]\n  publish = \"public\"\n[functions]\n  directory = \"netlify/functions\"\n",
    )
    .expect("netlify.toml");
    std::fs::write(fn_dir.join("public/index.html"), "<!doctype html><p>fn\n").expect("index");
    std::fs::write(
        fn_dir.join("netlify/functions/hello.mjs"),
        "export default async () => new Response('hello');\nexport const config = { path: '/api/hello' };\n",
    )
    .expect("hello.mjs");
    let out = work.join("blobs-out");
    let static_site = build(kpages, &static_dir, &out);
    let function_site = build(kpages, &fn_dir, &out);
    let store = minio
        .config(STORE_PREFIX)
        .open()
        .expect("opening the MinIO store");
    let blobs = out.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).expect("build output") {
        let path = entry.expect("build output").path();
        store
            .put_file(&path)
            .await
            .unwrap_or_else(|e| panic!("uploading {}: {e}", path.display()));
    }
    Manifests {
        static_site,
        function_site,
    }
}

fn site_name(i: u64) -> String {
    format!("s{i:04}")
}

/// The Deploy name `kpages deploy --prod` would give: `<site>-<first 10 hex of the digest>`.
fn deploy_name(site: &str, digest: &str) -> String {
    format!("{site}-{}", &digest["sha256:".len()..][..10])
}

async fn create_pair(ns: &TestNamespace, i: u64, round: &Round, m: &Manifests) {
    let site = site_name(i);
    let with_function = round.function_every > 0 && i.is_multiple_of(round.function_every);
    let digest = if with_function {
        &m.function_site
    } else {
        &m.static_site
    };
    let mut spec = json!({});
    if with_function {
        spec["functions"] = json!({"resources": {"requests": {"cpu": UNSCHEDULABLE_CPU}}});
        spec["retention"] = json!({"scaleToZeroAfterSeconds": 30});
    }
    let s: Site = serde_json::from_value(json!({
        "apiVersion": "kpages.dev/v1alpha1", "kind": "Site",
        "metadata": {"name": site}, "spec": spec
    }))
    .expect("site");
    ns.api::<Site>()
        .create(&PostParams::default(), &s)
        .await
        .unwrap_or_else(|e| panic!("creating Site {site}: {e}"));
    let name = deploy_name(&site, digest);
    let d: Deploy = serde_json::from_value(json!({
        "apiVersion": "kpages.dev/v1alpha1", "kind": "Deploy",
        "metadata": {"name": name, "labels": {kpages_crds::names::SITE_LABEL: site}},
        "spec": {"site": site, "manifest": digest, "context": "production"}
    }))
    .expect("deploy");
    ns.api::<Deploy>()
        .create(&PostParams::default(), &d)
        .await
        .unwrap_or_else(|e| panic!("creating Deploy {name}: {e}"));
}

async fn run_round(
    cluster: &Cluster,
    operator_bin: &Path,
    store_url: &str,
    m: &Manifests,
    round: Round,
    work: &Path,
) {
    let ns = TestNamespace::create(&format!("bench-{}", round.name))
        .await
        .unwrap_or_else(|e| panic!("creating the namespace: {e}"));
    let ticks = clock_ticks();
    let mut op = Operator::start(
        operator_bin,
        cluster,
        ns.name(),
        store_url,
        work.join(format!("operator-{}.log", round.name)),
    )
    .await;
    let (_, idle_rss) = op.memory();
    let idle_cpu = op.cpu_seconds(ticks);
    eprintln!(
        "bench row 7 ({}): operator {} leads in {}, RSS {} MiB; creating {} Sites + Deploys, {} at a time",
        round.name,
        op.pid,
        ns.name(),
        idle_rss / 1024,
        round.sites,
        round.concurrency
    );

    let want: BTreeMap<String, String> = (0..round.sites)
        .map(|i| {
            let site = site_name(i);
            let with_function = round.function_every > 0 && i.is_multiple_of(round.function_every);
            let digest = if with_function {
                &m.function_site
            } else {
                &m.static_site
            };
            let deploy = deploy_name(&site, digest);
            (site, deploy)
        })
        .collect();
    let want = Arc::new(want);
    let progress: Shared = Arc::default();
    let watches = track(&ns, want.clone(), progress.clone());

    // RSS every 100 ms (VmHWM is the kernel's own peak; the samples show the shape).
    let samples: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    let start = Instant::now();
    let sampler = {
        let samples = samples.clone();
        let pid = op.pid;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    return;
                };
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((start.elapsed().as_secs_f64(), rss));
            }
        })
    };
    let requests_before = apiserver_requests(cluster).await;
    let testbed_before = testbed_ticks();

    let t0 = Instant::now();
    futures::stream::iter(0..round.sites)
        .map(|i| {
            let (ns, round, m) = (&ns, &round, m);
            async move { create_pair(ns, i, round, m).await }
        })
        .buffer_unordered(round.concurrency)
        .collect::<Vec<()>>()
        .await;
    let created = t0.elapsed().as_secs_f64();
    eprintln!(
        "bench row 7 ({}): {} Sites and Deploys created in {created:.1} s",
        round.name, round.sites
    );

    let deadline = t0 + round.deadline;
    let mut series = Vec::new();
    let mut next_report = Instant::now();
    loop {
        let (deploys_ready, sites_active, done) = {
            let p = lock(&progress);
            (
                p.deploys_ready(&want),
                p.sites_active(&want),
                p.all_deploys_ready.is_some() && p.all_sites_active.is_some(),
            )
        };
        if Instant::now() >= next_report || done {
            let t = t0.elapsed().as_secs_f64();
            let (_, rss) = op.memory();
            eprintln!(
                "bench row 7 ({}): +{t:.0} s: {deploys_ready} Deploys Ready, {sites_active} Sites active, operator RSS {} MiB, CPU {:.1} s",
                round.name,
                rss / 1024,
                op.cpu_seconds(ticks) - idle_cpu
            );
            series.push(json!([t.round(), deploys_ready, sites_active, rss / 1024]));
            next_report += Duration::from_secs(5);
        }
        if done {
            break;
        }
        if Instant::now() >= deadline {
            let mut phases: BTreeMap<String, usize> = BTreeMap::new();
            {
                let p = lock(&progress);
                for d in want.values() {
                    let phase = p
                        .deploy_phase
                        .get(d)
                        .map_or("(not seen)".to_string(), |ph| format!("{ph:?}"));
                    *phases.entry(phase).or_default() += 1;
                }
            }
            let tail = op.log_tail();
            ns.cleanup().await;
            panic!(
                "row 7 ({}): not done {} s after the first create: {deploys_ready}/{} Deploys Ready, \
                 {sites_active}/{} Sites active; Deploy phases {phases:?}\noperator log (last lines):\n{tail}",
                round.name,
                round.deadline.as_secs(),
                want.len(),
                want.len()
            );
        }
        if let Ok(Some(status)) = op.child_exited() {
            panic!("kpages-operator exited with {status}:\n{}", op.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (deploys_at, sites_at) = {
        let p = lock(&progress);
        (
            p.all_deploys_ready
                .map(|t| t.duration_since(t0).as_secs_f64()),
            p.all_sites_active
                .map(|t| t.duration_since(t0).as_secs_f64()),
        )
    };
    let (hwm, rss_at_done) = op.memory();
    let cpu = op.cpu_seconds(ticks) - idle_cpu;
    let reconciles = op.reconcile_metrics().await;
    let testbed_after = testbed_ticks();
    let requests_after = apiserver_requests(cluster).await;
    let testbed_cpu: serde_json::Map<String, serde_json::Value> = testbed_after
        .iter()
        .map(|(name, t)| {
            let before = testbed_before.get(name).copied().unwrap_or(0);
            (
                name.to_string(),
                json!(t.saturating_sub(before) as f64 / ticks),
            )
        })
        .collect();

    // Check against a fresh list, not only the watches.
    let deploys = ns
        .api::<Deploy>()
        .list(&ListParams::default())
        .await
        .expect("listing Deploys");
    let ready = deploys
        .items
        .iter()
        .filter(|d| {
            want.values().any(|w| *w == d.name_any())
                && d.status
                    .as_ref()
                    .is_some_and(|s| s.phase == DeployPhase::Ready)
        })
        .count();
    let sites = ns
        .api::<Site>()
        .list(&ListParams::default())
        .await
        .expect("listing Sites");
    let active = sites
        .items
        .iter()
        .filter(|s| {
            s.status.as_ref().and_then(|st| st.active_deploy.as_deref())
                == want.get(&s.name_any()).map(String::as_str)
        })
        .count();
    assert_eq!(
        (ready, active),
        (want.len(), want.len()),
        "a fresh list disagrees with the watches"
    );

    // Ten quiet seconds: what the operator does once everything is Ready (requeues, status
    // writes that change nothing should cost nothing).
    let settle_cpu_start = op.cpu_seconds(ticks);
    let reconciles_at_done = reconciles.clone();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let settle_cpu = op.cpu_seconds(ticks) - settle_cpu_start;
    let reconciles_after_settle = op.reconcile_metrics().await;
    let (hwm_after_settle, rss_after_settle) = op.memory();

    let objects = json!({
        "sites": count::<Site>(&ns).await,
        "deploys": count::<Deploy>(&ns).await,
        "function_routes": count::<FunctionRoute>(&ns).await,
        "deployments": count::<Deployment>(&ns).await,
        "replica_sets": count::<ReplicaSet>(&ns).await,
        "services": count::<Service>(&ns).await,
        "network_policies": count::<NetworkPolicy>(&ns).await,
        "pods": count::<Pod>(&ns).await,
        "events": count::<Event>(&ns).await,
    });
    let requests: serde_json::Map<String, serde_json::Value> = requests_after
        .iter()
        .filter_map(|(k, (n, bytes))| {
            let (n0, b0) = requests_before.get(k).copied().unwrap_or_default();
            (n - n0 > 0.0).then(|| {
                (
                    k.clone(),
                    json!({"requests": n - n0, "response_bytes": bytes - b0}),
                )
            })
        })
        .collect();
    let rss_samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let peak_sample = rss_samples.iter().map(|s| s.1).max().unwrap_or(0);
    let function_sites = if round.function_every > 0 {
        round.sites.div_ceil(round.function_every)
    } else {
        0
    };
    let line = json!({
        "kind": "operator", "row": 7, "round": round.name,
        "sites": round.sites, "deploys": round.sites,
        "static_deploys": round.sites - function_sites, "function_deploys": function_sites,
        "concurrency": round.concurrency,
        "create_seconds": created,
        "all_deploys_ready_seconds": deploys_at,
        "all_sites_active_seconds": sites_at,
        "seconds": deploys_at.zip(sites_at).map(|(a, b)| a.max(b)),
        "operator_peak_rss_kib": hwm.max(hwm_after_settle),
        "operator_peak_rss_sampled_kib": peak_sample,
        "operator_idle_rss_kib": idle_rss,
        "operator_rss_at_done_kib": rss_at_done,
        "operator_rss_after_settle_kib": rss_after_settle,
        "operator_cpu_seconds": cpu,
        "operator_settle_cpu_seconds_per_10s": settle_cpu,
        "testbed_cpu_seconds": testbed_cpu,
        "reconciles_at_done": reconciles_at_done,
        "reconciles_after_settle": reconciles_after_settle,
        "apiserver_requests": requests,
        "objects": objects,
        "progress": series,
        "what": if function_sites > 0 {
            format!("{} Sites; {} with a static Deploy (one shared manifest from kpages build: index.html, 404.html), {} with a Deploy of one Netlify function whose pods cannot be scheduled (requests.cpu {UNSCHEDULABLE_CPU}) and scaleToZeroAfterSeconds 30: Ready once scaled to zero", round.sites, round.sites - function_sites, function_sites)
        } else {
            format!("{} Sites, each with one production Deploy of the same static manifest (kpages build of index.html + 404.html, no functions, no pods)", round.sites)
        },
    });
    println!("{line}");
    eprintln!(
        "bench row 7 ({}): all Ready in {:.1} s (Deploys {:.1} s, Sites {:.1} s); operator peak RSS {:.1} MiB, CPU {cpu:.1} s",
        round.name,
        deploys_at
            .unwrap_or_default()
            .max(sites_at.unwrap_or_default()),
        deploys_at.unwrap_or_default(),
        sites_at.unwrap_or_default(),
        hwm.max(hwm_after_settle) as f64 / 1024.0
    );

    sampler.abort();
    for w in watches {
        w.abort();
    }
    drop(op);
    ns.cleanup().await;
    wait_gone(&ns).await;
}

/// Waits (at most 5 min) until the namespace is deleted, so the next round starts on a quiet
/// apiserver; says so and goes on if it is not.
async fn wait_gone(ns: &TestNamespace) {
    let api: Api<Namespace> = Api::all(ns.client.clone());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        match api.get_opt(ns.name()).await {
            Ok(None) => {
                eprintln!(
                    "bench row 7: namespace {} deleted in {:.0} s",
                    ns.name(),
                    start.elapsed().as_secs_f64()
                );
                return;
            }
            Ok(Some(_)) | Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    eprintln!(
        "bench row 7: namespace {} still terminating after 300 s; going on",
        ns.name()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sites = env_number("BENCH_SITES", 1000).max(1);
    let concurrency = env_number("BENCH_APPLY_CONCURRENCY", 32).max(1) as usize;
    let deadline = Duration::from_secs(env_number("BENCH_OPERATOR_DEADLINE", 600));
    let function_percent = env_number("BENCH_FUNCTION_PERCENT", 10).min(100);
    let cluster = Cluster::get().unwrap_or_else(|e| panic!("the testbed: {e}"));
    let operator_bin = release_binary("kpages-operator");
    let kpages_bin = release_binary("kpages");
    let work = tempfile::tempdir().expect("temp dir");
    let minio = MinIo::start_async("kpages").await;
    let m = manifests(&kpages_bin, work.path(), &minio).await;
    let store_url = minio.url(STORE_PREFIX);
    eprintln!(
        "bench row 7: manifests static {} and function {}; operator {}",
        m.static_site,
        m.function_site,
        operator_bin.display()
    );
    let mut rounds = vec![Round {
        name: "static",
        sites,
        function_every: 0,
        concurrency,
        deadline,
    }];
    if let Some(every) = 100u64.checked_div(function_percent) {
        rounds.push(Round {
            name: "functions",
            sites,
            function_every: every.max(1),
            concurrency,
            deadline,
        });
    }
    for round in rounds {
        run_round(&cluster, &operator_bin, &store_url, &m, round, work.path()).await;
    }
    drop(minio);
}
