//! Least privilege in the Helm chart (`charts/kpages/`), from `helm template` output: each
//! component's RBAC is exactly what it needs (cluster-wide or per watched namespace), every pod
//! runs non-root on a read-only root filesystem without capabilities and only API clients get a
//! token, and network policies admit only the traffic each component serves. The rest of the
//! chart's checks are in `chart.rs`.
//!
//! These tests need only the helm binary, which the testbed builds (`e2e/cluster bin-dir`), so
//! they live behind the `cluster` feature with the other tests of this crate.

use std::collections::BTreeSet;

use kpages_e2e::chart::{
    NAMESPACE, STORE, assert_rules, container, env, env_value, expand, render, rules, seq, str,
};
use serde_yaml_ng::Value;

/// What the operator needs, flattened like [`rules`].
fn operator_rules() -> BTreeSet<String> {
    const KPAGES: &[&str] = &["sites", "deploys", "functionroutes"];
    const STATUS: &[&str] = &["sites/status", "deploys/status", "functionroutes/status"];
    const WRITE: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];
    expand(&[
        (
            "kpages.dev",
            KPAGES,
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        ("kpages.dev", STATUS, &["get", "update", "patch"]),
        ("apps", &["deployments"], WRITE),
        ("", &["services"], WRITE),
        ("batch", &["cronjobs"], WRITE),
        ("networking.k8s.io", &["networkpolicies"], WRITE),
        ("", &["pods"], &["get", "list", "watch"]),
        ("", &["events"], &["create", "patch"]),
        ("events.k8s.io", &["events"], &["create", "patch"]),
    ])
}

/// What the router needs, flattened like [`rules`].
fn router_rules() -> BTreeSet<String> {
    expand(&[
        (
            "kpages.dev",
            &["sites", "deploys", "functionroutes"],
            &["get", "list", "watch"],
        ),
        (
            "discovery.k8s.io",
            &["endpointslices"],
            &["get", "list", "watch"],
        ),
        // FunctionRoutes to a Service: its cluster IP.
        ("", &["services"], &["get", "list", "watch"]),
        // Scale from zero: an annotation noting calls; the operator owns replicas.
        ("kpages.dev", &["deploys"], &["patch"]),
    ])
}

#[test]
fn operator_rbac_is_exactly_what_it_needs_and_never_reads_secrets() {
    let r = render(&[STORE]);
    let role = r.get("ClusterRole", "kpages-operator");
    assert_rules(role, &operator_rules(), "operator ClusterRole");
    let got = rules(role);
    assert!(
        !got.iter().any(|r| r.contains("secrets") || r.contains('*')),
        "{got:?}"
    );
    let binding = r.get("ClusterRoleBinding", "kpages-operator");
    assert_eq!(binding["roleRef"]["name"], "kpages-operator");
    assert_eq!(binding["subjects"][0]["name"], "kpages-operator");
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);

    // Leader election: create any Lease, but read and renew only its own, in its namespace.
    let lease = r.get("Role", "kpages-operator-leader-election");
    assert_eq!(lease["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rules(lease),
        BTreeSet::from([
            "coordination.k8s.io/leases:create".to_string(),
            "coordination.k8s.io/leases:get@kpages-operator".to_string(),
            "coordination.k8s.io/leases:update@kpages-operator".to_string(),
        ])
    );
    // The Lease the operator is told to use is the one the Role names.
    let operator = container(r.get("Deployment", "kpages-operator"), "operator");
    assert_eq!(env_value(operator, "KPAGES_LEASE_NAME"), "kpages-operator");
    assert_eq!(env_value(operator, "KPAGES_LEASE_NAMESPACE"), NAMESPACE);
}

#[test]
fn router_rbac_reads_routing_objects_and_only_patches_deploys() {
    let r = render(&[STORE]);
    let role = r.get("ClusterRole", "kpages-router");
    assert_rules(role, &router_rules(), "router ClusterRole");
    let got = rules(role);
    assert!(
        !got.iter()
            .any(|r| r.starts_with("apps/") || r.contains("secrets")),
        "{got:?}"
    );
    let binding = r.get("ClusterRoleBinding", "kpages-router");
    assert_eq!(binding["subjects"][0]["name"], "kpages-router");
    // Nothing else in the chart grants anything.
    let roles: BTreeSet<String> = r
        .kinds_and_names()
        .into_iter()
        .filter(|k| k.contains("Role"))
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from(
            [
                "ClusterRole/kpages-operator",
                "ClusterRole/kpages-router",
                "ClusterRoleBinding/kpages-operator",
                "ClusterRoleBinding/kpages-router",
                "Role/kpages-operator-leader-election",
                "RoleBinding/kpages-operator-leader-election",
            ]
            .map(String::from)
        )
    );
}

