//! kpages objects as tests build them, with every field set to a plain default, so a test names
//! only what it is about.
//!
//! Manifest functions are plain values to update:
//!
//! ```
//! use kpages_crds::manifest::{Function, InvocationKind};
//! use kpages_testsupport::fixtures::{function, route};
//!
//! let jobs = Function {
//!     invocation: InvocationKind::Background,
//!     routes: vec![route("/api/jobs")],
//!     ..function("jobs")
//! };
//! assert_eq!(jobs.bundle, kpages_crds::Digest::of(b"jobs"));
//! ```
//!
//! Sites and Deploys come as the API server returns them (namespace `default`, generation 1),
//! through builder steps on the types themselves:
//!
//! ```
//! use kpages_crds::{Deploy, DeployContext, DeployPhase, Site};
//! use kpages_testsupport::fixtures::{DeployFixture, SiteFixture};
//!
//! let site = Site::test("web").serving("web-1");
//! let deploy = Deploy::test("web-1", "web")
//!     .with_context(DeployContext::Preview)
//!     .created_at(10)
//!     .with_phase(DeployPhase::Ready);
//! assert_eq!(site.status.unwrap().active_deploy.as_deref(), Some("web-1"));
//! assert_eq!(deploy.spec.manifest, kpages_crds::Digest::of(b"web-1"));
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kpages_crds::manifest::{Dialect, Function, InvocationKind, Route, RouteSyntax};
use kpages_crds::{
    Deploy, DeployContext, DeployPhase, DeploySpec, DeployStatus, Digest, Site, SiteSpec,
    SiteStatus,
};

/// The namespace fixtures live in.
pub const NAMESPACE: &str = "default";

/// A synchronous Netlify function `name` without routes, whose bundle digest is the digest of
/// its name (distinct per name, not a stored blob).
pub fn function(name: &str) -> Function {
    Function {
        name: name.into(),
        bundle: Digest::of(name.as_bytes()),
        dialect: Dialect::Netlify,
        invocation: InvocationKind::Sync,
        schedule: None,
        routes: Vec::new(),
        excluded_routes: Vec::new(),
        methods: Vec::new(),
        prefer_static: false,
        catch_all: None,
        limits: Default::default(),
        included_files: Vec::new(),
        rate_limit: None,
        source: None,
    }
}

/// [`function`] `name` run on `schedule` (a cron expression or `@daily`-style nickname).
pub fn scheduled(name: &str, schedule: &str) -> Function {
    Function {
        invocation: InvocationKind::Scheduled,
        schedule: Some(schedule.into()),
        ..function(name)
    }
}

/// A route in URLPattern syntax.
pub fn route(pattern: &str) -> Route {
    Route {
        pattern: pattern.into(),
        syntax: RouteSyntax::Urlpattern,
    }
}

/// The fixed instant fixtures count creation times from (2023-11-14T22:13:20Z), plus `secs`.
pub fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

/// Builder steps for a test [`Site`].
pub trait SiteFixture {
    /// A Site `name` with the default spec and no status, in [`NAMESPACE`], generation 1.
    fn test(name: &str) -> Self;
    /// In `namespace` instead.
    fn in_namespace(self, namespace: &str) -> Self;
    /// Its status names `deploy` as the active deploy (and nothing else).
    fn serving(self, deploy: &str) -> Self;
}

impl SiteFixture for Site {
    fn test(name: &str) -> Self {
        let mut site = Site::new(name, SiteSpec::default());
        site.metadata.namespace = Some(NAMESPACE.into());
        site.metadata.generation = Some(1);
        site
    }

    fn in_namespace(mut self, namespace: &str) -> Self {
        self.metadata.namespace = Some(namespace.into());
        self
    }

    fn serving(mut self, deploy: &str) -> Self {
        self.status
            .get_or_insert_with(SiteStatus::default)
            .active_deploy = Some(deploy.into());
        self
    }
}

/// Builder steps for a test [`Deploy`].
pub trait DeployFixture {
    /// A production Deploy `name` of Site `site`, without status, in [`NAMESPACE`], generation 1;
    /// its manifest digest is the digest of its name.
    fn test(name: &str, site: &str) -> Self;
    /// In `namespace` instead.
    fn in_namespace(self, namespace: &str) -> Self;
    /// For `manifest` instead.
    fn with_manifest(self, manifest: Digest) -> Self;
    /// In `context` instead of production.
    fn with_context(self, context: DeployContext) -> Self;
    /// Created `secs` after the fixed instant of [`at`].
    fn created_at(self, secs: i64) -> Self;
    /// Its status reports `phase`.
    fn with_phase(self, phase: DeployPhase) -> Self;
}

impl DeployFixture for Deploy {
    fn test(name: &str, site: &str) -> Self {
        let mut deploy = Deploy::new(
            name,
            DeploySpec {
                site: site.into(),
                manifest: Digest::of(name.as_bytes()),
                context: DeployContext::Production,
                source: None,
            },
        );
        deploy.metadata.namespace = Some(NAMESPACE.into());
        deploy.metadata.generation = Some(1);
        deploy
    }

    fn in_namespace(mut self, namespace: &str) -> Self {
        self.metadata.namespace = Some(namespace.into());
        self
    }

    fn with_manifest(mut self, manifest: Digest) -> Self {
        self.spec.manifest = manifest;
        self
    }

    fn with_context(mut self, context: DeployContext) -> Self {
        self.spec.context = context;
        self
    }

    fn created_at(mut self, secs: i64) -> Self {
        self.metadata.creation_timestamp = Some(at(secs));
        self
    }

    fn with_phase(mut self, phase: DeployPhase) -> Self {
        self.status.get_or_insert_with(DeployStatus::default).phase = phase;
        self
    }
}
