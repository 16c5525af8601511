//! The operator against the real testbed cluster. The operator runs in this test process
//! (`kpages_operator::cli::run`, the same code as the binary) and talks to the apiserver through
//! the kubeconfig on 127.0.0.1. Most tests use a local-filesystem store only the operator reads,
//! so they need neither MinIO nor the kpages image (function pods are created but their init
//! container cannot reach that store). The pods-become-Ready test runs a real MinIO on the
//! host's loopback, bridges it into the testbed's namespace with socat (as the testbed bridges
//! the apiserver) and loads the current `localhost/kpages/kpages:dev` image first.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kpages_crds::manifest::Function;
use kpages_crds::{Deploy, DeployPhase, FunctionRoute, Manifest, Site};
use kpages_e2e::services::{Bridge, NODE_IP};
use kpages_e2e::{TestNamespace, wait};
use kpages_operator::cli::RunArgs;
use kpages_store::BlobStore;
use kpages_testsupport::MinIo;
use kpages_testsupport::fixtures::{function, route, scheduled};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(90);

/// Starts an operator replica scoped to the test's namespace; aborting the handle kills it.
fn start_operator(ns: &TestNamespace, store: &str, identity: &str) -> tokio::task::JoinHandle<()> {
    let config = run_args(ns, store, identity).config().unwrap();
    let client = ns.client.clone();
    tokio::spawn(async move {
        if let Err(e) = kpages_operator::cli::run(client, config, std::future::pending()).await {
            eprintln!("operator {e}");
        }
    })
}

/// Like [`start_operator`], with a store opened here (credentials the process environment does
/// not have) and the URL function pods reach the same store at.
fn start_operator_with_store(
    ns: &TestNamespace,
    store: BlobStore,
    pod_store_url: &str,
    identity: &str,
) -> tokio::task::JoinHandle<()> {
    let config = run_args(ns, pod_store_url, identity).config().unwrap();
    let client = ns.client.clone();
    tokio::spawn(async move {
        let stop = std::future::pending();
        if let Err(e) = kpages_operator::cli::run_with_store(client, config, store, stop).await {
            eprintln!("operator {e}");
        }
    })
}

fn run_args(ns: &TestNamespace, store: &str, identity: &str) -> RunArgs {
    RunArgs {
        store_url: store.into(),
        pod_store_url: None,
        store_credentials_secret: "kpages-store".into(),
        namespaces: vec![ns.name().into()],
        kpages_image: "localhost/kpages/kpages:dev".into(),
        runtime_dir: "/opt/kpages/runtime".into(),
        node_image: None,
        router_admin_url: "http://10.200.0.1:9090".into(),
        router_namespace: None,
        router_pod_labels: "app.kubernetes.io/name=kpages-router".into(),
        preview_domain: "preview.kpages.localhost".into(),
        url_scheme: "http".into(),
        metrics_addr: String::new(),
        lease_namespace: ns.name().into(),
        lease_name: "kpages-operator".into(),
        identity: Some(identity.into()),
        lease_duration_seconds: 6,
    }
}

/// Stores a manifest (and its bundles) in the store; returns its digest.
async fn store_manifest(store: &BlobStore, functions: Vec<Function>, marker: &str) -> String {
    let mut m = Manifest::new();
    m.site.not_found_page = Some(format!("/{marker}.html"));
    for mut f in functions {
        f.bundle = store
            .put_bytes(format!("export default () => new Response('{}')", f.name).into())
            .await
            .unwrap();
        m.functions.push(f);
    }
    store.put_manifest(&m).await.unwrap().to_string()
}

async fn create_site(ns: &TestNamespace, extra: serde_json::Value) {
    let mut site = json!({"apiVersion": "kpages.dev/v1alpha1", "kind": "Site",
        "metadata": {"name": "web"}, "spec": {"functions": {"image": "localhost/kpages/node:20"}}});
    if let Some(obj) = extra.as_object() {
        for (k, v) in obj {
            site["spec"][k] = v.clone();
        }
    }
    let site: Site = serde_json::from_value(site).unwrap();
    ns.api::<Site>()
        .create(&PostParams::default(), &site)
        .await
        .unwrap();
}

