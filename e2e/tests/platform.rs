//! The whole platform on the testbed, as a user meets it: `helm install` the chart (operator
//! and router from the locally built `localhost/kpages/kpages:dev` image), `kubectl apply` a
//! Site, `kpages deploy` the examples, and requests through the router's Service.
//!
//! ```text
//!  host: MinIO 127.0.0.1:p ◄── Bridge ── 10.200.0.1:p' ◄── operator, router, function pods
//!  host: kpages deploy ──► MinIO (blobs) + apiserver (Deploy)
//!  host: test ── Forward 127.0.0.1:q ──► router Service ClusterIP:80 ──► function pod IPs
//! ```
//!
//! One test, in order, because each step builds on the last and a cluster is slow to set up.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Service};
use kpages_crds::{Deploy, DeployPhase, Site};
use kpages_e2e::platform::{Cli, helm_install, repo};
use kpages_e2e::services::{Bridge, Forward, NODE_IP};
use kpages_e2e::{TestNamespace, wait};
use kpages_testsupport::{MinIo, Nats, eventually_async};
use kube::api::{ListParams, LogParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(180);
const PREVIEW: &str = "preview.kpages.localhost";

/// A response: status, headers, body.
struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

/// The router as the test reaches it: 127.0.0.1:<port> forwarded to its Service.
struct Router {
    port: u16,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl Router {
    fn new(port: u16) -> Self {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Self { port, client }
    }

    async fn request(&self, method: &str, host: &str, path: &str, body: &str) -> Reply {
        use http_body_util::BodyExt;
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
            .header("host", host)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(90), self.client.request(req))
            .await
            .unwrap_or_else(|_| panic!("{method} {host}{path}: no answer in 90 s"))
            .unwrap_or_else(|e| panic!("{method} {host}{path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, host: &str, path: &str) -> Reply {
        self.request("GET", host, path, "").await
    }

    /// GETs until `ok` holds (a deploy goes live asynchronously), at most `limit`.
    async fn get_until(
        &self,
        host: &str,
        path: &str,
        limit: Duration,
        ok: impl Fn(&Reply) -> bool,
    ) -> Reply {
        let ok = &ok;
        eventually_async(
            limit,
            format!("GET {host}{path} to answer as expected"),
            || async move {
                let r = self.get(host, path).await;
                if ok(&r) {
                    Ok(r)
                } else {
                    Err(format!("{} {}", r.status, r.body))
                }
            },
        )
        .await
    }
}

/// A copy of an example site, so a test can change it.
fn copy_site(example: &str, into: &Path) -> PathBuf {
    let dest = into.join(example);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo().join("examples").join(example))
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    dest
}

async fn deploy_phase(api: &Api<Deploy>, name: &str, phase: DeployPhase) {
    wait::until(api, name, DEADLINE, move |d: Option<&Deploy>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.phase == phase)
    })
    .await
    .unwrap();
}

async fn active_deploy(api: &Api<Site>, site: &str, deploy: &str) {
    let want = deploy.to_string();
    wait::until(api, site, DEADLINE, move |s: Option<&Site>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|s| s.active_deploy.as_deref())
            == Some(want.as_str())
    })
    .await
    .unwrap();
}

/// Every function pod's logs of a deploy, concatenated.
async fn function_logs(ns: &TestNamespace, deploy: &str) -> String {
    let pods: Api<Pod> = ns.api();
    let list = pods
        .list(&ListParams::default().labels(&format!(
            "kpages.dev/deploy={deploy},app.kubernetes.io/component=functions"
        )))
        .await
        .unwrap();
    let mut all = String::new();
    for p in list.items {
        let params = LogParams {
            container: Some("host".into()),
            ..LogParams::default()
        };
        all.push_str(&pods.logs(&p.name_any(), &params).await.unwrap_or_default());
    }
    all
}

async fn logs_until(ns: &TestNamespace, deploy: &str, needle: &str) -> String {
    eventually_async(
        Duration::from_secs(90),
        format!("{needle:?} in the logs of {deploy}'s function pods"),
        || async move {
            let logs = function_logs(ns, deploy).await;
            if logs.contains(needle) {
                Ok(logs)
            } else {
                Err(format!("the logs are:\n{logs}"))
            }
        },
    )
    .await
}

