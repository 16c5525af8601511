//! FunctionRoutes a user wrote for a site (cluster mode): host and path matches that send a
//! request to a deploy's function or to a Service, ahead of the deploy's own function routes.
//!
//! ```text
//!  request ─► Basic-Auth ─► important rules ─► /.netlify/functions/<name>
//!         ─► site routes (FunctionRoute objects: order, then most specific path, then name)
//!         ─► the deploy's function routes ─► rules ─► static files
//! ```
//!
//! The operator writes a FunctionRoute for every function route of a deploy too; those mirror
//! the manifest, which the router reads directly, so only routes nobody generated are compiled
//! here (see `cluster::build_table`). A route is served once the operator has accepted it
//! (`Accepted=True`: no conflict with an older route), as Gateway API controllers program only
//! accepted routes.

use kpages_crds::FunctionRouteSpec;
use kpages_crds::function_route::{HttpMethod, PathMatchType};

use crate::host;
use crate::pattern::{Params, Pattern};
use crate::rules::RequestFacts;

/// One compiled route; `T` is where it sends matching requests (the router's upstreams; the
/// matching here never looks at it).
#[derive(Debug, Clone)]
pub struct SiteRoute<T> {
    /// `<namespace>/<FunctionRoute name>`.
    pub name: String,
    /// Lower-case hosts (`*.example.com` for one label below); empty: every host of the site.
    hostnames: Vec<String>,
    matches: Vec<Match>,
    /// A static file at the request path wins over the route.
    pub prefer_static: bool,
    /// Where matching requests go.
    pub target: T,
    order: i32,
    specificity: (usize, u8),
}

#[derive(Debug, Clone)]
struct Match {
    path: PathMatcher,
    method: Option<&'static str>,
}

#[derive(Debug, Clone)]
enum PathMatcher {
    /// The whole path equals the value.
    Exact(String),
    /// The path is the value or continues it after a `/` (the value has no trailing slash,
    /// except `/` itself).
    Prefix(String),
    /// URLPattern pathname syntax.
    Pattern(Pattern),
}

impl PathMatcher {
    fn matches(&self, path: &str) -> Option<Params> {
        match self {
            Self::Exact(v) => (path == v).then(Params::new),
            Self::Prefix(v) if v == "/" => Some(Params::new()),
            Self::Prefix(v) => {
                let rest = path.strip_prefix(v.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then(Params::new)
            }
            Self::Pattern(p) => p.matches("", path),
        }
    }
}

fn method_name(m: HttpMethod) -> &'static str {
    match m {
        HttpMethod::GET => "GET",
        HttpMethod::HEAD => "HEAD",
        HttpMethod::POST => "POST",
        HttpMethod::PUT => "PUT",
        HttpMethod::PATCH => "PATCH",
        HttpMethod::DELETE => "DELETE",
        HttpMethod::OPTIONS => "OPTIONS",
    }
}

impl<T> SiteRoute<T> {
    /// Compiles a FunctionRoute's matches for `target`; an error names the match that cannot
    /// be compiled (a `Pattern` value outside the supported URLPattern syntax).
    pub fn compile(name: String, spec: &FunctionRouteSpec, target: T) -> Result<Self, String> {
        let mut matches = Vec::with_capacity(spec.matches.len());
        let mut specificity = (0, 0);
        for m in &spec.matches {
            let value = &m.path.value;
            let (path, rank) = match m.path.kind {
                PathMatchType::Exact => (PathMatcher::Exact(value.clone()), 2),
                PathMatchType::PathPrefix => {
                    let trimmed = value.trim_end_matches('/');
                    let v = if trimmed.is_empty() { "/" } else { trimmed };
                    (PathMatcher::Prefix(v.to_string()), 1)
                }
                PathMatchType::Pattern => (
                    PathMatcher::Pattern(
                        Pattern::urlpattern(value).map_err(|e| format!("path {value:?}: {e}"))?,
                    ),
                    0,
                ),
            };
            specificity = specificity.max((value.len(), rank));
            matches.push(Match {
                path,
                method: m.method.map(method_name),
            });
        }
        Ok(Self {
            name,
            hostnames: spec
                .hostnames
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            matches,
            prefer_static: spec.prefer_static,
            target,
            order: spec.order,
            specificity,
        })
    }

    fn host_matches(&self, host: &str) -> bool {
        self.hostnames.is_empty()
            || self.hostnames.iter().any(|h| match h.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => h == host,
            })
    }

    fn matches(&self, method: &str, path: &str) -> Option<Params> {
        self.matches
            .iter()
            .filter(|m| m.method.is_none_or(|want| want == method))
            .find_map(|m| m.path.matches(path))
    }
}

/// A site's routes in the order they are tried.
#[derive(Debug, Clone)]
pub struct SiteRoutes<T> {
    routes: Vec<SiteRoute<T>>,
}

impl<T> Default for SiteRoutes<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<T> SiteRoutes<T> {
    /// Orders `routes`: lower `order` first, then the most specific path (longest value;
    /// `Exact` over `PathPrefix` over `Pattern` at equal length), then name.
    pub fn new(mut routes: Vec<SiteRoute<T>>) -> Self {
        routes.sort_by(|a, b| {
            a.order
                .cmp(&b.order)
                .then(b.specificity.cmp(&a.specificity))
                .then(a.name.cmp(&b.name))
        });
        Self { routes }
    }

    /// Whether there are none (the common case: one branch on the hot path).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route at `index` (as returned by [`SiteRoutes::find`]).
    pub fn get(&self, index: usize) -> Option<&SiteRoute<T>> {
        self.routes.get(index)
    }

