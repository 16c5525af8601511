//! The FunctionRoute controller: resolve the backend (a deploy's function or a Service port) →
//! find conflicting routes of the same site → status (`Accepted`, `ResolvedRefs`, `Ready`,
//! `conflictsWith`). Conflict rules are pure ([`conflicts`]); the oldest route of a conflicting
//! set stays accepted, as in Gateway API.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kpages_crds::{Deploy, FunctionRoute, FunctionRouteStatus, Site};
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::instrument;

use crate::context::{Context, Error, condition};
use crate::controllers::apply::apply_status;
use crate::controllers::{Scope, run_controller};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "functionroute";

/// Runs the FunctionRoute controller until shutdown.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    run_controller(ctx, namespace, CONTROLLER, reconcile, related).await;
}

/// What else triggers a FunctionRoute reconcile: a deploy appearing, going or changing its
/// functions can resolve or break every route of its site.
fn related(
    controller: Controller<DeserializeGuard<FunctionRoute>>,
    scope: &Scope,
) -> Controller<DeserializeGuard<FunctionRoute>> {
    let routes = controller.store();
    controller.watches(
        scope.api::<DeserializeGuard<Deploy>>(),
        watcher::Config::default(),
        move |d| {
            let (Ok(deploy), Some(ns)) = (&d.0, d.namespace()) else {
                return Vec::new();
            };
            routes
                .state()
                .into_iter()
                .filter_map(|r| match &r.0 {
                    Ok(r)
                        if r.spec.site == deploy.spec.site
                            && r.namespace().as_deref() == Some(&ns) =>
                    {
                        Some(ObjectRef::new(&r.name_any()).within(&ns))
                    }
                    _ => None,
                })
                .collect()
        },
    )
}

