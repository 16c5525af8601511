//! Bad input fails with a message naming the file (and line or field) and writes nothing.

mod common;

use common::SiteFixture;

const OK_FN: &str = "export default async () => new Response('ok');\n";

#[test]
fn syntax_errors_name_file_and_line() {
    let site = SiteFixture::new().with("index.html", "<h1>hi</h1>").with(
        "netlify/functions/broken.mts",
        "export default async () => {\n  const x = ;\n};\n",
    );
    let err = site.build_fails();
    assert!(err.starts_with("netlify/functions/broken.mts:2:"), "{err}");
    let eo = SiteFixture::new().with("node-functions/api.js", "export function onRequest( {\n");
    let err = eo.build_fails();
    assert!(err.starts_with("node-functions/api.js:2:"), "{err}");
}

#[test]
fn two_functions_claiming_one_route_are_both_named() {
    let cases = [
        (
            SiteFixture::new()
                .with(
                    "netlify/functions/a.mjs",
                    &format!("{OK_FN}export const config = {{ path: '/x' }};\n"),
                )
                .with(
                    "netlify/functions/b.mjs",
                    &format!("{OK_FN}export const config = {{ path: ['/y', '/x/'] }};\n"),
                ),
            ["netlify/functions/a.mjs", "netlify/functions/b.mjs"],
        ),
        (
            SiteFixture::new()
                .with("node-functions/users/[id].js", OK_FN)
                .with("node-functions/users/[slug].js", OK_FN),
            [
                "node-functions/users/[id].js",
                "node-functions/users/[slug].js",
            ],
        ),
        (
            SiteFixture::new()
                .with("node-functions/hello.js", OK_FN)
                .with("cloud-functions/hello/index.js", OK_FN),
            ["cloud-functions/hello/index.js", "node-functions/hello.js"],
        ),
        (
            SiteFixture::new()
                .with("netlify/functions/hello.mjs", OK_FN)
                .with("netlify/functions/hello.ts", OK_FN),
            ["netlify/functions/hello.mjs", "netlify/functions/hello.ts"],
        ),
    ];
    for (site, files) in cases {
        let err = site.build_fails();
        for f in files {
            assert!(err.contains(f), "{f} missing from: {err}");
        }
    }
}

#[test]
fn non_static_config_names_file_and_field() {
    let site = SiteFixture::new().with(
        "netlify/functions/dyn.mts",
        &format!("const base = '/api';\n{OK_FN}export const config = {{ path: base + '/dyn' }};\n"),
    );
    let err = site.build_fails();
    assert!(
        err.starts_with("netlify/functions/dyn.mts: config field `path`"),
        "{err}"
    );
    assert!(err.contains("not a static value"), "{err}");
}

#[test]
fn unsupported_config_values_name_file_and_field() {
    let cases = [
        ("export const config = { path: 'relative' };\n", "`path`"),
        (
            "export const config = { schedule: 'sometimes' };\n",
            "`schedule`",
        ),
        ("export const config = { cache: 'manual' };\n", "`cache`"),
        (
            "export const config = { rateLimit: { windowLimit: 0, windowSize: 1 } };\n",
            "`rateLimit.windowLimit`",
        ),
        (
            "export const config = { schedule: '@daily', path: '/x' };\n",
            "`path`",
        ),
    ];
    for (config, field) in cases {
        let site = SiteFixture::new().with("netlify/functions/f.mjs", &format!("{OK_FN}{config}"));
        let err = site.build_fails();
        assert!(
            err.starts_with(&format!("netlify/functions/f.mjs: config field {field}")),
            "{config}: {err}"
        );
    }
    let bg = SiteFixture::new().with(
        "netlify/functions/job-background.mjs",
        &format!("{OK_FN}export const config = {{ schedule: '@daily' }};\n"),
    );
    assert!(bg.build_fails().contains("cannot also be scheduled"));
}

