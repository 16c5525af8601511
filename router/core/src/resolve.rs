//! What a request is for, decided from the deploy manifest alone: the routing precedence of
//! Netlify and EdgeOne Pages as one pure function.
//!
//! ```text
//!  Basic-Auth ─► `important` rules ─► /.netlify/functions/<name> ─► site routes ─► function routes
//!    (401)        (redirects!)         (no declared path only)      (FunctionRoute  (unless preferStatic
//!                                                                    objects)        and a file exists)
//!  ─► redirects / rewrites / proxies (an unforced rule is shadowed by an existing file)
//!  ─► static file (pretty URLs) ─► 404 page
//! ```
//!
//! A 200 rewrite to a path resolves that path once more against functions and files (never
//! against rules again, so rules cannot loop).

use std::sync::Arc;

use kpages_crds::Manifest;
use kpages_crds::manifest::{Function, InvocationKind, RouteSyntax, is_function_name};

use crate::pattern::{Params, Pattern, Syntax, Unusable};
use crate::rules::{CacheRules, HeaderRules, Redirect, RequestFacts};
use crate::site_routes::SiteRoutes;

/// The prefix under which Netlify exposes functions that declare no path.
pub const FUNCTIONS_PREFIX: &str = "/.netlify/functions/";

/// What the router does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer with a redirect.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// The `Location` header.
        location: String,
    },
    /// Proxy to an absolute URL (a 200 rule whose target is a URL).
    Proxy {
        /// The target URL, query included.
        url: String,
        /// Request headers the rule adds.
        headers: Vec<(String, String)>,
    },
    /// Invoke a function.
    Function {
        /// Function name.
        name: String,
        /// Route parameters.
        params: Params,
        /// How the function runs.
        invocation: InvocationKind,
    },
    /// Serve a static file with a status (200, or a rule's custom status, or 404 for the
    /// not-found page).
    Static {
        /// The manifest's file key.
        file: String,
        /// Response status.
        status: u16,
    },
    /// Nothing matched and the site has no 404 page; or a custom-status rule whose page is
    /// missing.
    Empty {
        /// Response status.
        status: u16,
    },
    /// A route of the site's own (a FunctionRoute object, see [`crate::site_routes`]).
    SiteRoute {
        /// Index into the site's [`SiteRoutes`].
        index: usize,
        /// Route parameters.
        params: Params,
    },
    /// A malformed request (`/.netlify/functions/` with an invalid name).
    BadRequest(String),
    /// The path is protected by `Basic-Auth` and the request lacks valid credentials.
    Unauthorized,
}

/// A function route, compiled.
#[derive(Debug, Clone)]
struct FunctionRoute {
    pattern: Pattern,
    function: usize,
}

/// A deploy manifest compiled for routing. Built once per deploy, shared read-only.
#[derive(Debug)]
pub struct CompiledDeploy {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    redirects: Vec<Redirect>,
    /// Header rules.
    pub headers: HeaderRules,
    /// Cache rules.
    pub cache: CacheRules,
    routes: Vec<FunctionRoute>,
    excluded: Vec<Vec<Pattern>>,
    /// Patterns of the manifest the router could not use, for logs (the build refuses them;
    /// an older router may know less than the build that made the manifest).
    pub unusable: Vec<Unusable>,
}