/// Reconciles one FunctionRoute.
#[instrument(skip_all, fields(route = %guard.name_any(), namespace = guard.namespace().unwrap_or_default()))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<FunctionRoute>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let route = crate::context::unguard(&guard)?;
    let ns = route.namespace().unwrap_or_default();
    let name = route.name_any();
    let deref = |what: String| move |source| Error::Dereference { what, source };

    let site = Api::<Site>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&route.spec.site)
        .await
        .map_err(deref(format!("Site {ns}/{}", route.spec.site)))?;
    let resolved = match (
        &site,
        &route.spec.backend.function,
        &route.spec.backend.service,
    ) {
        (None, _, _) => Err((
            "SiteNotFound",
            format!(
                "Site {:?} does not exist in namespace {ns}",
                route.spec.site
            ),
        )),
        (Some(site), Some(f), _) => {
            let deploy_name = f
                .deploy
                .clone()
                .or_else(|| site.status.as_ref().and_then(|s| s.active_deploy.clone()));
            match deploy_name {
                None => Err((
                    "DeployNotFound",
                    "backend.function.deploy is unset and the site has no active deploy yet"
                        .to_string(),
                )),
                Some(dn) => {
                    let deploy = Api::<Deploy>::namespaced(ctx.client.clone(), &ns)
                        .get_opt(&dn)
                        .await
                        .map_err(deref(format!("Deploy {ns}/{dn}")))?;
                    match deploy {
                        None => Err(("DeployNotFound", format!("Deploy {dn:?} does not exist"))),
                        Some(d) if d.spec.site != route.spec.site => Err((
                            "DeployNotFound",
                            format!(
                                "Deploy {dn:?} belongs to site {:?}, not {:?}",
                                d.spec.site, route.spec.site
                            ),
                        )),
                        Some(d) => {
                            let functions = d.status.map(|s| s.functions).unwrap_or_default();
                            if functions.iter().any(|x| x.name == f.name) {
                                Ok(format!("function {:?} of Deploy {dn}", f.name))
                            } else {
                                Err((
                                    "FunctionNotFound",
                                    format!(
                                        "Deploy {dn} has no function {:?} (its functions: {})",
                                        f.name,
                                        functions
                                            .iter()
                                            .map(|x| x.name.as_str())
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    ),
                                ))
                            }
                        }
                    }
                }
            }
        }
        (Some(_), None, Some(s)) => {
            let svc = Api::<Service>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&s.name)
                .await
                .map_err(deref(format!("Service {ns}/{}", s.name)))?;
            let ports: Vec<i32> = svc
                .and_then(|svc| svc.spec)
                .and_then(|spec| spec.ports)
                .map(|ps| ps.iter().map(|p| p.port).collect())
                .unwrap_or_default();
            if ports.contains(&s.port) {
                Ok(format!("Service {} port {}", s.name, s.port))
            } else {
                Err((
                    "BackendNotFound",
                    format!(
                        "Service {:?} does not exist or has no port {}",
                        s.name, s.port
                    ),
                ))
            }
        }
        (Some(_), None, None) => Err((
            "InvalidBackend",
            "backend names neither a function nor a Service".into(),
        )),
    };

    let all: Vec<FunctionRoute> =
        Api::<DeserializeGuard<FunctionRoute>>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(deref(format!("FunctionRoutes in {ns}")))?
            .items
            .into_iter()
            .filter_map(|g| g.0.ok())
            .collect();
    let (conflicts_with, loses) = conflicts(route, &all);

    let status = status_for(route, resolved, conflicts_with, loses);
    if route.status.as_ref() != Some(&status) {
        apply_status::<FunctionRoute>(&ctx.client, &ns, &name, &status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// The routes of the same site that match the same requests at the same order, and whether
/// `route` loses to one of them (it is newer, or as old with a later name).
pub fn conflicts(route: &FunctionRoute, all: &[FunctionRoute]) -> (Vec<String>, bool) {
    let mut names = Vec::new();
    let mut loses = false;
    for other in all {
        if other.name_any() == route.name_any()
            || other.spec.site != route.spec.site
            || other.spec.order != route.spec.order
            || !hosts_overlap(&route.spec.hostnames, &other.spec.hostnames)
        {
            continue;
        }
        let same_match = route.spec.matches.iter().any(|a| {
            other.spec.matches.iter().any(|b| {
                a.path == b.path
                    && (a.method.is_none() || b.method.is_none() || a.method == b.method)
            })
        });
        if same_match {
            names.push(other.name_any());
            let key = |r: &FunctionRoute| {
                (
                    r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    r.name_any(),
                )
            };
            if key(other) < key(route) {
                loses = true;
            }
        }
    }
    names.sort();
    (names, loses)
}

/// Empty host lists mean every host of the site; a route naming hosts is more specific than
/// one naming none, so only equal kinds can collide.
fn hosts_overlap(a: &[String], b: &[String]) -> bool {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => true,
        (false, false) => a.iter().any(|h| b.contains(h)),
        _ => false,
    }
}

/// The status a resolution and conflict check stand for (pure).
pub fn status_for(
    route: &FunctionRoute,
    resolved: Result<String, (&str, String)>,
    conflicts_with: Vec<String>,
    loses: bool,
) -> FunctionRouteStatus {
    let previous: Vec<Condition> = route
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let g = route.metadata.generation;
    let accepted = if loses {
        condition(
            &previous,
            "Accepted",
            false,
            "Conflicted",
            format!(
                "an older route matches the same requests at order {}: {}; change a path, hostnames or order",
                route.spec.order,
                conflicts_with.join(", ")
            ),
            g,
        )
    } else {
        condition(&previous, "Accepted", true, "Accepted", "route accepted", g)
    };
    let refs = match &resolved {
        Ok(what) => condition(
            &previous,
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            format!("backend is {what}"),
            g,
        ),
        Err((reason, message)) => {
            condition(&previous, "ResolvedRefs", false, reason, message.clone(), g)
        }
    };
    let ready_ok = !loses && resolved.is_ok();
    let (reason, message) = if ready_ok {
        ("Ready", "route is served".to_string())
    } else if loses {
        ("Conflicted", accepted.message.clone())
    } else {
        (refs.reason.as_str(), refs.message.clone())
    };
    let ready = condition(&previous, "Ready", ready_ok, reason, message, g);
    FunctionRouteStatus {
        observed_generation: g,
        conflicts_with,
        conditions: vec![accepted, refs, ready],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use kpages_crds::FunctionRouteSpec;
    use kpages_crds::function_route::{
        FunctionBackend, HttpMethod, PathMatch, PathMatchType, RouteBackend, RouteInvocation,
        RouteMatch,
    };

    fn route(
        name: &str,
        secs: i64,
        path: &str,
        method: Option<HttpMethod>,
        hosts: &[&str],
    ) -> FunctionRoute {
        let mut r = FunctionRoute::new(
            name,
            FunctionRouteSpec {
                site: "web".into(),
                hostnames: hosts.iter().map(|h| h.to_string()).collect(),
                matches: vec![RouteMatch {
                    path: PathMatch {
                        kind: PathMatchType::PathPrefix,
                        value: path.into(),
                    },
                    method,
                }],
                backend: RouteBackend {
                    function: Some(FunctionBackend {
                        deploy: None,
                        name: "hello".into(),
                    }),
                    service: None,
                },
                invocation: RouteInvocation::Sync,
                prefer_static: false,
                order: 100,
            },
        );
        r.metadata.creation_timestamp =
            Some(Time(Timestamp::from_second(1_700_000_000 + secs).unwrap()));
        r
    }

    #[test]
    fn same_path_same_order_conflicts_and_the_newer_loses() {
        let a = route("a", 1, "/api", None, &[]);
        let b = route("b", 2, "/api", Some(HttpMethod::GET), &[]);
        let c = route("c", 3, "/api", None, &["api.example.com"]);
        let d = route("d", 4, "/other", None, &[]);
        let all = [a.clone(), b.clone(), c.clone(), d.clone()];
        assert_eq!(conflicts(&a, &all), (vec!["b".to_string()], false));
        assert_eq!(conflicts(&b, &all), (vec!["a".to_string()], true));
        assert_eq!(
            conflicts(&c, &all),
            (vec![], false),
            "host-specific routes are more specific"
        );
        assert_eq!(conflicts(&d, &all), (vec![], false));
        let mut e = route("e", 5, "/api", None, &[]);
        e.spec.order = 50;
        assert_eq!(conflicts(&e, &[a, e.clone()]), (vec![], false));
    }

    #[test]
    fn status_conditions_explain_what_to_fix() {
        let r = route("b", 2, "/api", None, &[]);
        let s = status_for(
            &r,
            Err(("FunctionNotFound", "no function".into())),
            vec![],
            false,
        );
        let by = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(by("Accepted").status, "True");
        assert_eq!(
            (
                by("ResolvedRefs").status.as_str(),
                by("ResolvedRefs").reason.as_str()
            ),
            ("False", "FunctionNotFound")
        );
        assert_eq!(by("Ready").reason, "FunctionNotFound");

        let s = status_for(&r, Ok("function".into()), vec!["a".into()], true);
        let by = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(
            (
                by("Accepted").status.as_str(),
                by("Accepted").reason.as_str()
            ),
            ("False", "Conflicted")
        );
        assert_eq!(s.conflicts_with, ["a"]);
        assert_eq!(by("Ready").status, "False");
    }
}
