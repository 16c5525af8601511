//! Builds every example site and checks the manifest it produces.
//! The EdgeOne example needs `npm ci` in examples/edgeone-site (Express is bundled from it).

mod common;

use common::{assert_blobs_stored, build, example, stored_manifest};
use kpages_crds::manifest::{Dialect, InvocationKind, RouteSyntax};
use kpages_sitebuild::Layout;

#[test]
fn static_site_has_files_rules_and_a_404_page() {
    let out = tempfile::tempdir().unwrap();
    let report = build(&example("static-site"), &out.path().join("out")).unwrap();
    assert_eq!(report.layouts, [Layout::Static]);
    let m = stored_manifest(&report);
    assert_eq!(m, report.manifest);
    assert_blobs_stored(&report);
    let files: Vec<_> = m.files.keys().map(String::as_str).collect();
    assert_eq!(
        files,
        [
            "/404.html",
            "/about.html",
            "/blog/first-post.html",
            "/blog/index.html",
            "/css/style.css",
            "/fr/index.html",
            "/images/logo.svg",
            "/index.html"
        ],
        "_redirects and _headers are configuration, not files"
    );
    assert_eq!(
        m.files["/css/style.css"].content_type,
        "text/css; charset=utf-8"
    );
    assert_eq!(
        m.files["/images/logo.svg"].content_type,
        "image/svg+xml; charset=utf-8"
    );
    assert_eq!(m.site.not_found_page.as_deref(), Some("/404.html"));
    assert!(m.site.pretty_urls);
    assert!(m.functions.is_empty());

    let r = &m.rules.redirects;
    let summary: Vec<_> = r
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_str(), r.status, r.force))
        .collect();
    assert_eq!(
        summary,
        [
            ("/old-blog/*", "/blog/:splat", 301, false),
            ("/search", "/blog/?tag=:q", 302, false),
            ("/", "/fr/index.html", 302, true),
            ("/app/*", "/index.html", 200, false),
            ("/api/*", "https://api.example.com/:splat", 200, false),
            ("/legacy", "/404.html", 404, false),
        ]
    );
    assert_eq!(r[1].query["q"], ":q");
    assert_eq!(r[2].conditions.country, ["fr"]);
    assert_eq!(r[2].conditions.language, ["fr"]);
    assert_eq!(r[0].origin.as_deref(), Some("_redirects:2"));
    let h = &m.rules.headers;
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].for_path, "/*");
    assert_eq!(h[0].values.len(), 2);
    assert_eq!(h[2].values[0].name, "Basic-Auth");
}

