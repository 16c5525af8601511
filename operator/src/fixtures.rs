//! Test fixtures: a Site, Deploys and manifests as the API server would return them.
#![allow(clippy::unwrap_used)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kpages_crds::manifest::{Function, InvocationKind, Route, RouteSyntax};
use kpages_crds::{Deploy, DeployContext, DeploySpec, Manifest, Site, SiteSpec};

/// A stored Site `web` in namespace `team`.
pub fn site() -> Site {
    let mut site = Site::new("web", SiteSpec::default());
    site.metadata.namespace = Some("team".into());
    site.metadata.uid = Some("site-uid".into());
    site.metadata.generation = Some(1);
    site
}

/// A stored production Deploy of `web` created `secs` after a fixed instant.
pub fn deploy(name: &str, manifest: &Manifest, secs: i64) -> Deploy {
    let mut d = Deploy::new(
        name,
        DeploySpec {
            site: "web".into(),
            manifest: manifest.digest(),
            context: DeployContext::Production,
            source: None,
        },
    );
    d.metadata.namespace = Some("team".into());
    d.metadata.uid = Some(format!("{name}-uid"));
    d.metadata.generation = Some(1);
    d.metadata.creation_timestamp =
        Some(Time(Timestamp::from_second(1_700_000_000 + secs).unwrap()));
    d
}

/// A function named `name` with a bundle digest derived from the name.
pub fn function(name: &str, invocation: InvocationKind) -> Function {
    Function {
        invocation,
        schedule: (invocation == InvocationKind::Scheduled).then(|| "@hourly".to_string()),
        ..kpages_testsupport::fixtures::function(name)
    }
}

/// A route in URLPattern syntax.
pub fn route(pattern: &str) -> Route {
    Route {
        pattern: pattern.into(),
        syntax: RouteSyntax::Urlpattern,
    }
}

/// A manifest with `hello` (sync, `/api/hello`), `jobs` (background) and `nightly` (scheduled).
pub fn manifest() -> Manifest {
    let mut hello = function("hello", InvocationKind::Sync);
    hello.routes = vec![route("/api/hello")];
    let mut jobs = function("jobs", InvocationKind::Background);
    jobs.routes = vec![route("/api/jobs")];
    let nightly = function("nightly", InvocationKind::Scheduled);
    Manifest {
        functions: vec![hello, jobs, nightly],
        ..Manifest::new()
    }
}
