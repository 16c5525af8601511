#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kpages_crds::function_route::{HttpMethod, RouteInvocation};
use kpages_crds::manifest::{InvocationKind, Route, RouteSyntax};
use kpages_crds::site::{EnvVarSource as SiteEnvSource, SiteEnvVar};
use kpages_crds::{DeployContext, Manifest};
use pretty_assertions::assert_eq;

use super::*;
use crate::fixtures::{self, deploy, function, manifest, route, site};

fn build(active: bool, replicas: i32, m: &Manifest, d: &Deploy, s: &Site) -> DesiredObjects {
    desired(
        DeployInputs {
            site: s,
            deploy: d,
            manifest: m,
            replicas,
            active,
        },
        &test_settings(),
    )
    .unwrap()
}

fn test_settings() -> Settings {
    Settings {
        kpages_image: "localhost/kpages/kpages:dev".into(),
        pod_store_url: "s3://kpages?endpoint=http://10.200.0.1:9000".into(),
        router_namespace: Some("kpages-system".into()),
        url_scheme: "http".into(),
        ..Settings::default()
    }
}

fn objects() -> DesiredObjects {
    let m = manifest();
    build(true, 2, &m, &deploy("v1", &m, 0), &site())
}

fn pod(o: &DesiredObjects) -> PodSpec {
    o.deployment
        .clone()
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
}

fn host(o: &DesiredObjects) -> Container {
    pod(o).containers[0].clone()
}

fn env(c: &Container, name: &str) -> Option<String> {
    c.env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

#[test]
fn every_object_is_labelled_and_owned_by_the_deploy() {
    let o = objects();
    let metas = [
        o.deployment.as_ref().unwrap().metadata.clone(),
        o.service.as_ref().unwrap().metadata.clone(),
        o.network_policy.as_ref().unwrap().metadata.clone(),
        o.routes[0].metadata.clone(),
        o.cron_jobs[0].metadata.clone(),
    ];
    for meta in metas {
        let labels = meta.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "kpages");
        assert_eq!(labels["kpages.dev/site"], "web");
        assert_eq!(labels["kpages.dev/deploy"], "v1");
        assert_eq!(meta.namespace.as_deref(), Some("team"));
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Deploy", "v1", "v1-uid")
        );
        assert_eq!(owner.controller, Some(true));
    }
}

#[test]
fn deployment_fetches_bundles_in_an_init_container_and_runs_the_host_from_them() {
    let o = objects();
    let d = o.deployment.clone().unwrap();
    assert_eq!(d.metadata.name.as_deref(), Some("v1-fn"));
    let spec = d.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let p = pod(&o);
    let init = &p.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image.as_deref(), Some("localhost/kpages/kpages:dev"));
    let args = init.args.clone().unwrap();
    let digest = manifest().digest().to_string();
    for want in [
        "--store",
        "s3://kpages?endpoint=http://10.200.0.1:9000",
        "--manifest",
        digest.as_str(),
        "--out",
        "/kpages",
        "--runtime",
        "/opt/kpages/runtime",
        "--timeout-seconds",
        "30",
    ] {
        assert!(
            args.iter().any(|a| a == want),
            "{want} missing from {args:?}"
        );
    }
    let creds = &init.env_from.as_ref().unwrap()[0]
        .secret_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (creds.name.as_str(), creds.optional),
        ("kpages-store", Some(true))
    );

    let h = host(&o);
    assert_eq!(
        h.image.as_deref(),
        Some("node:20-slim"),
        "the Site's default image"
    );
    assert_eq!(h.command, Some(vec!["node".to_string()]));
    assert_eq!(
        h.args.clone().unwrap()[..3],
        [
            "/kpages/runtime/src/host.mjs".to_string(),
            "--functions".into(),
            "/kpages/functions.json".into()
        ]
    );
    let probe = h.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(probe.path.as_deref(), Some("/.kpages/ready"));
    assert_eq!(probe.port, IntOrString::String("http".into()));
    assert_eq!(h.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(init.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let selector = spec.selector.match_labels.unwrap();
    assert_eq!(selector["app.kubernetes.io/component"], "functions");
    assert_eq!(
        spec.template.metadata.unwrap().labels.unwrap(),
        selector,
        "pods carry the selector's labels"
    );
}

#[test]
fn pods_run_restricted() {
    let o = objects();
    let p = pod(&o);
    assert_eq!(p.automount_service_account_token, Some(false));
    let psc = p.security_context.clone().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(1000));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    for c in p.init_containers.unwrap().iter().chain(&p.containers) {
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let mounts: Vec<&str> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/kpages", "/tmp"], "{}", c.name);
    }
    let volumes = p.volumes.unwrap();
    assert!(volumes.iter().all(|v| v.empty_dir.is_some()));
    assert_eq!(
        host(&o).volume_mounts.unwrap()[0].read_only,
        Some(true),
        "the host cannot change its bundles"
    );
}

