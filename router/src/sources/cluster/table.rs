//! The routing table from a snapshot of the cluster's objects, as a pure function: which host
//! is which site, each site's active deploy with its Site object's limits, the deploys' ready
//! function endpoints, and the FunctionRoutes users wrote. No watch and no API call here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kpages_crds::function_route::RouteInvocation;
use kpages_crds::manifest::InvocationKind;
use kpages_crds::names::{DEPLOY_LABEL, HOST_PORT_NAME, label_value};
use kpages_crds::{
    Deploy as DeployObject, DeployContext, Digest, FunctionRoute as FunctionRouteObject,
    Site as SiteObject,
};
use kube::ResourceExt;

use crate::table::{Deploy, RouteTable, Site, SiteLimits};
use crate::table::{RouteTarget, SiteRoute, SiteRoutes};
use kpages_routing::resolve::CompiledDeploy;

/// The valid objects a table is built from, with the compiled manifests at hand.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Sites.
    pub sites: Vec<Arc<SiteObject>>,
    /// Deploys.
    pub deploys: Vec<Arc<DeployObject>>,
    /// EndpointSlices of function Services.
    pub slices: Vec<Arc<EndpointSlice>>,
    /// FunctionRoutes (the operator's generated ones included; build_table skips them).
    pub routes: Vec<Arc<FunctionRouteObject>>,
    /// Services, for FunctionRoutes whose backend is a Service.
    pub services: Vec<Arc<Service>>,
}

/// Builds the routing table from watched objects: pure, so that tests need no cluster.
///
/// `compiled` yields a deploy's compiled manifest (`None` while unknown: the deploy is left
/// out); `last_call` carries each deploy's activity cell over from the previous table.
pub fn build_table(
    snapshot: &Snapshot,
    compiled: &dyn Fn(&Digest) -> Option<Arc<CompiledDeploy>>,
    last_call: &dyn Fn(&str) -> Arc<std::sync::atomic::AtomicI64>,
    preview_domain: &str,
) -> RouteTable {
    let endpoints = endpoints_by_deploy(&snapshot.slices);
    let mut table = RouteTable::default();
    let mut by_site: HashMap<(String, String), Vec<&Arc<DeployObject>>> = HashMap::new();
    for d in &snapshot.deploys {
        let ns = d.namespace().unwrap_or_default();
        by_site
            .entry((ns, d.spec.site.clone()))
            .or_default()
            .push(d);
    }
    let site_limits: HashMap<(String, String), SiteLimits> = snapshot
        .sites
        .iter()
        .map(|s| {
            let f = &s.spec.functions;
            let limits = SiteLimits {
                timeout_seconds: Some(f.timeout_seconds),
                background_timeout_seconds: Some(f.background_timeout_seconds),
                max_body_bytes: Some(f.max_body_bytes),
                memory_mib: None,
            };
            ((s.namespace().unwrap_or_default(), s.name_any()), limits)
        })
        .collect();
    let mut deploys: HashMap<String, Arc<Deploy>> = HashMap::new();
    for d in &snapshot.deploys {
        let ns = d.namespace().unwrap_or_default();
        let name = d.name_any();
        let Some(routes) = compiled(&d.spec.manifest) else {
            continue;
        };
        let id = deploy_id(&ns, &name);
        let eps = endpoints
            .get(&(ns.clone(), label_value(&name)))
            .cloned()
            .unwrap_or_default();
        let mut deploy = Deploy::new(
            id.clone(),
            routes,
            eps,
            d.spec.context == DeployContext::Production,
        );
        deploy.last_call = last_call(&id);
        // A deploy whose Site is gone keeps the router's defaults for its last queued jobs.
        if let Some(limits) = site_limits.get(&(ns.clone(), d.spec.site.clone())) {
            deploy.site_limits = *limits;
        }
        deploys.insert(id, Arc::new(deploy));
    }
    for site in &snapshot.sites {
        let ns = site.namespace().unwrap_or_default();
        let name = site.name_any();
        let site_key = format!("{ns}/{name}");
        let siblings = by_site
            .remove(&(ns.clone(), name.clone()))
            .unwrap_or_default();
        // Every deploy of the site answers on its preview host.
        for d in &siblings {
            let id = deploy_id(&ns, &d.name_any());
            if let Some(deploy) = deploys.get(&id) {
                let host = format!("{}--{name}.{ns}.{preview_domain}", d.name_any());
                table.insert(
                    &[host],
                    Site {
                        routes: Default::default(),
                        name: site_key.clone(),
                        deploy: deploy.clone(),
                    },
                );
            }
        }
        let active = site
            .status
            .as_ref()
            .and_then(|s| s.active_deploy.as_deref())
            .and_then(|a| deploys.get(&deploy_id(&ns, a)));
        if let Some(deploy) = active {
            let mut hosts: Vec<String> = site.spec.domains.clone();
            hosts.push(format!("{name}.{ns}.{preview_domain}"));
            let routes = site_routes(snapshot, &ns, &name, deploy, &deploys);
            table.insert(
                &hosts,
                Site {
                    routes: Arc::new(routes),
                    name: site_key,
                    deploy: deploy.clone(),
                },
            );
        }
    }
    // Deploys whose site is gone still finish their queued background jobs.
    for deploy in deploys.into_values() {
        table.insert_deploy(deploy);
    }
    table
}

