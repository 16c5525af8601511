//! The deploy manifest contract: round trips, canonical digests and clear errors.

use std::collections::BTreeMap;

use kpages_crds::manifest::*;
use kpages_crds::{Digest, ManifestError};
use kpages_testsupport::fixtures::{function, route, scheduled};
use pretty_assertions::assert_eq;

fn sample() -> Manifest {
    let mut m = Manifest::new();
    m.site.not_found_page = Some("/404.html".into());
    m.files.insert(
        "/index.html".into(),
        StaticFile {
            digest: Digest::of(b"<h1>hi</h1>"),
            size: 11,
            content_type: "text/html; charset=utf-8".into(),
        },
    );
    m.files.insert(
        "/404.html".into(),
        StaticFile {
            digest: Digest::of(b"nope"),
            size: 4,
            content_type: "text/html; charset=utf-8".into(),
        },
    );
    m.functions.push(Function {
        bundle: Digest::of(b"export default () => new Response('hi')"),
        routes: vec![route("/api/:name")],
        methods: vec!["GET".into()],
        prefer_static: true,
        limits: Limits {
            timeout_seconds: Some(10),
            ..Limits::default()
        },
        included_files: vec![IncludedFile {
            path: "data.json".into(),
            digest: Digest::of(b"{}"),
            size: 2,
        }],
        source: Some("netlify/functions/hello.mts".into()),
        ..function("hello")
    });
    m.functions.push(scheduled("nightly", "@daily"));
    m.rules.redirects.push(RedirectRule {
        from: "/old/*".into(),
        to: "/new/:splat".into(),
        status: 301,
        force: false,
        important: false,
        query: BTreeMap::new(),
        conditions: RuleConditions {
            country: vec!["DE".into()],
            ..Default::default()
        },
        headers: BTreeMap::new(),
        origin: Some("_redirects:1".into()),
    });
    m.rules.headers.push(HeaderRule {
        for_path: "/*".into(),
        values: vec![HeaderValue {
            name: "X-Frame-Options".into(),
            value: "DENY".into(),
        }],
        origin: None,
    });
    m.rules.cache.push(CacheRule {
        source: "/assets/*".into(),
        ttl_seconds: 3600,
    });
    m
}

#[test]
fn a_manifest_round_trips_through_json() {
    let m = sample();
    let parsed = Manifest::from_json(&m.to_json()).expect("parses");
    assert_eq!(parsed, m);
}

#[test]
fn the_digest_is_stable_and_depends_on_content() {
    let m = sample();
    assert_eq!(
        m.digest(),
        Manifest::from_json(&m.to_json()).unwrap().digest()
    );
    let mut changed = sample();
    changed.site.pretty_urls = false;
    assert_ne!(changed.digest(), m.digest());
}

#[test]
fn blobs_lists_files_bundles_and_included_files_once_each() {
    let blobs = sample().blobs();
    assert_eq!(blobs.len(), 5);
    assert!(blobs.contains(&Digest::of(b"{}")));
}

#[test]
fn an_unknown_version_is_refused_with_the_supported_one() {
    let err = Manifest::from_json(br#"{"version": 7, "files": {}}"#).unwrap_err();
    assert!(
        matches!(err, ManifestError::UnsupportedVersion { found: 7 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("reads version 1"), "{err}");
    let err = Manifest::from_json(br#"{"files": {}}"#).unwrap_err();
    assert!(err.to_string().contains("version"), "{err}");
}

#[test]
fn a_malformed_digest_names_the_field_and_the_accepted_form() {
    let mut json: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
    json["functions"][0]["bundle"] = "sha256:1234".into();
    let err = Manifest::from_json(json.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("functions[0].bundle"), "{err}");
    assert!(err.contains("sha256:<64 lowercase hex digits>"), "{err}");
}

#[test]
fn unknown_fields_and_bad_json_are_errors() {
    let err = Manifest::from_json(br#"{"version": 1, "filez": {}}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("filez"), "{err}");
    assert!(matches!(
        Manifest::from_json(b"{not json"),
        Err(ManifestError::NotJson(_))
    ));
}

#[test]
fn invariants_serde_cannot_express_are_checked() {
    type Mutation = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|m| m.functions[1].name = "hello".into()),
            "two functions are named",
        ),
        (
            Box::new(|m| m.functions[0].name = "he llo".into()),
            "not a function name",
        ),
        (
            Box::new(|m| m.functions[1].schedule = None),
            "needs a schedule",
        ),
        (
            Box::new(|m| m.functions[0].schedule = Some("@daily".into())),
            "only scheduled",
        ),
        (
            Box::new(|m| m.functions[0].routes[0].pattern = "api".into()),
            "must start with '/'",
        ),
        (
            Box::new(|m| m.rules.redirects[0].status = 250),
            "not a rule status",
        ),
        (
            Box::new(|m| {
                let f = m.files.remove("/index.html").unwrap();
                m.files.insert("/a/../etc/passwd".into(), f);
            }),
            "'..'",
        ),
    ];
    for (mutate, expected) in cases {
        let mut m = sample();
        mutate(&mut m);
        let err = Manifest::from_json(&m.to_json()).unwrap_err().to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
}

#[test]
fn the_schema_describes_the_manifest_and_rejects_nothing_valid() {
    let schema: serde_json::Value =
        serde_json::from_str(&kpages_crds::generate::manifest_schema_json()).unwrap();
    assert_eq!(schema["title"], "kpages deploy manifest");
    let required = schema["required"].as_array().unwrap();
    assert!(required.contains(&"version".into()));
    assert_eq!(
        schema["$defs"]["Function"]["properties"]["bundle"]["pattern"],
        kpages_crds::digest::DIGEST_PATTERN
    );
}