#[test]
fn host_env_has_the_site_env_and_deploy_identity() {
    let m = manifest();
    let mut s = site();
    s.spec.env = vec![
        SiteEnvVar {
            name: "GREETING".into(),
            value: Some("hi".into()),
            value_from: None,
        },
        SiteEnvVar {
            name: "TOKEN".into(),
            value: None,
            value_from: Some(SiteEnvSource {
                secret_key_ref: k8s_openapi::api::core::v1::SecretKeySelector {
                    name: "api".into(),
                    key: "token".into(),
                    optional: None,
                },
            }),
        },
    ];
    s.spec.domains = vec!["www.example.com".into()];
    let d = deploy("v1", &m, 0);
    let built = build(true, 1, &m, &d, &s);
    let h = host(&built);
    assert_eq!(env(&h, "GREETING").as_deref(), Some("hi"));
    let token = h
        .env
        .clone()
        .unwrap()
        .into_iter()
        .find(|e| e.name == "TOKEN")
        .unwrap();
    let secret = token.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("api", "token")
    );
    assert_eq!(env(&h, "SITE_ID").as_deref(), Some("site-uid"));
    assert_eq!(env(&h, "SITE_NAME").as_deref(), Some("web"));
    assert_eq!(env(&h, "DEPLOY_ID").as_deref(), Some("v1"));
    assert_eq!(env(&h, "CONTEXT").as_deref(), Some("production"));
    assert_eq!(env(&h, "URL").as_deref(), Some("http://www.example.com"));
    assert_eq!(
        env(&h, "DEPLOY_URL").as_deref(),
        Some("http://v1--web.team.preview.kpages.localhost")
    );
    // Whether the deploy is live does not change its pods (no rollout when it goes live).
    let inactive = build(false, 1, &m, &d, &s);
    assert_eq!(
        inactive
            .deployment
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .template,
        built
            .deployment
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .template
    );

    // Netlify's meaning: URL is the site's main address for every deploy; DEPLOY_URL its own.
    let mut preview = deploy("p1", &m, 1);
    preview.spec.context = DeployContext::Preview;
    let h = host(&build(false, 1, &m, &preview, &s));
    assert_eq!(env(&h, "CONTEXT").as_deref(), Some("preview"));
    assert_eq!(env(&h, "URL").as_deref(), Some("http://www.example.com"));
    assert_eq!(
        env(&h, "DEPLOY_URL").as_deref(),
        Some("http://p1--web.team.preview.kpages.localhost")
    );
}

#[test]
fn resources_come_from_the_site_else_fit_the_largest_function() {
    let mut m = manifest();
    m.functions[0].limits.memory_mib = Some(1024);
    let o = build(true, 1, &m, &deploy("v1", &m, 0), &site());
    let r = host(&o).resources.unwrap();
    assert_eq!(r.limits.unwrap()["memory"].0, "1024Mi");

    let mut s = site();
    let custom = ResourceRequirements {
        limits: Some(BTreeMap::from([("cpu".to_string(), Quantity("2".into()))])),
        ..ResourceRequirements::default()
    };
    s.spec.functions.resources = Some(custom.clone());
    s.spec.functions.image = "localhost/kpages/node:20".into();
    let o = build(true, 1, &m, &deploy("v1", &m, 0), &s);
    assert_eq!(host(&o).resources, Some(custom));
    assert_eq!(host(&o).image.as_deref(), Some("localhost/kpages/node:20"));
}

#[test]
fn service_selects_the_pods_on_the_host_port() {
    let o = objects();
    let svc = o.service.unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.selector.unwrap()["kpages.dev/deploy"], "v1");
    let port = &spec.ports.unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (9000, Some(IntOrString::String("http".into())))
    );
}

#[test]
fn network_policy_admits_only_router_pods() {
    let np = objects().network_policy.unwrap().spec.unwrap();
    assert_eq!(np.policy_types, Some(vec!["Ingress".to_string()]));
    assert_eq!(
        np.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"],
        "functions"
    );
    let rules = np.ingress.unwrap();
    assert_eq!(rules.len(), 1);
    let peers = rules[0].from.clone().unwrap();
    assert_eq!(peers.len(), 1);
    let peer = &peers[0];
    assert_eq!(
        peer.pod_selector.clone().unwrap().match_labels.unwrap()["app.kubernetes.io/name"],
        "kpages-router"
    );
    assert_eq!(
        peer.namespace_selector
            .clone()
            .unwrap()
            .match_labels
            .unwrap()["kubernetes.io/metadata.name"],
        "kpages-system"
    );
    assert_eq!(
        rules[0].ports.clone().unwrap()[0].port,
        Some(IntOrString::Int(9000))
    );
}

