//! The Helm chart (`charts/kpages/`), checked with the testbed's own Helm v3.20: `helm lint
//! --strict` and `helm template --kube-version 1.35.0`, whose output is parsed and asserted on —
//! the environment contract of the binaries (against the chart README's table), the values
//! schema, optional pieces, pod settings, disruption budgets, and that the chart ships exactly
//! the CRDs in `crds/generated/`. Two tests use the running cluster: the API server accepts every
//! rendered object (server-side dry run), and the install NOTES say how to reach the router.
//! RBAC, pod security and network policies are checked in `chart_security.rs`.
//!
//! Most tests need only the helm binary, which the testbed builds (`e2e/cluster bin-dir`), so
//! they live behind the `cluster` feature with the other tests of this crate.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use kpages_e2e::chart::{
    KUBE_VERSION, NAMESPACE, STORE, chart, container, env, env_value, helm, helm_bin, parse_docs,
    render, rendered_yaml, seq, str, try_render,
};
use kpages_e2e::platform::repo;
use serde_yaml_ng::Value;

#[test]
fn helm_lint_strict_passes_for_an_external_store_the_quick_start_and_every_option() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &[STORE],
        &["minio.enabled=true", "natsServer.enabled=true"],
        &[
            STORE,
            "nats.url=nats://nats.messaging:4222",
            "nats.existingSecret=nats-creds",
            "store.existingSecret=s3-creds",
            "watchNamespaces={team-a,team-b}",
            "operator.replicas=2",
            "metrics.serviceMonitor.enabled=true",
            "minio.enabled=true",
            "minio.persistence.enabled=true",
            "natsServer.enabled=true",
            "natsServer.persistence.enabled=true",
            "router.service.type=NodePort",
            "router.service.nodePort=30080",
            "image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
    ];
    for sets in cases {
        let mut args = vec!["lint", "--strict", chart, "--kube-version", KUBE_VERSION];
        for s in *sets {
            args.extend(["--set", s]);
        }
        let out = helm(&args);
        assert!(
            out.status.success(),
            "helm lint --strict {sets:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        render(sets);
    }
}