/// A schedule the schedulers cannot run is refused by the build, wherever it is written: in
/// the function's own `config`, in `netlify.toml`, or through the `schedule()` helper.
#[test]
fn invalid_schedules_fail_the_build_naming_the_schedule() {
    let in_source = SiteFixture::new().with(
        "netlify/functions/tick.mjs",
        &format!("{OK_FN}export const config = {{ schedule: '60 * * * *' }};\n"),
    );
    let err = in_source.build_fails();
    assert!(
        err.starts_with("netlify/functions/tick.mjs: config field `schedule`"),
        "{err}"
    );
    assert!(
        err.contains("\"60 * * * *\"") && err.contains("minute: 60 is outside 0-59"),
        "{err}"
    );

    let in_toml = SiteFixture::new()
        .with("netlify/functions/tick.mjs", OK_FN)
        .with(
            "netlify.toml",
            "[functions.tick]\nschedule = \"0 0 L * *\"\n",
        );
    let err = in_toml.build_fails();
    assert!(err.contains("schedule"), "{err}");
    assert!(err.contains("\"0 0 L * *\""), "{err}");
    assert!(err.contains("expected 5 fields"), "{err}");
}

/// A URL pattern the router cannot compile fails the build instead of being skipped at serve
/// time, naming the file, the field, the pattern and what is accepted.
#[test]
fn patterns_the_router_cannot_compile_fail_the_build() {
    let site = SiteFixture::new().with(
        "netlify/functions/items.mjs",
        &format!("{OK_FN}export const config = {{ path: '/items/:id(\\\\d+)' }};\n"),
    );
    let err = site.build_fails();
    assert!(
        err.starts_with("netlify/functions/items.mjs: path of function \"items\""),
        "{err}"
    );
    assert!(err.contains(r#"pattern "/items/:id(\\d+)""#), "{err}");
    assert!(
        err.contains("a regular-expression group is not supported"),
        "{err}"
    );
    assert!(err.contains("accepted: a path starting with '/'"), "{err}");
}

/// Included files come from inside the site only: a glob that climbs out of it, or a link
/// that points out of it, fails the build and names the file, the field and the value.
#[test]
fn included_files_outside_the_site_fail_the_build() {
    let climbing = SiteFixture::new().with(
        "netlify/functions/f.mjs",
        &format!("{OK_FN}export const config = {{ includedFiles: ['../secrets/*'] }};\n"),
    );
    let err = climbing.build_fails();
    assert!(
        err.starts_with("netlify/functions/f.mjs: config field `includedFiles`"),
        "{err}"
    );
    assert!(
        err.contains("\"../secrets/*\" reaches outside the site directory"),
        "{err}"
    );

    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("key.pem"), "secret").unwrap();
    let linked = SiteFixture::new().with(
        "netlify/functions/f.mjs",
        &format!("{OK_FN}export const config = {{ includedFiles: ['data/**'] }};\n"),
    );
    std::fs::create_dir_all(linked.path().join("data")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("key.pem"),
        linked.path().join("data/key.pem"),
    )
    .unwrap();
    let err = linked.build_fails();
    assert!(err.contains("`includedFiles`"), "{err}");
    assert!(err.contains("\"data/key.pem\" is a link to"), "{err}");
    assert!(err.contains("outside the site directory"), "{err}");
}

/// A proxy rule may not let the request choose where the router connects, nor set headers the
/// router owns: the build refuses both, naming the file and the rule.
#[test]
fn proxy_rules_that_choose_their_host_or_set_router_headers_fail_the_build() {
    let chosen = SiteFixture::new().with("index.html", "hi").with(
        "netlify.toml",
        "[[redirects]]\nfrom = \"/p/:host/*\"\nto = \"http://:host.internal/:splat\"\nstatus = 200\n",
    );
    let err = chosen.build_fails();
    assert!(err.starts_with("netlify.toml"), "{err}");
    assert!(err.contains("\"http://:host.internal/:splat\""), "{err}");
    assert!(err.contains("a placeholder in the host"), "{err}");

    let forged = SiteFixture::new()
        .with("index.html", "hi")
        .with("_redirects", "/api/* http://api.example.com/:splat 200\n");
    let out = tempfile::tempdir().unwrap();
    common::build(forged.path(), &out.path().join("out")).expect("a plain proxy rule builds");
    let forged = forged.with(
        "netlify.toml",
        "[[redirects]]\nfrom = \"/x/*\"\nto = \"http://api.example.com/:splat\"\nstatus = 200\nheaders = {X-Kpages-Function = \"admin\"}\n",
    );
    let err = forged.build_fails();
    assert!(err.contains("proxy header \"X-Kpages-Function\""), "{err}");
    assert!(err.contains("control headers"), "{err}");
}

#[test]
fn unparseable_rule_files_name_file_and_line() {
    let cases = [
        ("_redirects", "/a /b\n/c\n", "_redirects:2: "),
        (
            "_redirects",
            "# ok\n/a /b 302\n/c /d 999\n",
            "_redirects:3: ",
        ),
        ("_headers", "/*\n  X-A: 1\n  what\n", "_headers:3: "),
    ];
    for (file, text, want) in cases {
        let site = SiteFixture::new().with("index.html", "hi").with(file, text);
        let err = site.build_fails();
        assert!(err.starts_with(want), "{file}: {err}");
    }
    let published = SiteFixture::new()
        .with("netlify.toml", "[build]\npublish = \"dist\"\n")
        .with("dist/_redirects", "/x\n");
    assert!(published.build_fails().starts_with("dist/_redirects:1: "));
}

#[test]
fn bad_configuration_files_name_file_and_field() {
    let cases = [
        (
            "netlify.toml",
            "[[redirects]]\nfrom = \"/a\"\n",
            "netlify.toml: `redirects[0]`",
        ),
        (
            "netlify.toml",
            "[build]\npublish = \"missing\"\n",
            "netlify.toml: `build.publish`",
        ),
        (
            "edgeone.json",
            "{\"redirects\": [{\"source\": \"/a\", \"destination\": \"/b\", \"statusCode\": 200}]}",
            "edgeone.json: `redirects[0].statusCode`",
        ),
        (
            ".netlify/v1/config.json",
            "{\"redirects\": [{\"from\": \"/a\"}]}",
            ".netlify/v1/config.json: `redirects[0]`",
        ),
    ];
    for (file, text, want) in cases {
        let site = SiteFixture::new().with("index.html", "hi").with(file, text);
        let err = site.build_fails();
        assert!(err.starts_with(want), "{file}: {err}");
    }
}

#[test]
fn modules_without_a_handler_and_missing_dependencies_are_explained() {
    let site = SiteFixture::new().with("netlify/functions/empty.mjs", "export const x = 1;\n");
    let err = site.build_fails();
    assert!(err.contains("netlify/functions/empty.mjs"), "{err}");
    assert!(err.contains("neither a default function"), "{err}");
    let site = SiteFixture::new().with(
        "netlify/functions/dep.mjs",
        &format!("import pad from 'left-pad-not-installed';\n{OK_FN}"),
    );
    let err = site.build_fails();
    assert!(err.starts_with("netlify/functions/dep.mjs:1:"), "{err}");
    assert!(err.contains("npm ci"), "{err}");
}

#[test]
fn a_failed_rebuild_leaves_the_existing_output_untouched() {
    let site = SiteFixture::new().with("index.html", "v1");
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("out");
    let first = common::build(site.path(), &out).unwrap();
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<_> = walk(dir);
        names.sort();
        names
    };
    let before = listing(parent.path());
    let site = site
        .with("index.html", "v2")
        .with("_redirects", "/broken\n");
    assert!(common::build(site.path(), &out).is_err());
    assert_eq!(listing(parent.path()), before);
    assert!(out.join("blobs/sha256").join(first.digest.hex()).is_file());
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("dir entry").path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}