#[test]
fn one_function_route_per_route_of_a_callable_function() {
    let mut m = manifest();
    m.functions[0].routes.push(Route {
        pattern: "/users/[id]/[[rest]]".into(),
        syntax: RouteSyntax::File,
    });
    m.functions[0].methods = vec!["GET".into(), "post".into()];
    let o = build(true, 1, &m, &deploy("v1", &m, 0), &site());
    let names: Vec<String> = o.routes.iter().map(|r| r.name_any()).collect();
    assert_eq!(names, ["v1-hello-0", "v1-hello-1", "v1-jobs-0"]);
    let hello = &o.routes[0].spec;
    assert_eq!(hello.site, "web");
    assert!(
        hello.hostnames.is_empty(),
        "the active deploy serves every host"
    );
    assert_eq!(
        hello.backend.function.as_ref().unwrap().deploy.as_deref(),
        Some("v1")
    );
    assert_eq!(hello.backend.function.as_ref().unwrap().name, "hello");
    assert_eq!(hello.invocation, RouteInvocation::Sync);
    let methods: Vec<_> = hello.matches.iter().map(|m| m.method).collect();
    assert_eq!(methods, [Some(HttpMethod::GET), Some(HttpMethod::POST)]);
    let file_paths: Vec<&str> = o.routes[1]
        .spec
        .matches
        .iter()
        .map(|m| m.path.value.as_str())
        .collect();
    assert_eq!(
        file_paths,
        ["/users/:id", "/users/:id", "/users/:id/*", "/users/:id/*"]
    );
    assert_eq!(o.routes[2].spec.invocation, RouteInvocation::Background);

    let inactive = build(false, 1, &m, &deploy("v1", &m, 0), &site());
    assert_eq!(
        inactive.routes[0].spec.hostnames,
        ["v1--web.team.preview.kpages.localhost"]
    );
}

#[test]
fn cron_jobs_only_for_the_active_production_deploy() {
    let m = manifest();
    let o = objects();
    assert_eq!(o.cron_jobs.len(), 1);
    let cj = &o.cron_jobs[0];
    assert_eq!(cj.metadata.name.as_deref(), Some("v1-nightly"));
    let spec = cj.spec.clone().unwrap();
    assert_eq!(spec.schedule, "@hourly");
    assert_eq!(spec.time_zone.as_deref(), Some("Etc/UTC"));
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let pod = spec.job_template.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let args = pod.containers[0].args.clone().unwrap();
    assert_eq!(
        args[..8],
        [
            "--router".to_string(),
            "http://kpages-router.kpages-system.svc:9090".into(),
            "--namespace".into(),
            "team".into(),
            "--site".into(),
            "web".into(),
            "--function".into(),
            "nightly".into()
        ]
    );

    assert!(
        build(false, 1, &m, &deploy("v1", &m, 0), &site())
            .cron_jobs
            .is_empty()
    );
    let mut preview = deploy("v1", &m, 0);
    preview.spec.context = DeployContext::Preview;
    assert!(build(true, 1, &m, &preview, &site()).cron_jobs.is_empty());
}

#[test]
fn a_deploy_without_functions_gets_no_objects() {
    let m = Manifest::new();
    assert!(build(true, 1, &m, &deploy("v1", &m, 0), &site()).is_empty());
}

#[test]
fn scaled_down_deploys_keep_their_objects_with_zero_replicas() {
    let m = manifest();
    let o = build(false, 0, &m, &deploy("v1", &m, 0), &site());
    assert_eq!(o.deployment.unwrap().spec.unwrap().replicas, Some(0));
    assert!(o.service.is_some());
}

#[test]
fn an_unstored_deploy_is_refused() {
    let m = manifest();
    let mut d = deploy("v1", &m, 0);
    d.metadata.uid = None;
    let err = desired(
        DeployInputs {
            site: &site(),
            deploy: &d,
            manifest: &m,
            replicas: 1,
            active: true,
        },
        &test_settings(),
    )
    .unwrap_err();
    assert_eq!(err, DesiredError::MissingMetadata("uid"));
    let _ = (
        function("x", InvocationKind::Sync),
        route("/x"),
        fixtures::site(),
    );
}

#[test]
fn the_operator_node_image_replaces_only_the_crd_default() {
    let m = manifest();
    let image = |site_image: &str, replacement: Option<&str>| {
        let mut s = site();
        s.spec.functions.image = site_image.into();
        let d = deploy("v1", &m, 0);
        let settings = Settings {
            node_image: replacement.map(str::to_string),
            ..test_settings()
        };
        let objects = desired(
            DeployInputs {
                site: &s,
                deploy: &d,
                manifest: &m,
                replicas: 1,
                active: true,
            },
            &settings,
        )
        .unwrap();
        let spec = objects
            .deployment
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        spec.containers[0].image.clone().unwrap()
    };
    let default = kpages_crds::limits::DEFAULT_NODE_IMAGE;
    assert_eq!(image(default, None), default);
    assert_eq!(
        image(default, Some("localhost/kpages/node:20")),
        "localhost/kpages/node:20"
    );
    assert_eq!(
        image("my/node:22", Some("localhost/kpages/node:20")),
        "my/node:22"
    );
}

#[test]
fn function_pods_keep_serving_while_their_endpoint_leaves_the_routers() {
    let m = manifest();
    let o = build(true, 1, &m, &deploy("v1", &m, 0), &site());
    let pod = o.deployment.unwrap().spec.unwrap().template.spec.unwrap();
    let sleep = pod.containers[0]
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .map(|s| s.seconds);
    assert_eq!(sleep, Some(5));
    // The pause plus the host's 25 s drain fit in the grace period.
    assert!(pod.termination_grace_period_seconds.unwrap() >= 5 + 25);
}
