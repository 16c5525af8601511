//! FunctionRoutes from the manifest's routes: one per route of a sync or background function,
//! its path patterns translated to FunctionRoute matches.

use kpages_crds::function_route::{
    FunctionBackend, HttpMethod, PathMatch, PathMatchType, RouteBackend, RouteInvocation,
    RouteMatch,
};
use kpages_crds::manifest::{Function, InvocationKind, Route, RouteSyntax};
use kpages_crds::{FunctionRoute, FunctionRouteSpec};
use kpages_routing::shape::edgeone_file_as_urlpatterns;
use kube::ResourceExt;

use super::Ctx;
use crate::names;

impl Ctx<'_> {
    pub(super) fn routes(&self) -> Vec<FunctionRoute> {
        // The active deploy's routes apply to every host of the site; any other deploy's only
        // to its own preview host, so deploys of one site never fight over a path.
        let hostnames = if self.inputs.active {
            Vec::new()
        } else {
            vec![preview_host(&self.settings.preview_url(
                &self.namespace,
                self.site_name(),
                &self.deploy_name,
            ))]
        };
        let mut out = Vec::new();
        for f in &self.inputs.manifest.functions {
            let invocation = match f.invocation {
                InvocationKind::Sync => RouteInvocation::Sync,
                InvocationKind::Background => RouteInvocation::Background,
                // Scheduled functions are not reachable by URL in production.
                InvocationKind::Scheduled => continue,
            };
            for (i, route) in f.routes.iter().enumerate() {
                let mut labels = self.labels();
                labels.insert(names::FUNCTION_LABEL.into(), names::label_value(&f.name));
                let mut route_obj = FunctionRoute::new(
                    &names::route_name(&self.deploy_name, &f.name, i),
                    FunctionRouteSpec {
                        site: self.site_name().to_string(),
                        hostnames: hostnames.clone(),
                        matches: route_matches(route, f),
                        backend: RouteBackend {
                            function: Some(FunctionBackend {
                                deploy: Some(self.deploy_name.clone()),
                                name: f.name.clone(),
                            }),
                            service: None,
                        },
                        invocation,
                        prefer_static: f.prefer_static,
                        order: GENERATED_ROUTE_ORDER,
                    },
                );
                route_obj.metadata = self.meta(route_obj.name_any(), labels);
                out.push(route_obj);
            }
        }
        out
    }
}

/// Order of the FunctionRoutes the operator generates: after user-written routes (default 100).
pub const GENERATED_ROUTE_ORDER: i32 = 500;

/// The most matches a FunctionRoute may hold (the CRD's limit).
const MAX_MATCHES: usize = 16;

fn preview_host(url: &str) -> String {
    url.split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(url)
        .to_string()
}

/// A manifest route as FunctionRoute matches: URLPattern routes as they are; EdgeOne file routes
/// translated (`[id]` → `:id`, `[[rest]]` → `*` plus the bare prefix, which a catch-all also
/// serves); one match per method when the function limits methods.
fn route_matches(route: &Route, f: &Function) -> Vec<RouteMatch> {
    let paths: Vec<String> = match route.syntax {
        RouteSyntax::Urlpattern => vec![route.pattern.clone()],
        RouteSyntax::File => edgeone_file_as_urlpatterns(&route.pattern),
    };
    let methods: Vec<HttpMethod> = f.methods.iter().filter_map(|m| http_method(m)).collect();
    let methods: Vec<Option<HttpMethod>> =
        if methods.is_empty() || paths.len() * methods.len() > MAX_MATCHES {
            // The router also reads the manifest's methods, so dropping them here only widens
            // what this object advertises, never what is served.
            vec![None]
        } else {
            methods.into_iter().map(Some).collect()
        };
    paths
        .iter()
        .flat_map(|p| {
            methods.iter().map(move |m| RouteMatch {
                path: PathMatch {
                    kind: PathMatchType::Pattern,
                    value: p.clone(),
                },
                method: *m,
            })
        })
        .take(MAX_MATCHES)
        .collect()
}

fn http_method(m: &str) -> Option<HttpMethod> {
    Some(match m.to_ascii_uppercase().as_str() {
        "GET" => HttpMethod::GET,
        "HEAD" => HttpMethod::HEAD,
        "POST" => HttpMethod::POST,
        "PUT" => HttpMethod::PUT,
        "PATCH" => HttpMethod::PATCH,
        "DELETE" => HttpMethod::DELETE,
        "OPTIONS" => HttpMethod::OPTIONS,
        _ => return None,
    })
}