async fn create_deploy(ns: &TestNamespace, name: &str, manifest: &str) {
    let d: Deploy = serde_json::from_value(
        json!({"apiVersion": "kpages.dev/v1alpha1", "kind": "Deploy",
        "metadata": {"name": name},
        "spec": {"site": "web", "manifest": manifest, "context": "production"}}),
    )
    .unwrap();
    ns.api::<Deploy>()
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
}

fn phase_is(want: DeployPhase) -> impl Fn(Option<&Deploy>) -> bool {
    move |d| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.phase == want)
    }
}

fn active_is(want: &'static str) -> impl Fn(Option<&Site>) -> bool {
    move |s| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|s| s.active_deploy.as_deref())
            == Some(want)
    }
}

#[tokio::test]
async fn a_deploy_naming_a_missing_manifest_fails_with_manifest_not_found_and_no_pods() {
    TestNamespace::run("op-missing", |ns| async move {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("file://{}", dir.path().display());
        let op = start_operator(&ns, &store, "a");
        create_site(&ns, json!({})).await;
        let missing = format!("sha256:{}", "ab".repeat(32));
        create_deploy(&ns, "v1", &missing).await;
        let d = wait::until(
            &ns.api::<Deploy>(),
            "v1",
            DEADLINE,
            phase_is(DeployPhase::Failed),
        )
        .await
        .unwrap();
        let ready = d
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason, "ManifestNotFound", "{}", ready.message);
        let deployments = ns
            .api::<Deployment>()
            .list(&ListParams::default())
            .await
            .unwrap();
        assert!(deployments.items.is_empty());
        let pods = ns.api::<Pod>().list(&ListParams::default()).await.unwrap();
        assert!(pods.items.is_empty());
        op.abort();
    })
    .await;
}

#[tokio::test]
async fn a_deploy_owns_its_objects_and_deleting_it_removes_them() {
    TestNamespace::run("op-owned", |ns| async move {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("file://{}", dir.path().display());
        let store = BlobStore::from_url(&store_url).unwrap();
        let digest = store_manifest(
            &store,
            vec![
                Function {
                    routes: vec![route("/api/hello")],
                    ..function("hello")
                },
                scheduled("nightly", "@hourly"),
            ],
            "owned",
        )
        .await;
        let op = start_operator(&ns, &store_url, "a");
        create_site(&ns, json!({"pinnedDeploy": "v1"})).await;
        create_deploy(&ns, "v1", &digest).await;
        let deployments = ns.api::<Deployment>();
        let deployment = wait::until(&deployments, "v1-fn", DEADLINE, |d: Option<&Deployment>| {
            d.is_some()
        })
        .await
        .unwrap();
        let owner = &deployment.metadata.owner_references.clone().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Deploy", "v1"));
        wait::until(
            &ns.api::<Service>(),
            "v1-fn",
            DEADLINE,
            |s: Option<&Service>| s.is_some(),
        )
        .await
        .unwrap();
        let route = wait::until(
            &ns.api::<FunctionRoute>(),
            "v1-hello-0",
            DEADLINE,
            |r: Option<&FunctionRoute>| r.is_some(),
        )
        .await
        .unwrap();
        assert_eq!(route.owner_references()[0].name, "v1");
        // Pinned, so active at once: its scheduled function gets a CronJob.
        let cron =
            Api::<k8s_openapi::api::batch::v1::CronJob>::namespaced(ns.client.clone(), ns.name());
        wait::until(
            &cron,
            "v1-nightly",
            DEADLINE,
            |c: Option<&k8s_openapi::api::batch::v1::CronJob>| c.is_some(),
        )
        .await
        .unwrap();

        ns.api::<Deploy>()
            .delete("v1", &DeleteParams::foreground())
            .await
            .unwrap();
        wait::until(&deployments, "v1-fn", DEADLINE, |d: Option<&Deployment>| {
            d.is_none()
        })
        .await
        .ok();
        let left = deployments.get_opt("v1-fn").await.unwrap();
        assert!(
            left.is_none(),
            "the garbage collector removes what the Deploy owned"
        );
        assert!(
            ns.api::<FunctionRoute>()
                .get_opt("v1-hello-0")
                .await
                .unwrap()
                .is_none()
        );
        op.abort();
    })
    .await;
}