#[test]
fn edgeone_site_routes_come_from_the_file_tree() {
    let out = tempfile::tempdir().unwrap();
    let report = build(&example("edgeone-site"), &out.path().join("out")).unwrap();
    assert_eq!(report.layouts, [Layout::Edgeone]);
    let m = stored_manifest(&report);
    assert_blobs_stored(&report);
    let routes: Vec<_> = m
        .functions
        .iter()
        .map(|f| {
            assert_eq!(f.dialect, Dialect::Edgeone, "{}", f.name);
            assert_eq!(f.invocation, InvocationKind::Sync);
            assert_eq!(f.routes.len(), 1);
            assert_eq!(f.routes[0].syntax, RouteSyntax::File);
            (
                f.name.as_str(),
                f.routes[0].pattern.as_str(),
                f.catch_all.as_deref(),
                f.source.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("api", "/api", None, "node-functions/api/index.js"),
            (
                "api-files-__default",
                "/api/files/[[default]]",
                Some("default"),
                "node-functions/api/files/[[default]].js"
            ),
            (
                "api-hello",
                "/api/hello",
                None,
                "node-functions/api/hello.js"
            ),
            (
                "api-users",
                "/api/users",
                None,
                "node-functions/api/users/index.ts"
            ),
            (
                "api-users-_id",
                "/api/users/[id]",
                None,
                "node-functions/api/users/[id].js"
            ),
            (
                "api-users-me",
                "/api/users/me",
                None,
                "node-functions/api/users/me.js"
            ),
            (
                "express-__default",
                "/express/[[default]]",
                Some("default"),
                "node-functions/express/[[default]].js"
            ),
        ]
    );
    // outputDirectory is the static root; functions and node_modules are not published.
    let files: Vec<_> = m.files.keys().map(String::as_str).collect();
    assert_eq!(files, ["/404.html", "/assets/site.css", "/index.html"]);
    let redirects: Vec<_> = m
        .rules
        .redirects
        .iter()
        .map(|r| (r.from.as_str(), r.status))
        .collect();
    assert_eq!(
        redirects,
        [("/docs", 301), ("/articles/:id", 302), ("/app/*", 200)]
    );
    assert_eq!(m.rules.headers[0].values[1].value, "kpages");
    assert_eq!(m.rules.cache[0].source, "/assets/*");
    assert_eq!(m.rules.cache[0].ttl_seconds, 86400);

    // Express is inlined from the site's node_modules and the TypeScript types are gone.
    let bundle = |name: &str| {
        let f = m.function(name).unwrap();
        std::fs::read_to_string(report.out_dir.join("blobs/sha256").join(f.bundle.hex())).unwrap()
    };
    let express = bundle("express-__default");
    assert!(
        express.contains("node_modules/express/lib/express.js"),
        "express inlined"
    );
    assert!(!express.contains("from \"express\""), "no bare import left");
    assert!(!bundle("api-users").contains("interface User"));
}

#[test]
fn netlify_site_functions_config_and_rules() {
    let out = tempfile::tempdir().unwrap();
    let report = build(&example("netlify-site"), &out.path().join("out")).unwrap();
    assert_eq!(report.layouts, [Layout::Netlify, Layout::FrameworksApi]);
    let m = stored_manifest(&report);
    assert_blobs_stored(&report);
    let f = |name: &str| {
        m.function(name)
            .unwrap_or_else(|| panic!("function {name}"))
    };

    let names: Vec<_> = m.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cleanup",
            "hello",
            "legacy",
            "nightly-report",
            "products",
            "quote",
            "send-email-background",
            "ssr",
            "stream"
        ]
    );

    let hello = f("hello");
    assert_eq!(hello.dialect, Dialect::Netlify);
    assert_eq!(hello.routes[0].pattern, "/api/hello");
    assert_eq!(hello.routes[0].syntax, RouteSyntax::Urlpattern);
    assert_eq!(hello.methods, ["GET", "HEAD"]);
    assert_eq!(hello.rate_limit.as_ref().unwrap().window_limit, 60);
    assert_eq!(hello.source.as_deref(), Some("netlify/functions/hello.mts"));

    let products = f("products");
    let patterns: Vec<_> = products.routes.iter().map(|r| r.pattern.as_str()).collect();
    assert_eq!(patterns, ["/products/:id", "/shop/:id"]);
    assert_eq!(products.excluded_routes[0].pattern, "/products/internal");
    assert!(products.prefer_static);
    assert_eq!(
        products.source.as_deref(),
        Some("netlify/functions/products/products.mts")
    );

    let bg = f("send-email-background");
    assert_eq!(bg.invocation, InvocationKind::Background);
    assert!(
        bg.routes.is_empty(),
        "reachable at /.netlify/functions/<name> only"
    );

    let nightly = f("nightly-report");
    assert_eq!(nightly.invocation, InvocationKind::Scheduled);
    assert_eq!(nightly.schedule.as_deref(), Some("0 3 * * *"));
    let cleanup = f("cleanup");
    assert_eq!(cleanup.invocation, InvocationKind::Scheduled);
    assert_eq!(cleanup.schedule.as_deref(), Some("@hourly"));
    assert_eq!(cleanup.dialect, Dialect::Lambda);

    let legacy = f("legacy");
    assert_eq!(legacy.dialect, Dialect::Lambda);
    assert_eq!(
        legacy.source.as_deref(),
        Some("netlify/functions/legacy/index.cjs")
    );

    assert_eq!(f("stream").routes[0].pattern, "/stream");
    let quote = f("quote");
    assert_eq!(
        quote.dialect,
        Dialect::Netlify,
        ".js is ESM under type: module"
    );
    assert_eq!(quote.included_files.len(), 1);
    assert_eq!(quote.included_files[0].path, "data/quotes.json");

    let ssr = f("ssr");
    assert_eq!(ssr.source.as_deref(), Some(".netlify/v1/functions/ssr.mjs"));

    // @netlify/functions resolves to the shim, whose path does not leak into the bundle.
    let cleanup_code = std::fs::read_to_string(
        report
            .out_dir
            .join("blobs/sha256")
            .join(cleanup.bundle.hex()),
    )
    .unwrap();
    assert!(
        cleanup_code.contains("// kpages:@netlify/functions"),
        "{cleanup_code}"
    );
    assert!(
        !cleanup_code.contains("kpages-build-"),
        "scratch path leaked"
    );

    // Order: redirects! first, then _redirects, netlify.toml, the framework's redirects.
    let origins: Vec<_> = m
        .rules
        .redirects
        .iter()
        .map(|r| (r.from.as_str(), r.important, r.origin.as_deref().unwrap()))
        .collect();
    assert_eq!(
        origins,
        [
            ("/_framework/old", true, ".netlify/v1/config.json"),
            ("/home", false, "public/_redirects:2"),
            ("/blog/:year/:slug", false, "public/_redirects:3"),
            ("/search", false, "public/_redirects:4"),
            ("/admin/*", false, "public/_redirects:5"),
            ("/beta/*", false, "public/_redirects:6"),
            ("/fn/*", false, "netlify.toml"),
            ("/eu/*", false, "netlify.toml"),
            ("/upstream/*", false, "netlify.toml"),
            ("/ssr/*", false, ".netlify/v1/config.json"),
        ]
    );
    let upstream = &m.rules.redirects[8];
    assert!(upstream.force);
    assert_eq!(upstream.headers["X-From"], "kpages");
    assert_eq!(m.rules.redirects[7].conditions.country, ["DE", "FR"]);
    assert_eq!(m.rules.redirects[4].conditions.role, ["admin"]);
    assert_eq!(m.rules.redirects[5].conditions.cookie, ["beta"]);
    let header_origins: Vec<_> = m
        .rules
        .headers
        .iter()
        .map(|h| h.origin.as_deref().unwrap())
        .collect();
    assert_eq!(
        header_origins,
        [
            "public/_headers:1",
            "netlify.toml",
            ".netlify/v1/config.json"
        ]
    );

    // Only the publish directory is published.
    let files: Vec<_> = m.files.keys().map(String::as_str).collect();
    assert_eq!(
        files,
        [
            "/404.html",
            "/eu.html",
            "/index.html",
            "/products/featured.html"
        ]
    );
}

#[test]
fn builds_are_reproducible() {
    for name in ["static-site", "netlify-site", "edgeone-site"] {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = build(&example(name), &a.path().join("out")).unwrap();
        let second = build(&example(name), &b.path().join("deeper/out")).unwrap();
        assert_eq!(first.digest, second.digest, "{name}");
        assert_eq!(first.manifest, second.manifest, "{name}");
        // Building again into the same output adds nothing.
        let again = build(&example(name), &a.path().join("out")).unwrap();
        assert_eq!(again.digest, first.digest);
        assert_eq!(again.new_blobs, 0, "{name}");
    }
}