impl CompiledDeploy {
    /// Compiles a manifest. Never fails: a rule or route the router cannot read is skipped
    /// and listed in [`CompiledDeploy::unusable`].
    pub fn compile(manifest: Arc<Manifest>) -> Self {
        let mut unusable = Vec::new();
        let redirects = manifest
            .rules
            .redirects
            .iter()
            .filter_map(|r| match Redirect::compile(r) {
                Ok(c) => Some(c),
                Err(error) => {
                    unusable.push(Unusable {
                        origin: r.origin.clone().unwrap_or_else(|| "manifest".into()),
                        field: "redirect rule path".into(),
                        syntax: Syntax::NetlifyRule,
                        error,
                    });
                    None
                }
            })
            .collect();
        let headers = HeaderRules::compile(&manifest.rules.headers, &mut unusable);
        let cache = CacheRules::compile(&manifest.rules.cache, &mut unusable);
        let mut compile_route = |f: &Function, r: &kpages_crds::manifest::Route, what: &str| {
            let syntax = match r.syntax {
                RouteSyntax::Urlpattern => Syntax::UrlPattern,
                RouteSyntax::File => Syntax::EdgeoneFile,
            };
            Pattern::compile(syntax, &r.pattern)
                .map_err(|error| {
                    unusable.push(Unusable {
                        origin: f.source.clone().unwrap_or_else(|| "manifest".into()),
                        field: format!("{what} of function {:?}", f.name),
                        syntax,
                        error,
                    })
                })
                .ok()
        };
        let mut routes = Vec::new();
        let mut excluded = Vec::new();
        for (i, f) in manifest.functions.iter().enumerate() {
            if f.invocation == InvocationKind::Scheduled {
                // Scheduled functions run on their schedule only, as on Netlify.
                excluded.push(vec![]);
                continue;
            }
            for r in &f.routes {
                if let Some(pattern) = compile_route(f, r, "path") {
                    routes.push(FunctionRoute {
                        pattern,
                        function: i,
                    });
                }
            }
            excluded.push(
                f.excluded_routes
                    .iter()
                    .filter_map(|r| compile_route(f, r, "excludedPath"))
                    .collect(),
            );
        }
        // Stable: equally specific routes keep manifest order (functions sorted by name).
        routes.sort_by(|a, b| a.pattern.precedence_cmp(&b.pattern));
        Self {
            manifest,
            redirects,
            headers,
            cache,
            routes,
            excluded,
            unusable,
        }
    }

    /// Every pattern of `manifest` the router cannot compile: what `kpages build` refuses.
    pub fn check(manifest: &Manifest) -> Result<(), Vec<Unusable>> {
        let compiled = Self::compile(Arc::new(manifest.clone()));
        if compiled.unusable.is_empty() {
            Ok(())
        } else {
            Err(compiled.unusable)
        }
    }

    /// Decides what to do with a request. `authorization` is the request's
    /// `Authorization` header, checked against `Basic-Auth` header rules; `site_routes` are
    /// the site's FunctionRoutes (empty outside cluster mode).
    pub fn resolve<T>(
        &self,
        facts: &RequestFacts,
        authorization: Option<&str>,
        site_routes: &SiteRoutes<T>,
    ) -> Decision {
        if let Some(auth) = self.headers.basic_auth_for(&facts.host, &facts.path)
            && !auth.allows(authorization)
        {
            return Decision::Unauthorized;
        }
        let file_exists = self.find_static(&facts.path).is_some();
        for r in self.redirects.iter().filter(|r| r.rule.important) {
            if let Some(m) = r.matches(facts) {
                return self.apply_rule(m.rule.status, m.to, &m.rule.headers, facts, site_routes);
            }
        }
        if let Some(d) = self.function_for(facts, &facts.path, site_routes) {
            return d;
        }
        for r in self.redirects.iter().filter(|r| !r.rule.important) {
            if file_exists && !r.rule.force {
                continue;
            }
            if let Some(m) = r.matches(facts) {
                return self.apply_rule(m.rule.status, m.to, &m.rule.headers, facts, site_routes);
            }
        }
        match self.find_static(&facts.path) {
            Some(file) => Decision::Static {
                file: file.to_string(),
                status: 200,
            },
            None => self.not_found(404),
        }
    }