#[tokio::test]
async fn pinning_an_older_deploy_switches_the_active_deploy() {
    TestNamespace::run("op-pin", |ns| async move {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("file://{}", dir.path().display());
        let store = BlobStore::from_url(&store_url).unwrap();
        // Static deploys (no functions) are Ready at once: no pods needed.
        let old = store_manifest(&store, vec![], "old").await;
        let new = store_manifest(&store, vec![], "new").await;
        let op = start_operator(&ns, &store_url, "a");
        create_site(&ns, json!({})).await;
        create_deploy(&ns, "v1", &old).await;
        let sites = ns.api::<Site>();
        wait::until(&sites, "web", DEADLINE, active_is("v1"))
            .await
            .unwrap();
        create_deploy(&ns, "v2", &new).await;
        wait::until(&sites, "web", DEADLINE, active_is("v2"))
            .await
            .unwrap();
        sites
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"pinnedDeploy": "v1"}})),
            )
            .await
            .unwrap();
        let site = wait::until(&sites, "web", DEADLINE, active_is("v1"))
            .await
            .unwrap();
        assert_eq!(
            site.status.unwrap().active_manifest.as_deref(),
            Some(old.as_str())
        );
        op.abort();
    })
    .await;
}

#[tokio::test]
async fn when_the_leader_dies_the_other_replica_takes_over() {
    TestNamespace::run("op-leader", |ns| async move {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("file://{}", dir.path().display());
        let store = BlobStore::from_url(&store_url).unwrap();
        let leases = ns.api::<Lease>();
        let holder = |who: &'static str| {
            move |l: Option<&Lease>| {
                l.and_then(|l| l.spec.as_ref())
                    .and_then(|s| s.holder_identity.as_deref())
                    == Some(who)
            }
        };
        let a = start_operator(&ns, &store_url, "replica-a");
        wait::until(&leases, "kpages-operator", DEADLINE, holder("replica-a"))
            .await
            .unwrap();
        let b = start_operator(&ns, &store_url, "replica-b");
        a.abort();
        wait::until(&leases, "kpages-operator", DEADLINE, holder("replica-b"))
            .await
            .unwrap();
        // The new leader reconciles.
        let digest = store_manifest(&store, vec![], "leader").await;
        create_site(&ns, json!({})).await;
        create_deploy(&ns, "v1", &digest).await;
        wait::until(
            &ns.api::<Deploy>(),
            "v1",
            DEADLINE,
            phase_is(DeployPhase::Ready),
        )
        .await
        .unwrap();
        b.abort();
    })
    .await;
}

