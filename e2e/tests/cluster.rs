//! The testbed is a real Kubernetes: the node is Ready, a Node.js 20 pod from the locally built
//! image serves HTTP on its pod IP and logs through kubectl, and a Deployment rolls out (so the
//! controller-manager and the scheduler work).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kpages_e2e::{Cluster, TestNamespace, wait};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

const NODE_IMAGE: &str = "localhost/kpages/node:20";
const DEADLINE: Duration = Duration::from_secs(120);

/// A Node 20 HTTP server answering `hello from <pod name>` on :8080, with a readiness probe.
fn hello_server(name: &str, labels: serde_json::Value) -> serde_json::Value {
    let script = "const http = require('http'); \
        http.createServer((req, res) => res.end('hello from ' + process.env.HOSTNAME + ' on node ' + process.version)) \
        .listen(8080, () => console.log('listening on 8080'));";
    json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "hello",
                "image": NODE_IMAGE,
                "imagePullPolicy": "Never",
                "args": ["-e", script],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                "securityContext": {"runAsUser": 1000, "runAsNonRoot": true, "allowPrivilegeEscalation": false}
            }]
        }
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_node_is_ready() {
    let cluster = Cluster::get().expect("cluster up");
    let client = cluster.client().await.expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    let node = wait::until(&nodes, "kpages-e2e", DEADLINE, wait::node_ready())
        .await
        .expect("node Ready");
    let info = node.status.and_then(|s| s.node_info).expect("node info");
    assert!(
        info.kubelet_version.starts_with("v1.35."),
        "kubelet reports {}",
        info.kubelet_version
    );
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{}",
        info.container_runtime_version
    );
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "35"),
        "{version:?}"
    );
    assert!(
        version.git_version.starts_with("v1.35."),
        "apiserver reports {}",
        version.git_version
    );
}

#[tokio::test]
async fn a_node20_pod_serves_http_on_its_pod_ip_and_its_logs_are_readable() {
    TestNamespace::run("pod-http", |ns| async move {
        let pods: Api<Pod> = ns.api();
        let pod: Pod =
            serde_json::from_value(hello_server("hello", json!({"app": "hello"}))).expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        let pod = wait::until(&pods, "hello", DEADLINE, wait::pod_ready())
            .await
            .expect("pod Ready");
        let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");

        let out = ns
            .cluster
            .netns(&[
                "curl",
                "-fsS",
                "--max-time",
                "10",
                &format!("http://{ip}:8080/"),
            ])
            .await
            .expect("curl");
        assert!(out.status.success(), "curl {ip}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "hello from hello on node v20.20.2");

        let logs = ns
            .cluster
            .kubectl(&["-n", ns.name(), "logs", "hello"])
            .await
            .expect("kubectl logs");
        assert!(
            logs.status.success(),
            "kubectl logs: {}",
            text(&logs.stderr)
        );
        assert!(
            text(&logs.stdout).contains("listening on 8080"),
            "log was {:?}",
            text(&logs.stdout)
        );
    })
    .await;
}

#[tokio::test]
async fn a_deployment_rolls_out_and_rolls_forward() {
    TestNamespace::run("rollout", |ns| async move {
        let template = hello_server("unused", json!({"app": "web"}));
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": template["spec"]}
            }
        }))
        .expect("deployment");
        let deployments: Api<Deployment> = ns.api();
        deployments.create(&PostParams::default(), &deployment).await.expect("create deployment");
        wait::until(&deployments, "web", DEADLINE, wait::deployment_rolled_out()).await.expect("first rollout");

        // A new template makes a new ReplicaSet; the rollout replaces both pods.
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kpages.dev/revision": "2"}}}}});
        deployments.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
        let rolled = wait::until(&deployments, "web", DEADLINE, wait::deployment_rolled_out()).await.expect("second rollout");
        assert_eq!(rolled.metadata.generation, Some(2));

        let pods: Api<Pod> = ns.api();
        let list = pods.list(&kube::api::ListParams::default().labels("app=web")).await.expect("list pods");
        let current: Vec<_> = list
            .into_iter()
            .filter(|p| p.metadata.annotations.as_ref().is_some_and(|a| a.get("kpages.dev/revision").is_some_and(|v| v == "2")))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        assert_eq!(current.len(), 2, "two pods of the new revision");
        for pod in current {
            let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");
            let out = ns.cluster.netns(&["curl", "-fsS", "--max-time", "10", &format!("http://{ip}:8080/")]).await.expect("curl");
            assert!(out.status.success(), "curl {ip}: {}", text(&out.stderr));
        }
    })
    .await;
}

#[tokio::test]
async fn a_cluster_ip_service_routes_to_its_pod() {
    TestNamespace::run("service", |ns| async move {
        let pods: Api<Pod> = ns.api();
        let pod: Pod = serde_json::from_value(hello_server("backend", json!({"app": "backend"})))
            .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        let services: Api<k8s_openapi::api::core::v1::Service> = ns.api();
        let service = serde_json::from_value(json!({
            "metadata": {"name": "backend"},
            "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .expect("service");
        let service = services
            .create(&PostParams::default(), &service)
            .await
            .expect("create service");
        let cluster_ip = service.spec.and_then(|s| s.cluster_ip).expect("cluster IP");
        wait::until(&pods, "backend", DEADLINE, wait::pod_ready())
            .await
            .expect("pod Ready");

        // kube-proxy programs the rule shortly after the EndpointSlice is ready: retry the request
        // (bounded) rather than sleeping a guessed time.
        let out = ns
            .cluster
            .netns(&[
                "curl",
                "-fsS",
                "--max-time",
                "5",
                "--retry",
                "20",
                "--retry-delay",
                "1",
                "--retry-all-errors",
                &format!("http://{cluster_ip}/"),
            ])
            .await
            .expect("curl");
        assert!(
            out.status.success(),
            "curl {cluster_ip}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "hello from backend on node v20.20.2");
    })
    .await;
}

#[tokio::test]
async fn helm_installs_a_chart_and_knows_the_cluster_version() {
    TestNamespace::run("helm", |ns| async move {
        let chart = std::env::temp_dir().join(format!("kpages-e2e-chart-{}", ns.name()));
        std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
        std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: probe\nversion: 0.1.0\n").expect("Chart.yaml");
        std::fs::write(
            chart.join("templates/configmap.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\ndata: {kube: \"{{ .Capabilities.KubeVersion.Version }}\"}\n",
        )
        .expect("template");
        let chart_path = chart.to_string_lossy().into_owned();

        // Offline rendering assumes the minor helm was built for, not Kubernetes 1.20.
        let template = ns.cluster.helm(&["template", &chart_path]).await.expect("helm template");
        assert!(template.status.success(), "helm template: {}", text(&template.stderr));
        assert!(text(&template.stdout).contains("v1.35."), "{}", text(&template.stdout));

        let install = ns.cluster.helm(&["install", "probe", &chart_path, "-n", ns.name(), "--wait", "--timeout", "60s"]).await.expect("helm install");
        assert!(install.status.success(), "helm install: {}", text(&install.stderr));
        let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = ns.api();
        let cm = configmaps.get("probe").await.expect("configmap installed by helm");
        let kube = cm.data.and_then(|d| d.get("kube").cloned()).unwrap_or_default();
        assert!(kube.starts_with("v1.35."), "helm saw Kubernetes {kube}");
        std::fs::remove_dir_all(&chart).ok();
    })
    .await;
}