#[test]
fn watch_namespaces_replaces_cluster_roles_with_roles_in_each_namespace() {
    let r = render(&[STORE, "watchNamespaces={team-a,team-b}"]);
    assert_eq!(r.of_kind("ClusterRole").count(), 0);
    assert_eq!(r.of_kind("ClusterRoleBinding").count(), 0);
    for ns in ["team-a", "team-b"] {
        for (name, want) in [
            ("kpages-operator", operator_rules()),
            ("kpages-router", router_rules()),
        ] {
            let role = r
                .of_kind("Role")
                .find(|o| o["metadata"]["name"] == name && o["metadata"]["namespace"] == ns)
                .unwrap_or_else(|| panic!("no Role {ns}/{name}"));
            assert_rules(role, &want, &format!("Role {ns}/{name}"));
            let binding = r
                .of_kind("RoleBinding")
                .find(|o| o["metadata"]["name"] == name && o["metadata"]["namespace"] == ns)
                .unwrap_or_else(|| panic!("no RoleBinding {ns}/{name}"));
            assert_eq!(binding["roleRef"]["kind"], "Role");
            assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
        }
    }
    let operator = container(r.get("Deployment", "kpages-operator"), "operator");
    let router = container(r.get("Deployment", "kpages-router"), "router");
    for c in [operator, router] {
        assert_eq!(env_value(c, "KPAGES_WATCH_NAMESPACES"), "team-a,team-b");
    }
    // The binaries read the list themselves: no single-namespace variant.
    assert!(!env(operator).contains_key("KPAGES_WATCH_NAMESPACE"));

    // Cluster-wide by default: an empty list, no namespace settings.
    let all = render(&[STORE]);
    let operator = container(all.get("Deployment", "kpages-operator"), "operator");
    assert_eq!(env_value(operator, "KPAGES_WATCH_NAMESPACES"), "");
    assert!(!env(operator).contains_key("KPAGES_WATCH_NAMESPACE"));
}