/// The FunctionRoutes users wrote for a site, compiled, on the site's own hosts (not on
/// per-deploy preview hosts). Skipped, with a log line: routes the operator generated (they
/// mirror the manifest, which the router reads itself), routes it has not accepted for their
/// current generation, and routes whose backend is not there (a deploy not loaded, a Service
/// without a cluster IP or without the port).
fn site_routes(
    snapshot: &Snapshot,
    ns: &str,
    site: &str,
    active: &Arc<Deploy>,
    deploys: &HashMap<String, Arc<Deploy>>,
) -> SiteRoutes {
    let mut out = Vec::new();
    for r in &snapshot.routes {
        if r.namespace().as_deref() != Some(ns) || r.spec.site != site || generated(r) {
            continue;
        }
        let name = format!("{ns}/{}", r.name_any());
        if !accepted(r) {
            tracing::debug!(route = %name, "FunctionRoute not accepted (yet); not served");
            continue;
        }
        let target = match (&r.spec.backend.function, &r.spec.backend.service) {
            (Some(f), _) => {
                let deploy = match &f.deploy {
                    None => Some(active.clone()),
                    Some(d) => deploys.get(&deploy_id(ns, d)).cloned(),
                };
                let Some(deploy) = deploy else {
                    tracing::warn!(route = %name, deploy = ?f.deploy, "FunctionRoute names a deploy that is not loaded; not served");
                    continue;
                };
                RouteTarget::Function {
                    deploy,
                    function: f.name.clone(),
                    invocation: match r.spec.invocation {
                        RouteInvocation::Sync => InvocationKind::Sync,
                        RouteInvocation::Background => InvocationKind::Background,
                    },
                }
            }
            (None, Some(svc)) => match service_authority(snapshot, ns, &svc.name, svc.port) {
                Some(authority) => RouteTarget::Service {
                    authority,
                    name: format!("{ns}/{}:{}", svc.name, svc.port),
                },
                None => {
                    tracing::warn!(route = %name, service = %svc.name, port = svc.port, "FunctionRoute's Service has no cluster IP or no such port; not served");
                    continue;
                }
            },
            (None, None) => continue,
        };
        match SiteRoute::compile(name.clone(), &r.spec, target) {
            Ok(route) => out.push(route),
            Err(e) => {
                tracing::warn!(route = %name, error = %e, "FunctionRoute cannot be compiled; not served")
            }
        }
    }
    SiteRoutes::new(out)
}

/// Whether the operator generated this route from a deploy's manifest (it is owned by the
/// Deploy).
fn generated(r: &FunctionRouteObject) -> bool {
    r.owner_references()
        .iter()
        .any(|o| o.kind == "Deploy" && o.api_version.starts_with("kpages.dev/"))
}