    /// The first route matching the request at `path`, with its parameters; a route that
    /// prefers static files is passed over when `has_file(path)`.
    pub fn find(
        &self,
        facts: &RequestFacts,
        path: &str,
        has_file: &dyn Fn(&str) -> bool,
    ) -> Option<(usize, Params)> {
        if self.routes.is_empty() {
            return None;
        }
        let host = host::normalize(&facts.host);
        self.routes.iter().enumerate().find_map(|(i, r)| {
            if !r.host_matches(&host) {
                return None;
            }
            let params = r.matches(&facts.method, path)?;
            if r.prefer_static && has_file(path) {
                return None;
            }
            Some((i, params))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpages_crds::function_route::{
        FunctionBackend, PathMatch, RouteBackend, RouteInvocation, RouteMatch,
    };

    fn spec(
        matches: &[(PathMatchType, &str, Option<HttpMethod>)],
        order: i32,
    ) -> FunctionRouteSpec {
        FunctionRouteSpec {
            site: "web".into(),
            hostnames: vec![],
            matches: matches
                .iter()
                .map(|(kind, value, method)| RouteMatch {
                    path: PathMatch {
                        kind: *kind,
                        value: value.to_string(),
                    },
                    method: *method,
                })
                .collect(),
            backend: RouteBackend {
                function: Some(FunctionBackend {
                    deploy: None,
                    name: "f".into(),
                }),
                service: None,
            },
            invocation: RouteInvocation::Sync,
            prefer_static: false,
            order,
        }
    }

    /// Routes in these tests target their own name.
    fn route(name: &str, spec: &FunctionRouteSpec) -> SiteRoute<String> {
        SiteRoute::compile(name.into(), spec, name.to_string()).unwrap()
    }

    fn facts(method: &str, host: &str, path: &str) -> RequestFacts {
        RequestFacts {
            method: method.into(),
            host: host.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    fn found(routes: &SiteRoutes<String>, method: &str, host: &str, path: &str) -> Option<String> {
        routes
            .find(&facts(method, host, path), path, &|p| p == "/static.html")
            .map(|(i, _)| routes.get(i).unwrap().name.clone())
    }

    use PathMatchType::{Exact, PathPrefix, Pattern as Pat};

    #[test]
    fn prefix_matches_whole_segments_and_exact_the_whole_path() {
        let routes = SiteRoutes::new(vec![
            route("prefix", &spec(&[(PathPrefix, "/api/", None)], 100)),
            route("exact", &spec(&[(Exact, "/health", None)], 100)),
        ]);
        for (path, want) in [
            ("/api", Some("prefix")),
            ("/api/", Some("prefix")),
            ("/api/v1/x", Some("prefix")),
            ("/apix", None),
            ("/health", Some("exact")),
            ("/health/", None),
            ("/healthz", None),
        ] {
            assert_eq!(
                found(&routes, "GET", "a.test", path).as_deref(),
                want,
                "{path}"
            );
        }
    }

    #[test]
    fn order_then_specificity_then_name_decide() {
        let routes = SiteRoutes::new(vec![
            route("b-short", &spec(&[(PathPrefix, "/a", None)], 100)),
            route("a-short", &spec(&[(PathPrefix, "/a", None)], 100)),
            route("long", &spec(&[(PathPrefix, "/a/b", None)], 100)),
            route("early", &spec(&[(PathPrefix, "/", None)], 10)),
            route("late", &spec(&[(PathPrefix, "/z", None)], 200)),
        ]);
        assert_eq!(
            found(&routes, "GET", "h", "/a/b/c").as_deref(),
            Some("early")
        );
        let without_early = SiteRoutes::new(
            routes
                .routes
                .iter()
                .filter(|r| r.name != "early")
                .cloned()
                .collect(),
        );
        assert_eq!(
            found(&without_early, "GET", "h", "/a/b/c").as_deref(),
            Some("long")
        );
        assert_eq!(
            found(&without_early, "GET", "h", "/a/x").as_deref(),
            Some("a-short")
        );
        assert_eq!(
            found(&without_early, "GET", "h", "/z").as_deref(),
            Some("late")
        );
    }

    #[test]
    fn methods_hosts_patterns_and_static_files() {
        let mut by_host = spec(&[(Pat, "/users/:id", Some(HttpMethod::POST))], 100);
        by_host.hostnames = vec!["API.example.com".into(), "*.example.org".into()];
        let mut static_first = spec(&[(PathPrefix, "/", None)], 100);
        static_first.prefer_static = true;
        let routes = SiteRoutes::new(vec![
            route("users", &by_host),
            route("fallback", &static_first),
        ]);
        let (i, params) = routes
            .find(
                &facts("POST", "api.example.com:8443", "/users/42"),
                "/users/42",
                &|_| false,
            )
            .unwrap();
        assert_eq!(routes.get(i).unwrap().name, "users");
        assert_eq!(params.get("id").map(String::as_str), Some("42"));
        assert_eq!(
            found(&routes, "POST", "eu.example.org", "/users/1").as_deref(),
            Some("users")
        );
        assert_eq!(
            found(&routes, "GET", "api.example.com", "/users/1").as_deref(),
            Some("fallback"),
            "the method does not match"
        );
        assert_eq!(
            found(&routes, "POST", "a.b.example.org", "/users/1").as_deref(),
            Some("fallback"),
            "a wildcard covers one label"
        );
        assert_eq!(
            found(&routes, "GET", "h", "/static.html"),
            None,
            "an existing file wins over a preferStatic route"
        );
    }

    #[test]
    fn a_pattern_outside_the_supported_syntax_is_refused_by_name() {
        let bad = spec(&[(Pat, "/a/(\\d+)", None)], 100);
        let err = SiteRoute::compile("ns/r".into(), &bad, "ns/r".to_string()).unwrap_err();
        assert!(err.starts_with(r#"path "/a/(\\d+)": "#), "{err}");
    }
}
