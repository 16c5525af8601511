//! Deploy-manifest objects as tests build them, with every field set to its plain default, so
//! a test names only what it is about:
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

use kpages_crds::Digest;
use kpages_crds::manifest::{Dialect, Function, InvocationKind, Route, RouteSyntax};

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