#[test]
fn every_pod_runs_non_root_read_only_without_capabilities_and_only_api_clients_get_a_token() {
    let r = render(&["minio.enabled=true", "natsServer.enabled=true"]);
    let deployments: Vec<&Value> = r.of_kind("Deployment").collect();
    assert_eq!(deployments.len(), 4, "operator, router, minio, nats");
    for d in deployments {
        let name = str(&d["metadata"]["name"]);
        let pod = &d["spec"]["template"]["spec"];
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{name}");
        assert_eq!(psc["runAsUser"], 65532, "{name}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        let talks_to_api = name == "kpages-operator" || name == "kpages-router";
        assert_eq!(
            pod["automountServiceAccountToken"], talks_to_api,
            "{name}: a token only for pods that use the API"
        );
        let containers = seq(&pod["containers"])
            .iter()
            .chain(seq(&pod["initContainers"]));
        for c in containers {
            let cname = format!("{name}/{}", str(&c["name"]));
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{cname}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{cname}");
            assert_eq!(
                sc["capabilities"]["drop"],
                Value::Sequence(vec!["ALL".into()]),
                "{cname}"
            );
            assert!(sc["capabilities"]["add"].is_null(), "{cname}");
            assert!(
                !c["resources"]["requests"]["memory"].is_null()
                    && !c["resources"]["limits"]["memory"].is_null(),
                "{cname}: memory request and limit"
            );
            let image = str(&c["image"]);
            assert!(image.starts_with("localhost/kpages/"), "{cname}: {image}");
            assert_eq!(c["imagePullPolicy"], "IfNotPresent", "{cname}");
        }
    }
    // The ServiceAccounts themselves do not hand out tokens.
    for sa in r.of_kind("ServiceAccount") {
        assert_eq!(sa["automountServiceAccountToken"], false);
    }
    let operator = r.get("Deployment", "kpages-operator");
    assert_eq!(operator["spec"]["replicas"], 1);
    assert_eq!(
        container(operator, "operator")["image"],
        "localhost/kpages/kpages:dev"
    );
    assert_eq!(
        container(operator, "operator")["command"],
        Value::Sequence(vec!["kpages-operator".into()])
    );
    let router = r.get("Deployment", "kpages-router");
    assert_eq!(
        container(router, "router")["command"],
        Value::Sequence(vec!["kpages-router".into()])
    );
}

/// Function pods admit traffic only from pods matching KPAGES_ROUTER_POD_LABELS in
/// KPAGES_ROUTER_NAMESPACE (the operator writes that policy): the router's pods must match it.
#[test]
fn router_pods_carry_the_label_function_pod_policies_admit() {
    let r = render(&[STORE]);
    let operator = container(r.get("Deployment", "kpages-operator"), "operator");
    let router = r.get("Deployment", "kpages-router");
    let labels = &router["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["kpages.dev/router"], "true");
    assert_eq!(labels["app.kubernetes.io/component"], "router");
    let wanted = env_value(operator, "KPAGES_ROUTER_POD_LABELS");
    for pair in wanted.split(',') {
        let (k, v) = pair.split_once('=').expect("k=v");
        assert_eq!(labels[k], v, "router pods lack {pair}");
    }
    assert_eq!(env_value(operator, "KPAGES_ROUTER_NAMESPACE"), NAMESPACE);
    // No other pod of the chart carries the router label.
    let r = render(&["minio.enabled=true", "natsServer.enabled=true"]);
    for d in r.of_kind("Deployment") {
        let is_router = d["metadata"]["name"] == "kpages-router";
        let has = !d["spec"]["template"]["metadata"]["labels"]["kpages.dev/router"].is_null();
        assert_eq!(is_router, has, "{}", str(&d["metadata"]["name"]));
    }
    // Standard labels on every object.
    for o in r.objects() {
        let l = &o["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                !l[key].is_null(),
                "{} {} lacks {key}",
                str(&o["kind"]),
                str(&o["metadata"]["name"])
            );
        }
    }
}

#[test]
fn network_policies_open_http_to_all_and_the_admin_port_only_to_schedule_jobs() {
    let r = render(&[STORE]);
    let router = r.get("NetworkPolicy", "kpages-router");
    assert_eq!(
        router["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "router"
    );
    let ingress = seq(&router["spec"]["ingress"]);
    let on_port = |port: &str| -> Vec<&Value> {
        ingress
            .iter()
            .filter(|rule| seq(&rule["ports"]).iter().any(|p| p["port"] == port))
            .collect()
    };
    // HTTP: a rule with no `from` admits every source.
    let http = on_port("http");
    assert_eq!(http.len(), 1);
    assert!(http[0]["from"].is_null());
    // Admin: only the operator's schedule-job pods, by default.
    let admin = on_port("admin");
    assert_eq!(admin.len(), 1, "{admin:?}");
    let peers = seq(&admin[0]["from"]);
    assert_eq!(peers.len(), 1);
    assert_eq!(
        peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "schedule"
    );
    assert_eq!(
        peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/managed-by"],
        "kpages"
    );
    // The operator serves nothing by default.
    let operator = r.get("NetworkPolicy", "kpages-operator");
    assert_eq!(
        operator["spec"]["policyTypes"],
        Value::Sequence(vec!["Ingress".into()])
    );
    assert!(seq(&operator["spec"]["ingress"]).is_empty());

    // metricsFrom opens the metrics ports to the given peers only.
    let r = render(&[
        STORE,
        "natsServer.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
    ]);
    let operator = r.get("NetworkPolicy", "kpages-operator");
    assert_eq!(
        operator["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(
        operator["spec"]["ingress"][0]["ports"][0]["port"],
        "metrics"
    );
    // NATS clients: the router only.
    let nats = r.get("NetworkPolicy", "kpages-nats");
    let client = &nats["spec"]["ingress"][0];
    assert_eq!(client["ports"][0]["port"], "client");
    assert_eq!(
        client["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "router"
    );

    let r = render(&[STORE, "networkPolicy.enabled=false"]);
    assert_eq!(r.of_kind("NetworkPolicy").count(), 0);
}