/// Applies a Site and a Deploy whose manifest and bundles are in a real S3 server (MinIO on the
/// host's loopback, bridged into the testbed's namespace for the pods): the init container of
/// the `localhost/kpages/kpages:dev` image fetches and verifies the bundles, the host container
/// runs them, the pod becomes Ready and answers on its pod IP; the Deploy is Ready with
/// readyReplicas, becomes the Site's active deploy, and so its scheduled function gets a CronJob.
#[tokio::test]
async fn a_deploy_from_s3_runs_its_functions_in_ready_pods_that_answer_on_their_pod_ip() {
    TestNamespace::run("op-pods", |ns| async move {
        let cluster = ns.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.load_kpages_image())
            .await
            .unwrap()
            .expect("the kpages image with the current kpages-operator");
        let minio = MinIo::start_async("kpages").await;
        let bridge = Bridge::start(&ns.cluster, minio.port()).await;
        let prefix = format!("e2e/{}", ns.name());
        let store = minio.config(&prefix).open().unwrap();

        // Real ESM bundles in the Netlify v2 dialect; the answer names the deploy the pod serves.
        let mut manifest = Manifest::new();
        let hello = Function {
                    routes: vec![route("/api/hello")],
                    ..function("hello")
                };
        let nightly = scheduled("nightly", "@hourly");
        for (mut f, code) in [
            (
                hello,
                "export default async (req) => new Response(`hello from ${process.env.DEPLOY_ID} \
                 of ${process.env.SITE_NAME} (${process.env.CONTEXT}) at ${new URL(req.url).pathname}`);",
            ),
            (
                nightly,
                "export default async (req) => { await req.json(); };",
            ),
        ] {
            f.bundle = store.put_bytes(code.to_string().into()).await.unwrap();
            manifest.functions.push(f);
        }
        let digest = store.put_manifest(&manifest).await.unwrap().to_string();

        // Credentials for the init container, in the site's namespace.
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": "kpages-store"},
            "stringData": {"AWS_ACCESS_KEY_ID": MinIo::USER, "AWS_SECRET_ACCESS_KEY": MinIo::PASSWORD}
        }))
        .unwrap();
        ns.api::<k8s_openapi::api::core::v1::Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();

        let pod_store_url = minio.url_at(&format!("http://{NODE_IP}:{}", bridge.port), &prefix);
        let op = start_operator_with_store(&ns, store.clone(), &pod_store_url, "a");
        create_site(&ns, json!({})).await;
        create_deploy(&ns, "v1", &digest).await;

        // Pods: up to a fresh image's first start on a shared 2-core machine.
        let pod_deadline = Duration::from_secs(240);
        let deploys = ns.api::<Deploy>();
        let ready = wait::until(&deploys, "v1", pod_deadline, phase_is(DeployPhase::Ready))
            .await
            .unwrap();
        let status = ready.status.unwrap();
        assert!(
            status.ready_replicas.unwrap_or(0) >= 1,
            "readyReplicas: {:?}",
            status.ready_replicas
        );
        let reason = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.clone());
        assert_eq!(reason.as_deref(), Some("PodsReady"));

        let pods = ns
            .api::<Pod>()
            .list(&ListParams::default().labels("kpages.dev/deploy=v1,app.kubernetes.io/component=functions"))
            .await
            .unwrap();
        let pod = pods
            .items
            .into_iter()
            .find(|p| {
                use kube::runtime::wait::Condition;
                wait::pod_ready().matches_object(Some(p))
            })
            .expect("a Ready function pod");
        let spec = pod.spec.clone().unwrap();
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image.as_deref(), Some(kpages_e2e::KPAGES_IMAGE_NAME));
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some("localhost/kpages/node:20")
        );
        let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();

        // The host loaded both bundles...
        let out = ns
            .cluster
            .netns(&["curl", "-sS", "-m", "10", &format!("http://{ip}:9000/.kpages/ready")])
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        let readiness: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("readiness {body:?}: {e}; {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(
            readiness,
            json!({"ready": true, "functions": {"hello": "loaded", "nightly": "loaded"}})
        );
        // ...and answers a request for its function on the pod IP, as the router would send it.
        let out = ns
            .cluster
            .netns(&[
                "curl",
                "-sS",
                "-m",
                "10",
                "-w",
                "\n%{http_code}",
                "-H",
                "x-kpages-function: hello",
                "-H",
                "x-kpages-params: {}",
                &format!("http://{ip}:9000/api/hello"),
            ])
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from v1 of web (production) at /api/hello\n200",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Ready and production: the Site makes it active, and the active production deploy's
        // scheduled function gets its CronJob.
        wait::until(&ns.api::<Site>(), "web", DEADLINE, active_is("v1"))
            .await
            .unwrap();
        let cron =
            Api::<k8s_openapi::api::batch::v1::CronJob>::namespaced(ns.client.clone(), ns.name());
        let job = wait::until(
            &cron,
            "v1-nightly",
            DEADLINE,
            |c: Option<&k8s_openapi::api::batch::v1::CronJob>| c.is_some(),
        )
        .await
        .unwrap();
        assert_eq!(job.spec.unwrap().schedule, "@hourly");
        assert_eq!(job.metadata.owner_references.unwrap()[0].name, "v1");
        op.abort();
        drop(bridge);
        drop(minio);
    })
    .await;
}