    /// A function for `path`: `/.netlify/functions/<name>`, a site route or a declared route.
    fn function_for<T>(
        &self,
        facts: &RequestFacts,
        path: &str,
        site_routes: &SiteRoutes<T>,
    ) -> Option<Decision> {
        if let Some(rest) = path.strip_prefix(FUNCTIONS_PREFIX) {
            let name = rest.split('/').next().unwrap_or("");
            if !is_function_name(name) {
                return Some(Decision::BadRequest(format!(
                    "{name:?} is not a function name; use letters, digits, '-' and '_'"
                )));
            }
            return Some(match self.manifest.function(name) {
                Some(f) if f.routes.is_empty() && f.invocation != InvocationKind::Scheduled => {
                    Decision::Function {
                        name: f.name.clone(),
                        params: Params::new(),
                        invocation: f.invocation,
                    }
                }
                _ => self.not_found(404),
            });
        }
        if let Some((index, params)) =
            site_routes.find(facts, path, &|p| self.find_static(p).is_some())
        {
            return Some(Decision::SiteRoute { index, params });
        }
        for route in &self.routes {
            let f = &self.manifest.functions[route.function];
            if !f.methods.is_empty()
                && !f
                    .methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&facts.method))
            {
                continue;
            }
            let Some(params) = route.pattern.matches(&facts.host, path) else {
                continue;
            };
            if self.excluded[route.function]
                .iter()
                .any(|x| x.matches(&facts.host, path).is_some())
            {
                continue;
            }
            if f.prefer_static && self.find_static(path).is_some() {
                continue;
            }
            let params = match &f.catch_all {
                // The mounted app sees this value as its path, so it travels encoded.
                Some(name) => params
                    .into_iter()
                    .map(|(k, v)| {
                        let v = if &k == name {
                            crate::path::encode(&v)
                        } else {
                            v
                        };
                        (k, v)
                    })
                    .collect(),
                None => params,
            };
            return Some(Decision::Function {
                name: f.name.clone(),
                params,
                invocation: f.invocation,
            });
        }
        None
    }

    fn apply_rule<T>(
        &self,
        status: u16,
        to: String,
        headers: &std::collections::BTreeMap<String, String>,
        facts: &RequestFacts,
        site_routes: &SiteRoutes<T>,
    ) -> Decision {
        let absolute = to.starts_with("http://") || to.starts_with("https://");
        match status {
            301 | 302 | 303 | 307 | 308 => Decision::Redirect {
                status,
                location: to,
            },
            200 if absolute => Decision::Proxy {
                url: to,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            _ if absolute => Decision::Redirect {
                status: 302,
                location: to,
            },
            _ => {
                let target = to.split(['?', '#']).next().unwrap_or("/");
                let Ok(target) = crate::path::normalize(target) else {
                    return self.not_found(404);
                };
                if status == 200
                    && let Some(d) = self.function_for(facts, &target, site_routes)
                {
                    return d;
                }
                match self.find_static(&target) {
                    Some(file) => Decision::Static {
                        file: file.to_string(),
                        status,
                    },
                    None if status == 200 => self.not_found(404),
                    None => Decision::Empty { status },
                }
            }
        }
    }

    fn not_found(&self, status: u16) -> Decision {
        let page = self
            .manifest
            .site
            .not_found_page
            .as_deref()
            .unwrap_or("/404.html");
        if self.manifest.files.contains_key(page) {
            Decision::Static {
                file: page.to_string(),
                status,
            }
        } else {
            Decision::Empty { status }
        }
    }

    /// The file serving `path`: the exact file, `index.html` of a directory, or with pretty
    /// URLs `path.html`.
    pub fn find_static(&self, path: &str) -> Option<&str> {
        let files = &self.manifest.files;
        let hit = |key: String| files.get_key_value(&key).map(|(k, _)| k.as_str());
        if let Some(dir) = path.strip_suffix('/') {
            hit(format!("{dir}/index.html")).or_else(|| {
                (self.manifest.site.pretty_urls && !dir.is_empty())
                    .then(|| hit(format!("{dir}.html")))
                    .flatten()
            })
        } else {
            hit(path.to_string())
                .or_else(|| hit(format!("{path}/index.html")))
                .or_else(|| {
                    self.manifest
                        .site
                        .pretty_urls
                        .then(|| hit(format!("{path}.html")))
                        .flatten()
                })
        }
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.manifest.function(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpages_crds::Digest;
    use kpages_crds::manifest::{
        Dialect, HeaderRule, HeaderValue, RedirectRule, Route, StaticFile,
    };

    fn file() -> StaticFile {
        StaticFile {
            digest: Digest::of(b"x"),
            size: 1,
            content_type: "text/html".into(),
        }
    }

    fn function(name: &str, routes: &[(&str, RouteSyntax)]) -> Function {
        Function {
            routes: routes
                .iter()
                .map(|(p, s)| Route {
                    pattern: p.to_string(),
                    syntax: *s,
                })
                .collect(),
            ..kpages_testsupport::fixtures::function(name)
        }
    }

    fn site() -> Manifest {
        let mut m = Manifest::new();
        for f in [
            "/index.html",
            "/about.html",
            "/docs/index.html",
            "/404.html",
            "/app.js",
            "/static.html",
            "/shadowed.html",
            "/admin/index.html",
            "/forced.html",
        ] {
            m.files.insert(f.into(), file());
        }
        let mut post_only = function("post-only", &[("/submit", RouteSyntax::Urlpattern)]);
        post_only.methods = vec!["POST".into()];
        let mut prefer = function(
            "prefer",
            &[
                ("/static.html", RouteSyntax::Urlpattern),
                ("/prefer", RouteSyntax::Urlpattern),
            ],
        );
        prefer.prefer_static = true;
        let mut excl = function("excl", &[("/ex/*", RouteSyntax::Urlpattern)]);
        excl.excluded_routes = vec![Route {
            pattern: "/ex/skip".into(),
            syntax: RouteSyntax::Urlpattern,
        }];
        let mut bg = function("bg", &[]);
        bg.invocation = InvocationKind::Background;
        let mut cron = function("cron", &[]);
        cron.invocation = InvocationKind::Scheduled;
        cron.schedule = Some("@hourly".into());
        let mut koa = function("koa", &[("/koa/[[default]]", RouteSyntax::File)]);
        koa.dialect = Dialect::Edgeone;
        koa.catch_all = Some("default".into());
        m.functions = vec![
            function("api", &[("/api/:id", RouteSyntax::Urlpattern)]),
            bg,
            cron,
            excl,
            function("legacy", &[]),
            koa,
            post_only,
            prefer,
            function("users-id", &[("/users/[id]", RouteSyntax::File)]),
            function("users-list", &[("/users/list", RouteSyntax::File)]),
        ];
        let mut important = RedirectRule::new("/api/legacy", "/api/v2", 301);
        important.important = true;
        let mut forced = RedirectRule::new("/forced", "/about", 200);
        forced.force = true;
        let mut forced_file = RedirectRule::new("/forced.html", "/about.html", 200);
        forced_file.force = true;
        m.rules.redirects = vec![
            important,
            RedirectRule::new("/api/shadow", "/nope", 301),
            RedirectRule::new("/old", "/about", 301),
            RedirectRule::new("/shadowed.html", "/about", 301),
            forced_file,
            RedirectRule::new("/gone", "/404.html", 410),
            RedirectRule::new("/teapot", "/missing.html", 418),
            RedirectRule::new("/ext/*", "https://backend.example.com/:splat", 200),
            RedirectRule::new("/fn-rewrite", "/.netlify/functions/legacy", 200),
            RedirectRule::new("/route-rewrite", "/users/9", 200),
            RedirectRule::new("/spa/*", "/index.html", 200),
            RedirectRule::new("/ext-302/*", "https://other.example.com/:splat", 404),
        ];
        m.rules.headers = vec![HeaderRule {
            for_path: "/admin/*".into(),
            values: vec![HeaderValue {
                name: "Basic-Auth".into(),
                value: "u:p".into(),
            }],
            origin: None,
        }];
        m
    }

    fn fun(name: &str, params: &[(&str, &str)]) -> Decision {
        Decision::Function {
            name: name.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            invocation: InvocationKind::Sync,
        }
    }

    fn stat(file: &str, status: u16) -> Decision {
        Decision::Static {
            file: file.into(),
            status,
        }
    }

    fn redirect(status: u16, location: &str) -> Decision {
        Decision::Redirect {
            status,
            location: location.into(),
        }
    }

    #[test]
    fn precedence_table() {
        let d = CompiledDeploy::compile(Arc::new(site()));
        assert!(d.unusable.is_empty(), "{:?}", d.unusable);
        let cases: Vec<(&str, &str, &str, Decision)> = vec![
            ("GET", "/", "", stat("/index.html", 200)),
            ("GET", "/about", "", stat("/about.html", 200)),
            ("GET", "/about/", "", stat("/about.html", 200)),
            ("GET", "/docs", "", stat("/docs/index.html", 200)),
            ("GET", "/docs/", "", stat("/docs/index.html", 200)),
            ("GET", "/nothing", "", stat("/404.html", 404)),
            // important rules beat function routes
            ("GET", "/api/legacy", "", redirect(301, "/api/v2")),
            ("GET", "/api/7", "", fun("api", &[("id", "7")])),
            // function routes beat ordinary rules
            ("GET", "/api/shadow", "", fun("api", &[("id", "shadow")])),
            ("GET", "/old", "q=1", redirect(301, "/about?q=1")),
            // an unforced rule is shadowed by an existing file; a forced one is not
            ("GET", "/shadowed.html", "", stat("/shadowed.html", 200)),
            ("GET", "/forced.html", "", stat("/about.html", 200)),
            ("GET", "/gone", "", stat("/404.html", 410)),
            ("GET", "/teapot", "", Decision::Empty { status: 418 }),
            (
                "GET",
                "/ext/a/b",
                "x=1",
                Decision::Proxy {
                    url: "https://backend.example.com/a/b?x=1".into(),
                    headers: vec![],
                },
            ),
            (
                "GET",
                "/ext-302/a",
                "",
                redirect(302, "https://other.example.com/a"),
            ),
            ("GET", "/spa/deep/link", "", stat("/index.html", 200)),
            ("GET", "/fn-rewrite", "", fun("legacy", &[])),
            ("GET", "/route-rewrite", "", fun("users-id", &[("id", "9")])),
            // /.netlify/functions/<name>
            ("GET", "/.netlify/functions/legacy", "", fun("legacy", &[])),
            (
                "GET",
                "/.netlify/functions/legacy/sub",
                "",
                fun("legacy", &[]),
            ),
            ("GET", "/.netlify/functions/api", "", stat("/404.html", 404)),
            (
                "GET",
                "/.netlify/functions/missing",
                "",
                stat("/404.html", 404),
            ),
            (
                "GET",
                "/.netlify/functions/cron",
                "",
                stat("/404.html", 404),
            ),
            (
                "GET",
                "/.netlify/functions/bad.name",
                "",
                Decision::BadRequest(
                    "\"bad.name\" is not a function name; use letters, digits, '-' and '_'".into(),
                ),
            ),
            (
                "POST",
                "/.netlify/functions/bg",
                "",
                Decision::Function {
                    name: "bg".into(),
                    params: Params::new(),
                    invocation: InvocationKind::Background,
                },
            ),
            // methods
            ("POST", "/submit", "", fun("post-only", &[])),
            ("GET", "/submit", "", stat("/404.html", 404)),
            // preferStatic
            ("GET", "/static.html", "", stat("/static.html", 200)),
            ("GET", "/prefer", "", fun("prefer", &[])),
            // excluded routes
            ("GET", "/ex/a", "", fun("excl", &[("0", "a")])),
            ("GET", "/ex/skip", "", stat("/404.html", 404)),
            // EdgeOne precedence and catch-all
            ("GET", "/users/list", "", fun("users-list", &[])),
            ("GET", "/users/5", "", fun("users-id", &[("id", "5")])),
            ("GET", "/koa", "", fun("koa", &[("default", "")])),
            (
                "GET",
                "/koa/a b/c",
                "",
                fun("koa", &[("default", "a%20b/c")]),
            ),
            // Basic-Auth
            ("GET", "/admin/", "", Decision::Unauthorized),
        ];
        for (method, path, query, want) in cases {
            let facts = RequestFacts {
                method: method.into(),
                host: "site.example".into(),
                path: path.into(),
                query: query.into(),
                ..Default::default()
            };
            assert_eq!(
                d.resolve(&facts, None, &SiteRoutes::<()>::default()),
                want,
                "{method} {path}?{query}"
            );
        }
    }

    #[test]
    fn basic_auth_lets_the_right_credentials_through() {
        use base64::Engine as _;
        let d = CompiledDeploy::compile(Arc::new(site()));
        let facts = RequestFacts {
            method: "GET".into(),
            host: "h".into(),
            path: "/admin/".into(),
            ..Default::default()
        };
        let ok = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p")
        );
        assert_eq!(
            d.resolve(&facts, Some(&ok), &SiteRoutes::<()>::default()),
            stat("/admin/index.html", 200)
        );
    }

    #[test]
    fn without_a_404_page_nothing_found_is_empty() {
        let mut m = Manifest::new();
        m.files.insert("/a.html".into(), file());
        m.site.pretty_urls = false;
        let d = CompiledDeploy::compile(Arc::new(m));
        let facts = |p: &str| RequestFacts {
            path: p.into(),
            ..Default::default()
        };
        assert_eq!(
            d.resolve(&facts("/a"), None, &SiteRoutes::<()>::default()),
            Decision::Empty { status: 404 }
        );
        assert_eq!(
            d.resolve(&facts("/a.html"), None, &SiteRoutes::<()>::default()),
            stat("/a.html", 200)
        );
    }
}