#[test]
fn chart_crds_are_exactly_the_generated_crds() {
    let generated = repo().join("crds/generated");
    let shipped = chart().join("crds");
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let generated_names = names(&generated);
    assert_eq!(generated_names.len(), 3, "{generated_names:?}");
    assert_eq!(
        names(&shipped),
        generated_names,
        "charts/kpages/crds/ must hold exactly the files of crds/generated/ (copy them again)"
    );
    for name in &generated_names {
        let want = std::fs::read(generated.join(name)).unwrap();
        let got = std::fs::read(shipped.join(name)).unwrap();
        assert!(
            want == got,
            "charts/kpages/crds/{name} differs from crds/generated/{name}: copy it again \
             (cp crds/generated/*.yaml charts/kpages/crds/)"
        );
    }
    // And Helm really ships them: `--include-crds` prints these three CRDs, nothing templated.
    let chart = chart();
    let out = helm(&[
        "template",
        "kpages",
        chart.to_str().unwrap(),
        "--include-crds",
        "--kube-version",
        KUBE_VERSION,
        "--set",
        STORE,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crds: BTreeSet<String> = parse_docs(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| format!("{}.yaml", str(&o["metadata"]["name"])))
        .collect();
    assert_eq!(crds, generated_names);
}

#[test]
fn pod_settings_reach_the_pods() {
    let r = render(&[
        STORE,
        "operator.nodeSelector.disk=ssd",
        "operator.tolerations[0].key=dedicated",
        "operator.tolerations[0].operator=Exists",
        "router.podAnnotations.team=web",
        "router.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
        "router.extraEnv[0].name=KPAGES_EXTRA",
        "router.extraEnv[0].value=yes",
        "operator.resources.limits.memory=1Gi",
    ]);
    let op = &r.get("Deployment", "kpages-operator")["spec"]["template"]["spec"];
    assert_eq!(op["nodeSelector"]["disk"], "ssd");
    assert_eq!(op["tolerations"][0]["key"], "dedicated");
    assert_eq!(op["containers"][0]["resources"]["limits"]["memory"], "1Gi");
    let router = r.get("Deployment", "kpages-router");
    let tpl = &router["spec"]["template"];
    assert_eq!(tpl["metadata"]["annotations"]["team"], "web");
    assert_eq!(
        tpl["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["weight"],
        1
    );
    assert_eq!(
        env_value(container(router, "router"), "KPAGES_EXTRA"),
        "yes"
    );
}

#[test]
fn unknown_values_keys_are_rejected_at_every_level() {
    for bad in [
        "replicas=2",                              // top level
        "operator.replica=2",                      // a misspelt component setting
        "router.service.portt=80",                 // nested
        "router.securityContext.privilegedd=true", // inside a security context
        "minio.persistence.sise=1Gi",              // a built-in server
        "metrics.serviceMonitor.enable=true",      // one letter short
        "operator.resources.limits.memory=lots",   // not a quantity
        "logFormat=yaml",                          // not an accepted value
        "watchNamespaces={Team_A}",                // not a namespace name
        "store.url=http://not-a-store",            // not a store URL
    ] {
        let err = match try_render(&[STORE, bad]) {
            Ok(_) => panic!("--set {bad} was accepted"),
            Err(e) => e,
        };
        assert!(
            err.contains("don't meet the specifications of the schema"),
            "--set {bad}: not a schema error:\n{err}"
        );
    }
    // The well-spelt values next to them are accepted.
    render(&[STORE, "operator.replicas=2", "router.service.port=8080"]);
}

/// Every object in values.schema.json either lists its properties and rejects others, or is a
/// map whose values it types; a plain `"type": "object"` is allowed only for Kubernetes objects
/// passed through as is (described as such) and Helm's `global`.
#[test]
fn every_object_in_the_values_schema_rejects_unknown_keys() {
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(chart().join("values.schema.json")).expect("values.schema.json"),
    )
    .expect("values.schema.json is JSON");
    let mut checked = 0;
    fn walk(v: &serde_json::Value, path: &str, checked: &mut usize) {
        match v {
            serde_json::Value::Object(m) => {
                if m.contains_key("properties") {
                    *checked += 1;
                    assert_eq!(
                        m.get("additionalProperties"),
                        Some(&serde_json::Value::Bool(false)),
                        "{path} lists properties but accepts unknown keys"
                    );
                }
                for (k, child) in m {
                    walk(child, &format!("{path}/{k}"), checked);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    walk(child, &format!("{path}/{i}"), checked);
                }
            }
            _ => {}
        }
    }
    walk(&schema, "#", &mut checked);
    assert!(checked > 20, "only {checked} objects with properties");
    // Every top-level key of values.yaml is in the schema, and the other way round.
    let values: Value =
        serde_yaml_ng::from_slice(&std::fs::read(chart().join("values.yaml")).unwrap())
            .expect("values.yaml");
    let in_values: BTreeSet<String> = values
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| str(k).to_string())
        .collect();
    let mut in_schema: BTreeSet<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    in_schema.remove("global");
    assert_eq!(in_values, in_schema);
}

#[test]
fn optional_pieces_render_only_when_enabled() {
    let plain = render(&[STORE]);
    let names = plain.kinds_and_names();
    for absent in ["kpages-minio", "kpages-nats"] {
        assert!(
            !names.iter().any(|n| n.ends_with(&format!("/{absent}"))),
            "{absent} rendered while disabled: {names:?}"
        );
    }
    assert_eq!(plain.of_kind("ServiceMonitor").count(), 0);
    assert_eq!(plain.of_kind("PersistentVolumeClaim").count(), 0);
    assert_eq!(
        plain.of_kind("Secret").count(),
        0,
        "no Secret unless minio generates one"
    );

    let all = render(&[
        STORE,
        "minio.enabled=true",
        "natsServer.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prometheus",
    ]);
    for (kind, name) in [
        ("Deployment", "kpages-minio"),
        ("Service", "kpages-minio"),
        ("Secret", "kpages-minio"),
        ("NetworkPolicy", "kpages-minio"),
        ("Deployment", "kpages-nats"),
        ("Service", "kpages-nats"),
        ("NetworkPolicy", "kpages-nats"),
        ("ServiceMonitor", "kpages-operator"),
        ("ServiceMonitor", "kpages-router"),
    ] {
        all.get(kind, name);
    }
    let sm = all.get("ServiceMonitor", "kpages-router");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(
        all.get("ServiceMonitor", "kpages-operator")["spec"]["endpoints"][0]["port"],
        "metrics"
    );
    // The ports the ServiceMonitors name exist on the Services they select.
    let admin = all.get("Service", "kpages-router-admin");
    assert_eq!(admin["spec"]["ports"][0]["name"], "admin");
    assert_eq!(admin["spec"]["ports"][0]["port"], 9090);

    // Data: emptyDir unless persistence is enabled, then a claim.
    let minio = all.get("Deployment", "kpages-minio");
    let data = |d: &Value| {
        seq(&d["spec"]["template"]["spec"]["volumes"])
            .iter()
            .find(|v| v["name"] == "data")
            .cloned()
            .unwrap()
    };
    assert!(data(minio)["emptyDir"].is_mapping());
    let persistent = render(&[
        "minio.enabled=true",
        "minio.persistence.enabled=true",
        "natsServer.enabled=true",
        "natsServer.persistence.enabled=true",
    ]);
    for name in ["kpages-minio", "kpages-nats"] {
        persistent.get("PersistentVolumeClaim", name);
        assert_eq!(
            data(persistent.get("Deployment", name))["persistentVolumeClaim"]["claimName"],
            name
        );
    }
    // NATS runs with JetStream, storing under /data.
    let nats = container(all.get("Deployment", "kpages-nats"), "nats");
    let args: Vec<&str> = seq(&nats["args"]).iter().map(str).collect();
    assert!(
        args.windows(3).any(|w| w == ["-js", "-sd", "/data"]),
        "{args:?}"
    );
    assert_eq!(nats["image"], "localhost/kpages/nats:dev");
    let minio = container(all.get("Deployment", "kpages-minio"), "minio");
    assert_eq!(minio["image"], "localhost/kpages/minio:dev");
    assert_eq!(seq(&minio["args"])[0], "server");
}

#[test]
fn builtin_servers_become_the_default_store_and_queue() {
    let r = render(&["minio.enabled=true", "natsServer.enabled=true"]);
    let operator = container(r.get("Deployment", "kpages-operator"), "operator");
    let router = container(r.get("Deployment", "kpages-router"), "router");
    let store = "s3://kpages?endpoint=http://kpages-minio.kpages-system.svc:9000";
    for c in [operator, router] {
        assert_eq!(env_value(c, "KPAGES_STORE_URL"), store);
        for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let from = &env(c)[key]["valueFrom"]["secretKeyRef"];
            assert_eq!(from["name"], "kpages-minio", "{key}");
            assert_eq!(from["key"], key);
        }
    }
    assert_eq!(
        env_value(router, "KPAGES_NATS_URL"),
        "nats://kpages-nats.kpages-system.svc:4222"
    );
    // MinIO's root user is the same Secret the clients read, and it creates the bucket.
    let minio_deploy = r.get("Deployment", "kpages-minio");
    let minio = container(minio_deploy, "minio");
    assert_eq!(
        env(minio)["MINIO_ROOT_USER"]["valueFrom"]["secretKeyRef"]["name"],
        "kpages-minio"
    );
    let init = &minio_deploy["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(env_value(init, "BUCKET"), "kpages");
    let secret = r.get("Secret", "kpages-minio");
    assert!(!str(&secret["data"]["AWS_SECRET_ACCESS_KEY"]).is_empty());

    // Explicit settings win over the built-ins; an existing Secret replaces the generated one.
    let r = render(&[
        STORE,
        "store.existingSecret=s3-creds",
        "nats.url=nats://nats.messaging:4222",
        "minio.enabled=true",
        "minio.existingSecret=s3-creds",
        "natsServer.enabled=true",
    ]);
    let router = container(r.get("Deployment", "kpages-router"), "router");
    assert_eq!(
        env_value(router, "KPAGES_STORE_URL"),
        "s3://sites/prod?endpoint=http://s3.storage:9000"
    );
    assert_eq!(
        env_value(router, "KPAGES_NATS_URL"),
        "nats://nats.messaging:4222"
    );
    assert_eq!(
        env(router)["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"],
        "s3-creds"
    );
    assert!(r.find("Secret", "kpages-minio").is_none());
}

#[test]
fn store_url_is_required_without_the_builtin_server() {
    let Err(err) = try_render(&[]) else {
        panic!("rendered without a store");
    };
    assert!(
        err.contains("store.url is required") && err.contains("minio.enabled=true"),
        "{err}"
    );
    // Without a store Secret the binaries get no credential variables (IAM, local files).
    let r = render(&[STORE]);
    let router = container(r.get("Deployment", "kpages-router"), "router");
    assert!(!env(router).contains_key("AWS_ACCESS_KEY_ID"));
    assert_eq!(env_value(router, "KPAGES_NATS_URL"), "");
    // NATS credentials arrive as the router's environment from the named Secret.
    let r = render(&[STORE, "nats.existingSecret=nats-creds"]);
    let router = container(r.get("Deployment", "kpages-router"), "router");
    assert_eq!(router["envFrom"][0]["secretRef"]["name"], "nats-creds");
}

/// The environment variables the chart sets are exactly the ones the chart README's contract
/// table documents, so the binaries' authors and the chart cannot drift apart silently.
#[test]
fn the_binaries_get_exactly_the_documented_environment() {
    let r = render(&[
        "minio.enabled=true",
        "natsServer.enabled=true",
        "store.podUrl=s3://kpages?endpoint=http://10.202.0.9:9000",
        "watchNamespaces={team-a}",
    ]);
    let operator = container(r.get("Deployment", "kpages-operator"), "operator");
    let router = container(r.get("Deployment", "kpages-router"), "router");
    let readme = std::fs::read_to_string(chart().join("README.md")).expect("chart README.md");
    // Rows of the contract table: | `NAME` | binaries | meaning | values key |
    let mut documented: BTreeMap<String, String> = BTreeMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 5 && cells[1].starts_with('`') && cells[1].ends_with('`') {
            let name = cells[1].trim_matches('`');
            if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                documented.insert(name.to_string(), cells[2].to_string());
            }
        }
    }
    assert!(
        documented.len() > 10,
        "contract table not found: {documented:?}"
    );
    for (binary, c) in [("kpages-operator", operator), ("kpages-router", router)] {
        let set: BTreeSet<String> = env(c).into_keys().collect();
        let documented_for: BTreeSet<String> = documented
            .iter()
            .filter(|(_, who)| who.contains(binary) || who.contains("both"))
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(
            set, documented_for,
            "{binary}: env the chart sets vs. the README's contract table"
        );
    }
    // The values behind a few of them.
    assert_eq!(env_value(router, "KPAGES_HTTP_ADDR"), "0.0.0.0:8080");
    assert_eq!(env_value(router, "KPAGES_ADMIN_ADDR"), "0.0.0.0:9090");
    assert_eq!(env_value(router, "KPAGES_LOG_FORMAT"), "json");
    assert_eq!(env_value(router, "RUST_LOG"), "info");
    assert_eq!(
        env_value(operator, "KPAGES_ROUTER_ADMIN_URL"),
        "http://kpages-router-admin.kpages-system.svc:9090"
    );
    assert_eq!(
        env_value(operator, "KPAGES_IMAGE"),
        "localhost/kpages/kpages:dev"
    );
    assert_eq!(
        env_value(operator, "KPAGES_NODE_IMAGE"),
        "localhost/kpages/node:20"
    );
    assert_eq!(
        env_value(operator, "KPAGES_POD_STORE_URL"),
        "s3://kpages?endpoint=http://10.202.0.9:9000"
    );
    assert_eq!(
        env_value(operator, "KPAGES_STORE_CREDENTIALS_SECRET"),
        "kpages-store"
    );
    assert_eq!(env_value(operator, "KPAGES_METRICS_ADDR"), "0.0.0.0:8080");
}