/// Whether the operator accepted the route as it is now (`Accepted=True` for this generation).
fn accepted(r: &FunctionRouteObject) -> bool {
    let Some(status) = &r.status else {
        return false;
    };
    let current = r.metadata.generation;
    status.observed_generation == current
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.status == "True")
}

/// `<cluster IP>:<port>` of a Service that has that port.
fn service_authority(snapshot: &Snapshot, ns: &str, name: &str, port: i32) -> Option<String> {
    let svc = snapshot
        .services
        .iter()
        .find(|s| s.namespace().as_deref() == Some(ns) && s.name_any() == name)?;
    let spec = svc.spec.as_ref()?;
    let ip: IpAddr = spec.cluster_ip.as_deref()?.parse().ok()?;
    let port = u16::try_from(port).ok()?;
    spec.ports
        .iter()
        .flatten()
        .any(|p| p.port == i32::from(port))
        .then(|| SocketAddr::new(ip, port).to_string())
}

/// A deploy's id in the table and in queued jobs: `<namespace>/<name>`.
pub fn deploy_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Ready endpoints of each deploy's function Service, keyed by (namespace, deploy label value),
/// sorted and without duplicates so that equal inputs give equal tables.
pub(super) fn endpoints_by_deploy(
    slices: &[Arc<EndpointSlice>],
) -> HashMap<(String, String), Vec<SocketAddr>> {
    let mut out: HashMap<(String, String), Vec<SocketAddr>> = HashMap::new();
    for slice in slices {
        let Some(deploy) = slice.labels().get(DEPLOY_LABEL) else {
            continue;
        };
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(HOST_PORT_NAME))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        let entry = out
            .entry((slice.namespace().unwrap_or_default(), deploy.clone()))
            .or_default();
        for ep in &slice.endpoints {
            let conditions = ep.conditions.as_ref();
            // A nil `ready` means ready (EndpointSlice API); terminating pods are not used.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true)
                && !conditions.and_then(|c| c.terminating).unwrap_or(false);
            if !ready {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    entry.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use kpages_crds::{DeploySpec, Manifest, SiteSpec, SiteStatus};
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;

    fn site(ns: &str, name: &str, domains: &[&str], active: Option<&str>) -> Arc<SiteObject> {
        let mut s = SiteObject::new(
            name,
            SiteSpec {
                domains: domains.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some(ns.into());
        s.status = Some(SiteStatus {
            active_deploy: active.map(str::to_string),
            ..Default::default()
        });
        Arc::new(s)
    }

    fn deploy(ns: &str, name: &str, site: &str, manifest: Digest, prod: bool) -> Arc<DeployObject> {
        let mut d = DeployObject::new(
            name,
            DeploySpec {
                site: site.into(),
                manifest,
                context: if prod {
                    DeployContext::Production
                } else {
                    DeployContext::Preview
                },
                source: None,
            },
        );
        d.metadata.namespace = Some(ns.into());
        Arc::new(d)
    }

    fn slice(
        ns: &str,
        deploy: &str,
        port: &str,
        eps: &[(&str, Option<bool>, bool)],
    ) -> Arc<EndpointSlice> {
        let mut s = EndpointSlice {
            address_type: "IPv4".into(),
            ports: Some(vec![EndpointPort {
                name: Some(port.into()),
                port: Some(9000),
                ..Default::default()
            }]),
            endpoints: eps
                .iter()
                .map(|(ip, ready, terminating)| Endpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        terminating: Some(*terminating),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        s.metadata.namespace = Some(ns.into());
        s.metadata.labels = Some(BTreeMap::from([(DEPLOY_LABEL.into(), deploy.into())]));
        Arc::new(s)
    }

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn build(snapshot: &Snapshot, known: &[Digest]) -> RouteTable {
        let compiled = Arc::new(CompiledDeploy::compile(Arc::new(Manifest::new())));
        build_table(
            snapshot,
            &|d| known.contains(d).then(|| compiled.clone()),
            &|_| Arc::default(),
            "preview.test",
        )
    }

    fn served(t: &RouteTable, host: &str) -> Option<String> {
        t.site_for_host(host).map(|s| s.deploy.id.clone())
    }

    #[test]
    fn hosts_map_to_the_active_deploy_and_each_deploy_keeps_its_preview_host() {
        let snap = Snapshot {
            sites: vec![site(
                "team",
                "web",
                &["example.com", "*.example.org"],
                Some("web-2"),
            )],
            deploys: vec![
                deploy("team", "web-1", "web", digest(1), true),
                deploy("team", "web-2", "web", digest(2), true),
                deploy("team", "web-3", "web", digest(3), false),
            ],
            slices: vec![],
            ..Default::default()
        };
        let t = build(&snap, &[digest(1), digest(2), digest(3)]);
        assert_eq!(served(&t, "example.com").as_deref(), Some("team/web-2"));
        assert_eq!(
            served(&t, "EXAMPLE.com:8080").as_deref(),
            Some("team/web-2")
        );
        assert_eq!(
            served(&t, "shop.example.org").as_deref(),
            Some("team/web-2")
        );
        assert_eq!(
            served(&t, "a.b.example.org"),
            None,
            "a wildcard covers one label"
        );
        assert_eq!(
            served(&t, "web.team.preview.test").as_deref(),
            Some("team/web-2")
        );
        assert_eq!(
            served(&t, "web-1--web.team.preview.test").as_deref(),
            Some("team/web-1")
        );
        assert_eq!(
            served(&t, "web-3--web.team.preview.test").as_deref(),
            Some("team/web-3")
        );
        assert_eq!(served(&t, "other.test"), None);
        assert!(t.deploy("team/web-2").unwrap().production);
        assert!(!t.deploy("team/web-3").unwrap().production);
        assert_eq!(t.site_for_host("example.com").unwrap().name, "team/web");
    }

    fn route(
        ns: &str,
        name: &str,
        json: serde_json::Value,
        accepted: Option<bool>,
    ) -> Arc<FunctionRouteObject> {
        let mut r = FunctionRouteObject::new(name, serde_json::from_value(json).unwrap());
        r.metadata.namespace = Some(ns.into());
        r.metadata.generation = Some(2);
        r.status = accepted.map(|ok| kpages_crds::FunctionRouteStatus {
            observed_generation: Some(2),
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Accepted".into(),
                status: if ok { "True" } else { "False" }.into(),
                reason: "Test".into(),
                message: String::new(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: Some(2),
            }],
            ..Default::default()
        });
        Arc::new(r)
    }

    fn service(ns: &str, name: &str, ip: &str, port: i32) -> Arc<Service> {
        let mut s: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": [{"port": port}]},
        }))
        .unwrap();
        s.metadata.namespace = Some(ns.into());
        Arc::new(s)
    }

    #[test]
    fn accepted_user_routes_reach_the_active_sites_hosts_only() {
        let m = |path: &str| serde_json::json!([{"path": {"type": "PathPrefix", "value": path}}]);
        let mut generated = route(
            "a",
            "web-1-f-0",
            serde_json::json!({"site": "web", "matches": m("/gen"), "backend": {"function": {"name": "f", "deploy": "web-1"}}}),
            Some(true),
        );
        Arc::make_mut(&mut generated).metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "kpages.dev/v1alpha1".into(),
                kind: "Deploy".into(),
                name: "web-1".into(),
                uid: "u".into(),
                ..Default::default()
            },
        ]);
        let mut stale = route(
            "a",
            "stale",
            serde_json::json!({"site": "web", "matches": m("/stale"), "backend": {"service": {"name": "svc", "port": 80}}}),
            Some(true),
        );
        Arc::make_mut(&mut stale).metadata.generation = Some(3);
        let snap = Snapshot {
            sites: vec![site("a", "web", &["a.test"], Some("web-1"))],
            deploys: vec![
                deploy("a", "web-1", "web", digest(1), true),
                deploy("a", "web-2", "web", digest(2), false),
            ],
            slices: vec![],
            routes: vec![
                route(
                    "a",
                    "svc",
                    serde_json::json!({"site": "web", "matches": m("/svc"), "backend": {"service": {"name": "svc", "port": 80}}}),
                    Some(true),
                ),
                route(
                    "a",
                    "pinned",
                    serde_json::json!({"site": "web", "matches": m("/old"), "backend": {"function": {"name": "f", "deploy": "web-2"}}}),
                    Some(true),
                ),
                route(
                    "a",
                    "active",
                    serde_json::json!({"site": "web", "matches": m("/fn"), "backend": {"function": {"name": "f"}}, "invocation": "Background"}),
                    Some(true),
                ),
                route(
                    "a",
                    "refused",
                    serde_json::json!({"site": "web", "matches": m("/no"), "backend": {"service": {"name": "svc", "port": 80}}}),
                    Some(false),
                ),
                route(
                    "a",
                    "unseen",
                    serde_json::json!({"site": "web", "matches": m("/unseen"), "backend": {"service": {"name": "svc", "port": 80}}}),
                    None,
                ),
                route(
                    "a",
                    "wrong-port",
                    serde_json::json!({"site": "web", "matches": m("/port"), "backend": {"service": {"name": "svc", "port": 81}}}),
                    Some(true),
                ),
                route(
                    "a",
                    "other-site",
                    serde_json::json!({"site": "blog", "matches": m("/blog"), "backend": {"service": {"name": "svc", "port": 80}}}),
                    Some(true),
                ),
                route(
                    "b",
                    "other-ns",
                    serde_json::json!({"site": "web", "matches": m("/b"), "backend": {"service": {"name": "svc", "port": 80}}}),
                    Some(true),
                ),
                generated,
                stale,
            ],
            services: vec![service("a", "svc", "10.202.0.9", 80)],
        };
        let t = build(&snap, &[digest(1), digest(2)]);
        let site = t.site_for_host("a.test").unwrap();
        let find = |path: &str| {
            let facts = kpages_routing::rules::RequestFacts {
                method: "GET".into(),
                host: "a.test".into(),
                path: path.into(),
                ..Default::default()
            };
            site.routes
                .find(&facts, path, &|_| false)
                .map(|(i, _)| site.routes.get(i).unwrap().clone())
        };
        match find("/svc/x").map(|r| r.target) {
            Some(RouteTarget::Service { authority, .. }) => assert_eq!(authority, "10.202.0.9:80"),
            other => panic!("{other:?}"),
        }
        match find("/old").map(|r| r.target) {
            Some(RouteTarget::Function { deploy, .. }) => assert_eq!(deploy.id, "a/web-2"),
            other => panic!("{other:?}"),
        }
        match find("/fn").map(|r| r.target) {
            Some(RouteTarget::Function {
                deploy, invocation, ..
            }) => {
                assert_eq!(deploy.id, "a/web-1");
                assert_eq!(invocation, InvocationKind::Background);
            }
            other => panic!("{other:?}"),
        }
        for path in ["/no", "/unseen", "/port", "/blog", "/b", "/gen", "/stale"] {
            assert!(find(path).is_none(), "{path} must not be served");
        }
        let preview = t.site_for_host("web-2--web.a.preview.test").unwrap();
        assert!(
            preview.routes.is_empty(),
            "per-deploy preview hosts serve the deploy alone"
        );
    }

    #[test]
    fn deploys_carry_their_site_objects_function_limits() {
        let mut tight = site("a", "web", &["a.test"], Some("web-1"));
        let f = &mut Arc::make_mut(&mut tight).spec.functions;
        f.timeout_seconds = 7;
        f.background_timeout_seconds = 70;
        f.max_body_bytes = 4096;
        let snap = Snapshot {
            sites: vec![tight],
            deploys: vec![
                deploy("a", "web-1", "web", digest(1), true),
                deploy("a", "orphan-1", "gone", digest(1), true),
            ],
            slices: vec![],
            ..Default::default()
        };
        let t = build(&snap, &[digest(1)]);
        let limits = t.deploy("a/web-1").unwrap().site_limits;
        assert_eq!(
            limits,
            SiteLimits {
                timeout_seconds: Some(7),
                background_timeout_seconds: Some(70),
                max_body_bytes: Some(4096),
                memory_mib: None,
            }
        );
        assert_eq!(
            t.deploy("a/orphan-1").unwrap().site_limits,
            SiteLimits::default(),
            "a deploy whose Site is gone falls back to the router's flags"
        );
    }

    #[test]
    fn a_site_without_a_loaded_active_deploy_serves_no_host() {
        let snap = Snapshot {
            sites: vec![
                site("a", "web", &["a.test"], Some("web-1")),
                site("b", "web", &["b.test"], None),
            ],
            deploys: vec![
                deploy("a", "web-1", "web", digest(1), true),
                deploy("b", "web-1", "web", digest(2), true),
            ],
            slices: vec![],
            ..Default::default()
        };
        // Manifest 1 could not be fetched: site a has nothing to serve yet.
        let t = build(&snap, &[digest(2)]);
        assert_eq!(served(&t, "a.test"), None);
        assert_eq!(served(&t, "b.test"), None, "no active deploy yet");
        assert_eq!(
            served(&t, "web-1--web.b.preview.test").as_deref(),
            Some("b/web-1")
        );
        assert!(t.deploy("a/web-1").is_none());
    }

    #[test]
    fn only_ready_endpoints_of_the_named_port_and_the_right_namespace_are_used() {
        let snap = Snapshot {
            sites: vec![site("a", "web", &["a.test"], Some("web-1"))],
            deploys: vec![
                deploy("a", "web-1", "web", digest(1), true),
                deploy("a", "web-2", "web", digest(1), true),
            ],
            slices: vec![
                slice(
                    "a",
                    "web-1",
                    "http",
                    &[
                        ("10.0.0.2", Some(true), false),
                        ("10.0.0.1", None, false),
                        ("10.0.0.3", Some(false), false),
                        ("10.0.0.4", Some(true), true),
                    ],
                ),
                // A second slice of the same Service, with a duplicate.
                slice("a", "web-1", "http", &[("10.0.0.2", Some(true), false)]),
                slice("a", "web-2", "metrics", &[("10.0.0.9", Some(true), false)]),
                slice("other", "web-2", "http", &[("10.0.0.8", Some(true), false)]),
            ],
            ..Default::default()
        };
        let t = build(&snap, &[digest(1)]);
        let eps = |id: &str| t.deploy(id).unwrap().functions.endpoints().to_vec();
        assert_eq!(
            eps("a/web-1"),
            vec![
                "10.0.0.1:9000".parse::<SocketAddr>().unwrap(),
                "10.0.0.2:9000".parse().unwrap()
            ]
        );
        assert!(
            eps("a/web-2").is_empty(),
            "no port named http, other namespace"
        );
    }

    #[test]
    fn deploys_of_deleted_sites_stay_reachable_for_queued_jobs_only() {
        let snap = Snapshot {
            sites: vec![],
            deploys: vec![deploy("a", "web-1", "web", digest(1), true)],
            slices: vec![],
            ..Default::default()
        };
        let t = build(&snap, &[digest(1)]);
        assert!(t.deploy("a/web-1").is_some());
        assert!(t.sites().is_empty());
        assert_eq!(served(&t, "web-1--web.a.preview.test"), None);
    }

    #[test]
    fn activity_cells_are_carried_between_tables() {
        let snap = Snapshot {
            sites: vec![site("a", "web", &[], Some("web-1"))],
            deploys: vec![deploy("a", "web-1", "web", digest(1), true)],
            slices: vec![],
            ..Default::default()
        };
        let compiled = Arc::new(CompiledDeploy::compile(Arc::new(Manifest::new())));
        let cell: Arc<std::sync::atomic::AtomicI64> = Arc::default();
        let t = build_table(
            &snap,
            &|_| Some(compiled.clone()),
            &|_| cell.clone(),
            "p.test",
        );
        t.deploy("a/web-1").unwrap().touch();
        assert!(cell.load(Ordering::Relaxed) > 0);
    }
}