fn apply_yaml(value: &serde_json::Value) -> String {
    serde_yaml_ng::to_string(value).unwrap()
}

async fn kubectl_apply(ns: &TestNamespace, yaml: &str, file: &Path) {
    std::fs::write(file, yaml).unwrap();
    let out = ns
        .cluster
        .kubectl(&["apply", "-n", ns.name(), "-f", file.to_str().unwrap()])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_kubectl_apply_kpages_deploy_and_serve_through_the_router() {
    TestNamespace::run("platform", |ns| async move {
        let cluster = ns.cluster.clone();
        tokio::task::spawn_blocking({
            let cluster = cluster.clone();
            move || cluster.load_kpages_image()
        })
        .await
        .unwrap()
        .expect("the kpages image with the current binaries");
        let work = tempfile::tempdir().unwrap();

        // Object storage on the host, reachable from pods at the node IP.
        let minio = MinIo::start_async("kpages").await;
        let bridge = Bridge::start(&cluster, minio.port()).await;
        let prefix = ns.name().to_string();
        let pod_store = minio.url_at(&format!("http://{NODE_IP}:{}", bridge.port), &prefix);
        let host_store = minio.url(&prefix);
        // NATS JetStream on the host for background functions, bridged the same way.
        let nats = Nats::start_async().await;
        let nats_bridge = Bridge::start(&cluster, nats.port()).await;
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = ns.api();
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "kpages-store"},
                    "stringData": {"AWS_ACCESS_KEY_ID": MinIo::USER, "AWS_SECRET_ACCESS_KEY": MinIo::PASSWORD}
                }))
                .unwrap(),
            )
            .await
            .unwrap();

        // 1. helm install. The testbed has no cluster DNS: the admin Service gets a fixed IP
        //    that the schedule CronJobs use.
        let admin_ip = format!("10.202.0.{}", 200 + std::process::id() % 50);
        // Cluster-scoped objects (ClusterRoles) carry the release name: unique per run.
        let release = format!("kp{}", &ns.name()[ns.name().len() - 6..]);
        let values = [
            format!("store.url={pod_store}"),
            "store.existingSecret=kpages-store".into(),
            "store.functionPodSecretName=kpages-store".into(),
            format!("nats.url=nats://{NODE_IP}:{}", nats_bridge.port),
            format!("watchNamespaces={{{}}}", ns.name()),
            "router.replicas=1".into(),
            format!("router.adminUrl=http://{admin_ip}:9090"),
            format!("router.adminClusterIP={admin_ip}"),
            "router.coldStartTimeoutSeconds=120".into(),
            "router.extraEnv[0].name=KPAGES_ACTIVITY_INTERVAL_SECONDS".into(),
            "string:router.extraEnv[0].value=5".into(),
            "operator.urlScheme=http".into(),
            "router.resources.requests.cpu=10m".into(),
            "operator.resources.requests.cpu=10m".into(),
        ];
        let notes = helm_install(&cluster, &release, ns.name(), &values).await;
        assert!(notes.contains("kpages deploy"), "NOTES tell how to deploy:\n{notes}");

        let services: Api<Service> = ns.api();
        let router_ip = services
            .get(&format!("{release}-kpages-router"))
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .unwrap();
        let forward = Forward::start(&cluster, &format!("{router_ip}:80")).await;
        let router = Router::new(forward.port);

        // 2. kubectl apply two Sites; the netlify one idles to zero after 30 s.
        let n = ns.name().to_string();
        kubectl_apply(
            &ns,
            &format!(
                "{}---\n{}",
                apply_yaml(&json!({
                    "apiVersion": "kpages.dev/v1alpha1", "kind": "Site",
                    "metadata": {"name": "edge"},
                    "spec": {"domains": ["edge.example.test"]}
                })),
                apply_yaml(&json!({
                    "apiVersion": "kpages.dev/v1alpha1", "kind": "Site",
                    "metadata": {"name": "net"},
                    "spec": {"retention": {"scaleToZeroAfterSeconds": 30}}
                }))
            ),
            &work.path().join("sites.yaml"),
        )
        .await;

        // 3. kpages deploy both examples to production.
        let cli = Cli::new(&cluster, &host_store, &n);
        let deploys: Api<Deploy> = ns.api();
        let sites: Api<Site> = ns.api();
        let edge_dir = copy_site("edgeone-site", work.path());
        let edge1 = cli.deploy_prod(&edge_dir, "edge", &sites).await;
        let net1 = cli
            .deploy_prod(&repo().join("examples/netlify-site"), "net", &sites)
            .await;
        active_deploy(&sites, "edge", &edge1).await;
        active_deploy(&sites, "net", &net1).await;

        let edge = "edge.example.test";
        let net = format!("net.{n}.{PREVIEW}");
        // Static files, by domain and by the site's own host.
        let home = router
            .get_until(edge, "/", DEADLINE, |r| r.status == 200)
            .await;
        assert!(home.body.contains("EdgeOne Pages on kpages"), "{}", home.body);
        let css = router.get(edge, "/assets/site.css").await;
        assert_eq!(css.status, 200);
        assert_eq!(router.get(edge, "/definitely-missing").await.status, 404);
        let home = router.get(&format!("edge.{n}.{PREVIEW}"), "/").await;
        assert!(home.body.contains("EdgeOne Pages on kpages"), "{}", home.body);
        // An EdgeOne file-route function with params, and the Express [[default]] app.
        let user = router.get(edge, "/api/users/42").await;
        assert_eq!(user.status, 200, "{}", user.body);
        assert!(user.body.contains("\"id\":\"42\""), "{}", user.body);
        let app = router.get(edge, "/express").await;
        assert_eq!(app.status, 200, "{}", app.body);
        assert!(app.body.contains("express"), "{}", app.body);
        // A Netlify v2 function on its config path.
        let hello = router.get(&net, "/api/hello?name=e2e").await;
        assert_eq!(hello.status, 200, "{}", hello.body);
        assert!(hello.body.contains("hello, e2e"), "{}", hello.body);
        // Unknown hosts are not served.
        assert_eq!(router.get("nobody.example.test", "/").await.status, 404);

        // 3b. FunctionRoutes a user writes: a path to a Service (the router's own admin
        //     Service: /metrics) and a pattern to a function of the active deploy. The router
        //     serves them once the operator has accepted them, ahead of the deploy's routes.
        //     (The testbed's CNI enforces no NetworkPolicy; in a real cluster the admin port
        //     admits only the pods named in networkPolicy.metricsFrom.)
        assert_eq!(router.get(edge, "/people/7").await.status, 404);
        kubectl_apply(
            &ns,
            &format!(
                "{}---\n{}",
                apply_yaml(&json!({
                    "apiVersion": "kpages.dev/v1alpha1", "kind": "FunctionRoute",
                    "metadata": {"name": "metrics-to-admin"},
                    "spec": {
                        "site": "edge",
                        "matches": [{"path": {"type": "Exact", "value": "/metrics"}, "method": "GET"}],
                        "backend": {"service": {"name": format!("{release}-kpages-router-admin"), "port": 9090}}
                    }
                })),
                apply_yaml(&json!({
                    "apiVersion": "kpages.dev/v1alpha1", "kind": "FunctionRoute",
                    "metadata": {"name": "people"},
                    "spec": {
                        "site": "edge",
                        "hostnames": [edge],
                        "matches": [{"path": {"type": "Pattern", "value": "/people/:id"}}],
                        "backend": {"function": {"name": "api-users-_id"}}
                    }
                }))
            ),
            &work.path().join("routes.yaml"),
        )
        .await;
        let person = router
            .get_until(edge, "/people/7", DEADLINE, |r| r.status == 200)
            .await;
        assert!(person.body.contains("\"id\":\"7\""), "{}", person.body);
        let metrics = router
            .get_until(edge, "/metrics", DEADLINE, |r| r.status == 200)
            .await;
        assert!(metrics.body.contains("kpages_router_requests"), "{}", &metrics.body[..metrics.body.len().min(400)]);
        // Only on the hosts the route names: the site's own host still has no /people.
        assert_eq!(router.get(&format!("edge.{n}.{PREVIEW}"), "/people/7").await.status, 404);

        // 4. A background function: 202 with a call id at once, the work happens later.
        let marker = format!("e2e-{}@example.test", std::process::id());
        let accepted = router
            .request(
                "POST",
                &net,
                "/.netlify/functions/send-email-background",
                &json!({ "to": marker }).to_string(),
            )
            .await;
        assert_eq!(accepted.status, 202, "{}", accepted.body);
        assert!(accepted.headers.contains_key("x-kpages-call-id"));
        logs_until(&ns, &net1, &format!("sending a slow email to {marker}")).await;
        // The call went through JetStream: the router's admin API reports it.
        let call_id = accepted.headers["x-kpages-call-id"].to_str().unwrap().to_string();
        let admin_forward = Forward::start(&cluster, &format!("{admin_ip}:9090")).await;
        let admin = Router::new(admin_forward.port);
        let call = admin
            .get_until("admin", &format!("/calls/{call_id}"), DEADLINE, |r| {
                r.status == 200 && r.body.contains("succeeded")
            })
            .await;
        assert!(call.body.contains("\"attempts\":1"), "{}", call.body);

        // 5. A scheduled function fires: run its CronJob now, as the schedule would.
        let cronjobs: Api<CronJob> = ns.api();
        let cron = cronjobs
            .list(&ListParams::default().labels(&format!(
                "kpages.dev/deploy={net1},kpages.dev/function=nightly-report"
            )))
            .await
            .unwrap()
            .items;
        assert_eq!(cron.len(), 1, "one CronJob for nightly-report");
        let cron_name = cron[0].name_any();
        let out = cluster
            .kubectl(&["create", "job", "-n", &n, "--from", &format!("cronjob/{cron_name}"), "nightly-now"])
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let jobs: Api<Job> = ns.api();
        wait::until(&jobs, "nightly-now", DEADLINE, |j: Option<&Job>| {
            j.and_then(|j| j.status.as_ref()).and_then(|s| s.succeeded) == Some(1)
        })
        .await
        .unwrap();
        let logs = logs_until(&ns, &net1, "nightly report done; next run").await;
        let next_run = logs
            .split("nightly report done; next run ")
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .unwrap();
        assert!(next_run.ends_with("03:00:00.000Z") || next_run.contains("T03:00:00"), "next_run {next_run}");

        // 6. A second deploy goes live atomically: every answer meanwhile is the old page or
        //    the new one, never an error, and never the old one after the new one.
        let index = edge_dir.join("dist/index.html");
        let page = std::fs::read_to_string(&index).unwrap();
        std::fs::write(&index, page.replace("EdgeOne Pages on kpages", "Second deploy")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = tokio::spawn({
            let stop = stop.clone();
            let router = Router::new(forward.port);
            async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = router.get(edge, "/").await;
                    let which = if r.body.contains("Second deploy") {
                        2
                    } else if r.body.contains("EdgeOne Pages on kpages") {
                        1
                    } else {
                        0
                    };
                    seen.push((r.status, which));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            }
        });
        let edge2 = cli.deploy_prod(&edge_dir, "edge", &sites).await;
        assert_ne!(edge1, edge2);
        active_deploy(&sites, "edge", &edge2).await;
        router
            .get_until(edge, "/", DEADLINE, |r| r.body.contains("Second deploy"))
            .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = watcher.await.unwrap();
        assert!(seen.len() > 5, "{seen:?}");
        assert!(seen.iter().all(|&(s, w)| s == 200 && w != 0), "{seen:?}");
        let first_new = seen.iter().position(|&(_, w)| w == 2).unwrap();
        assert!(seen[first_new..].iter().all(|&(_, w)| w == 2), "flapped back: {seen:?}");

        // 7. kpages rollback brings the first back; its preview host always served it.
        let out = cli.run(&["rollback", "--site", "edge", &edge1]).await;
        assert!(out.status.success());
        active_deploy(&sites, "edge", &edge1).await;
        router
            .get_until(edge, "/", DEADLINE, |r| r.body.contains("EdgeOne Pages on kpages"))
            .await;
        let preview = router.get(&format!("{edge1}--edge.{n}.{PREVIEW}"), "/").await;
        assert!(preview.body.contains("EdgeOne Pages on kpages"), "{}", preview.body);
        let preview2 = router.get(&format!("{edge2}--edge.{n}.{PREVIEW}"), "/").await;
        assert!(preview2.body.contains("Second deploy"), "{}", preview2.body);
        let status = cli.run(&["status", "--site", "edge"]).await;
        assert!(status.status.success());
        assert!(String::from_utf8_lossy(&status.stdout).contains(&edge1));

        // 8. GitOps: --emit writes the Deploy; kubectl apply of that file deploys it.
        let emitted = work.path().join("deploy.yaml");
        let out = cli
            .run(&["deploy", edge_dir.to_str().unwrap(), "--site", "edge", "--emit", emitted.to_str().unwrap()])
            .await;
        assert!(out.status.success());
        let yaml = std::fs::read_to_string(&emitted).unwrap();
        let gitops: Deploy = serde_yaml_ng::from_str(&yaml).unwrap();
        assert!(
            deploys.get_opt(&gitops.name_any()).await.unwrap().is_none()
                || gitops.name_any() == edge2,
            "--emit must not create the Deploy itself"
        );
        let out = cluster
            .kubectl(&["apply", "-n", &n, "-f", emitted.to_str().unwrap()])
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        deploy_phase(&deploys, &gitops.name_any(), DeployPhase::Ready).await;

        // 9. Scale to zero and back: the netlify site idles (30 s), then a call wakes it.
        let deployments: Api<Deployment> = ns.api();
        let workload = kpages_crds::names::workload_name(&net1);
        wait::until(
            &deployments,
            &workload,
            Duration::from_secs(240),
            |d: Option<&Deployment>| {
                d.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas) == Some(0)
            },
        )
        .await
        .unwrap();
        // Scaled to zero: no function pod left at all.
        let pods: Api<Pod> = ns.api();
        let by_deploy = ListParams::default().labels(&format!(
            "kpages.dev/deploy={net1},app.kubernetes.io/component=functions"
        ));
        eventually_async(DEADLINE, "the idle deploy's pods to be gone", || {
            let (pods, by_deploy) = (&pods, &by_deploy);
            async move { pods.list(by_deploy).await.unwrap().items.is_empty() }
        })
        .await;
        let d = deploys.get(&net1).await.unwrap();
        assert_eq!(d.status.as_ref().unwrap().phase, DeployPhase::Ready, "idle, still live");
        let cold = router.get(&net, "/api/hello?name=cold").await;
        assert_eq!(cold.status, 200, "{}", cold.body);
        assert!(cold.body.contains("hello, cold"), "{}", cold.body);
        let d = deployments.get(&workload).await.unwrap();
        assert_eq!(d.spec.unwrap().replicas, Some(1), "woken by the call");

        // 10. Deleting a Site removes everything it owned.
        let out = cluster
            .kubectl(&["delete", "site", "-n", &n, "net", "--wait=true"])
            .await
            .unwrap();
        assert!(out.status.success());
        let by_site = ListParams::default().labels("kpages.dev/site=net");
        eventually_async(DEADLINE, "the deleted site's objects to be gone", || {
            let (deployments, cronjobs, deploys, by_site) = (&deployments, &cronjobs, &deploys, &by_site);
            async move {
                let left = deployments.list(by_site).await.unwrap().items.len()
                    + cronjobs.list(by_site).await.unwrap().items.len()
                    + deploys
                        .list(&ListParams::default())
                        .await
                        .unwrap()
                        .items
                        .iter()
                        .filter(|d| d.spec.site == "net")
                        .count();
                if left == 0 {
                    Ok(())
                } else {
                    Err(format!("{left} remain"))
                }
            }
        })
        .await;
        router.get_until(&net, "/", DEADLINE, |r| r.status == 404).await;

        let out = cluster.helm(&["uninstall", &release, "--namespace", &n]).await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        drop((bridge, minio, forward, nats_bridge, nats));
    })
    .await;
}