#[test]
fn pod_disruption_budgets_exist_only_with_more_than_one_replica() {
    let r = render(&[STORE]);
    assert!(r.find("PodDisruptionBudget", "kpages-operator").is_none());
    let router = r.get("PodDisruptionBudget", "kpages-router");
    assert_eq!(router["spec"]["minAvailable"], 1);
    assert_eq!(
        router["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "router"
    );
    let r = render(&[STORE, "operator.replicas=2", "router.replicas=1"]);
    r.get("PodDisruptionBudget", "kpages-operator");
    assert!(r.find("PodDisruptionBudget", "kpages-router").is_none());
    let r = render(&[STORE, "router.podDisruptionBudget.enabled=false"]);
    assert_eq!(r.of_kind("PodDisruptionBudget").count(), 0);
}

/// The real API server accepts every object the chart renders (fields, enums, selectors):
/// a server-side dry run, which changes nothing in the shared cluster.
#[test]
fn the_api_server_accepts_every_rendered_object() {
    let cluster = kpages_e2e::Cluster::get().expect("testbed cluster");
    let kubectl = helm_bin().with_file_name("kubectl");
    for sets in [
        &[
            "minio.enabled=true",
            "natsServer.enabled=true",
            "minio.persistence.enabled=true",
            "natsServer.persistence.enabled=true",
            "operator.replicas=2",
            "networkPolicy.metricsFrom[0].podSelector.matchLabels.app=prometheus",
        ][..],
        &[STORE, "watchNamespaces={default,kube-public}"][..],
    ] {
        let yaml = rendered_yaml(sets, "default");
        let mut child = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["apply", "--dry-run=server", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{sets:?}: the API server refused:\n{}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let objects = parse_docs(&yaml).len();
        assert_eq!(
            stdout.matches("(server dry run)").count(),
            objects,
            "{stdout}"
        );
    }
}

/// `helm install` prints NOTES that say how to reach the router and deploy a first site
/// (client-side dry run: Helm only asks the API server for its version).
#[test]
fn install_notes_tell_how_to_reach_the_router_and_deploy_a_first_site() {
    let cluster = kpages_e2e::Cluster::get().expect("testbed cluster");
    let chart = chart();
    let out = Command::new(helm_bin())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args([
            "install",
            "kpages",
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--dry-run=client",
            "--set",
            "minio.enabled=true",
        ])
        .output()
        .expect("helm install --dry-run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notes = stdout.split("NOTES:").nth(1).expect("NOTES in the output");
    for want in [
        "kubectl -n kpages-system port-forward service/kpages-router 8080:80",
        "http://kpages-router.kpages-system.svc:80",
        "kind: Site",
        "kpages deploy . --site hello --namespace my-sites --prod",
        "--emit deploy.yaml",
        "s3://kpages?endpoint=http://kpages-minio.kpages-system.svc:9000",
        "get secret kpages-minio",
    ] {
        assert!(notes.contains(want), "NOTES lack {want:?}:\n{notes}");
    }
}
